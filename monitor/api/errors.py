"""JSON error bodies shared by every API endpoint (see CONTRACT, HTTP API).

Every error answers ``{"detail": "...", "errors": [{"loc": [...], "msg": "..."}]}``;
``errors`` is empty when no single field is to blame. Views raise :class:`ApiError`
(or a subclass) and the ``api_view`` decorator in :mod:`monitor.api.auth` renders it.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt


@dataclass(frozen=True)
class FieldError:
    """One bad input: ``loc`` names where it is, e.g. ``("query", "points")``."""

    loc: tuple[str | int, ...]
    msg: str

    def as_dict(self) -> dict[str, object]:
        return {"loc": list(self.loc), "msg": self.msg}


class ApiError(Exception):
    status = 400

    def __init__(self, detail: str, errors: list[FieldError] | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}
        if status is not None:
            self.status = status


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class ServiceUnavailable(ApiError):
    status = 503


RETRY_AFTER_SECONDS = 15


def error_response(status: int, detail: str, errors: list[FieldError] | None = None) -> JsonResponse:
    body = {"detail": detail, "errors": [error.as_dict() for error in errors or []]}
    response = JsonResponse(body, status=status)
    if status == 503:
        # The database is away (a restart, a failover): clients retry after this long.
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if status == 401:
        # RFC 6750: tell the client which scheme to use.
        response["WWW-Authenticate"] = 'Bearer realm="kafka-monitor"'
    return response


def render_api_error(error: ApiError) -> JsonResponse:
    response = error_response(error.status, error.detail, error.errors)
    for name, value in error.headers.items():
        response[name] = value
    return response


@csrf_exempt  # a 404 whatever the method: no form is processed
def not_found_view(request: HttpRequest) -> JsonResponse:
    return error_response(404, f"No API endpoint at {request.path!r}.")
