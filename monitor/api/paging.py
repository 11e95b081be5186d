"""Paging of list endpoints (CONTRACT, "Lists at scale"): ``limit`` (1-1000) and an opaque
``cursor``; a page that is not the last carries ``Link: <URL>; rel="next"``. Without
``limit`` a list answers everything, as before.

A cursor is keyset, not an offset: the sort key of the last row shown, so a page never
repeats or skips a row when rows are added or removed between two requests. It is
URL-safe base64 of JSON naming the list it belongs to; anything else is a 400 naming
``cursor``.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import TypeVar

from django.http import HttpRequest, HttpResponse, QueryDict

from monitor.api.errors import FieldError

MAX_LIMIT = 1000
R = TypeVar("R", bound=HttpResponse)


@dataclass(frozen=True)
class PageRequest:
    limit: int | None
    """None: no paging, the whole list."""
    after: list[object] | None
    """The decoded cursor: the sort key of the previous page's last row."""


def parse(query: QueryDict, kind: str, errors: list[FieldError]) -> PageRequest:
    """``limit`` and ``cursor`` from the query string; problems go to ``errors``."""
    limit: int | None = None
    raw_limit = query.get("limit")
    if raw_limit is not None and raw_limit != "":
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            errors.append(FieldError(("query", "limit"), f"must be a whole number from 1 to {MAX_LIMIT}"))
        else:
            limit = int(raw_limit)
    after: list[object] | None = None
    raw_cursor = query.get("cursor")
    if raw_cursor:
        after = decode_cursor(raw_cursor, kind)
        if after is None:
            errors.append(FieldError(("query", "cursor"), "is not a cursor of this list (take it from the Link header)"))
        elif limit is None:
            errors.append(FieldError(("query", "limit"), "is required with cursor"))
    return PageRequest(limit=limit, after=after)


def encode_cursor(kind: str, key: list[object]) -> str:
    text = json.dumps({"list": kind, "after": key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(raw: str, kind: str) -> list[object] | None:
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        body = json.loads(text)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(body, dict) or body.get("list") != kind or not isinstance(body.get("after"), list):
        return None
    return list(body["after"])


def next_link(request: HttpRequest, cursor: str) -> str:
    """The ``Link`` header value for the page after this one: the same query with ``cursor``."""
    query = request.GET.copy()
    query["cursor"] = cursor
    return f'<{request.build_absolute_uri(request.path + "?" + query.urlencode())}>; rel="next"'


def add_next_link(response: R, request: HttpRequest, kind: str, key: list[object] | None) -> R:
    if key is not None:
        response["Link"] = next_link(request, encode_cursor(kind, key))
    return response
