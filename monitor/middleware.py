"""A database that goes away (a restart, a failover, a statement past its timeout) is
a 503 with ``Retry-After`` that says so, on every page and API call, never a 500 with a
traceback. The next request after it is back works again: Django drops the broken
connection at the end of the failed request."""
from __future__ import annotations

import logging
from collections.abc import Callable
from html import escape

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 15
PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Database unavailable</title></head>
<body><h1>The database is unreachable</h1><p>{reason}</p>
<p>The monitor keeps trying; this page works again by itself once the database is back.</p></body></html>"""


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        cancelled = "statement timeout" in str(exception)
        reason = ("A database query took longer than the statement timeout." if cancelled
                  else "The database cannot be reached right now.")
        log.warning("%s %s: database unavailable (%s)", request.method, request.path, type(exception).__name__)
        response: HttpResponse
        if request.path.startswith(("/api/", "/v1/", "/metrics")):
            response = JsonResponse({"detail": f"{reason} Try again shortly.", "errors": []}, status=503)
        else:
            response = HttpResponse(PAGE.format(reason=escape(reason)), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


class RefuseNulMiddleware:
    """A NUL in the path or a query parameter is a 400 naming where it is.

    PostgreSQL text cannot hold NUL: a filter ``?cluster=%00`` or a group URL with ``%00``
    made the database refuse the query, which read as an outage (503). Nothing stored can
    contain NUL, so such a request can only be refused."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        where = None
        if "\x00" in request.path:
            where = ["path"]
        else:
            for key, values in request.GET.lists():
                if "\x00" in key or any("\x00" in value for value in values):
                    where = ["query", key.replace("\x00", "\\0")]
                    break
        if where is None:
            return self.get_response(request)
        message = "must not contain NUL characters"
        if request.path.startswith(("/api/", "/v1/", "/metrics")):
            return JsonResponse({"detail": f"{where[-1]} {message}.", "errors": [{"loc": where, "msg": message}]},
                                status=400)
        return HttpResponse(f"Bad request: {escape(where[-1])} {message}.", status=400,
                            content_type="text/plain; charset=utf-8")
