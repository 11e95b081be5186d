"""POST /api/v1/events: event reports from services (scope ``ingest``).

Thin: authenticate, read a bounded body, decode JSON, hand it to
:func:`monitor.events.ingest.validate_payload`, check the token's limits
(:mod:`monitor.api.limits`), store, answer 202 ``{accepted, duplicates}``.
"""
from __future__ import annotations

import json
import zlib

from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from monitor.api.auth import api_view
from monitor.api.errors import ApiError, FieldError
from monitor.choices import TokenScope
from monitor.events.config import IngestLimits
from monitor.api.limits import check_new_names, check_request_rate
from monitor.events.ingest import IngestError, validate_payload
from monitor.events.store import store_rows


def read_body(request: HttpRequest, max_bytes: int) -> bytes:
    """The request body, gunzipped when sent with ``Content-Encoding: gzip``.

    Refuses (413) a declared length over the limit before reading anything, and stops
    inflating a compressed body as soon as it passes the limit, so one request never
    holds more than ``max_bytes`` of payload in memory.
    """
    chunked = "chunked" in str(request.META.get("HTTP_TRANSFER_ENCODING", "")).lower()
    if chunked and not request.META.get("CONTENT_LENGTH"):
        body = _read_chunked(request, max_bytes)
    else:
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise ApiError("Content-Length is not a number.", status=400) from None
        if declared > max_bytes:
            raise ApiError(f"The body is {declared} bytes; at most {max_bytes} are accepted.", status=413)
        body = request.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise ApiError(f"The body is larger than {max_bytes} bytes.", status=413)
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise ApiError(f"Content-Encoding {encoding!r} is not supported; use gzip or none.", status=415)
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
    try:
        plain = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise ApiError(f"The gzip body is corrupt: {exc}.", status=400) from None
    if len(plain) > max_bytes or inflater.unconsumed_tail:
        raise ApiError(f"The uncompressed body is larger than {max_bytes} bytes.", status=413)
    if not inflater.eof:
        raise ApiError("The gzip body is truncated.", status=400)
    return plain


def _read_chunked(request: HttpRequest, max_bytes: int) -> bytes:
    """A ``Transfer-Encoding: chunked`` body, read with the same limit.

    Django reads a request without Content-Length as empty; the raw WSGI stream holds
    the body when the server has already de-chunked it and marks its end
    (``wsgi.input_terminated``, as gunicorn does). Otherwise the length is required (411).
    """
    if not request.META.get("wsgi.input_terminated"):
        raise ApiError("A chunked body is not supported here; send Content-Length.", status=411)
    stream = request.META["wsgi.input"]
    parts: list[bytes] = []
    size = 0
    while size <= max_bytes:
        part = stream.read(min(65536, max_bytes + 1 - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    if size > max_bytes:
        raise ApiError(f"The body is larger than {max_bytes} bytes.", status=413)
    return b"".join(parts)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(body: bytes) -> object:
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(f"The body is not valid JSON: {exc}.", status=400) from None
    except RecursionError:  # [[[[... 100,000 deep
        raise ApiError("The body is nested too deeply.", status=400) from None


def token_id_of(request: HttpRequest) -> int | None:
    token = getattr(request, "api_token", None)
    return int(token.pk) if token is not None else None


@api_view(scope=TokenScope.INGEST, methods=("POST",))
def ingest_events(request: HttpRequest) -> JsonResponse:
    limits = IngestLimits.from_settings()
    now = timezone.now()
    token_id = token_id_of(request)
    check_request_rate(token_id, now)
    payload = decode_json(read_body(request, limits.max_bytes))
    try:
        rows = validate_payload(payload, now, limits)
    except IngestError as error:
        raise ApiError(error.detail, [FieldError(e.loc, e.msg) for e in error.errors], status=error.status) from None
    check_new_names(token_id, rows, now)
    result = store_rows(rows, now)
    return JsonResponse({"accepted": result.accepted, "duplicates": result.duplicates}, status=202)
