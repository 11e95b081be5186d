"""Authentication for the JSON API: a bearer token with scopes, or a logged-in session.

Usage::

    @api_view(scope=TokenScope.READ)
    def clusters(request): ...

    @api_view(scope=TokenScope.INGEST, methods=("POST",))
    def ingest(request): ...

A session counts for the ``read`` and ``ack`` scopes (with CSRF for writes); ingest needs a token. Without valid
credentials the answer is 401, with the wrong scope 403, both with the JSON error body
of :mod:`monitor.api.errors`. The decorator also renders :class:`ApiError` raised by the
view and turns a database outage into a 503 instead of an HTML error page.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from monitor.api.errors import (
    ApiError,
    BadRequest,
    FieldError,
    Forbidden,
    ServiceUnavailable,
    Unauthorized,
    error_response,
    render_api_error,
)
from monitor.choices import TokenScope
from monitor.errors import QueryError

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_SCOPES = frozenset({TokenScope.READ, TokenScope.ACK})
View = Callable[..., HttpResponse]


def _bearer_secret(request: HttpRequest) -> str | None:
    """The token from ``Authorization: Bearer <token>``; None when there is no header."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, secret = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
    return secret.strip()


def _check_csrf(request: HttpRequest) -> None:
    # Session-authenticated writes must carry a CSRF token, exactly as a form would.
    rejection = CsrfViewMiddleware(lambda req: HttpResponse()).process_view(request, lambda req: HttpResponse(), (), {})
    if rejection is not None:
        raise Forbidden("CSRF verification failed for a session-authenticated request.")


def authenticate(request: HttpRequest, scope: str) -> None:
    """Raise 401/403 unless the request may use ``scope``; remember the token used."""
    request.api_token = None  # type: ignore[attr-defined]
    secret = _bearer_secret(request)
    if secret is not None:
        from monitor.models import ApiToken

        token = ApiToken.authenticate(secret)
        if token is None:
            raise Unauthorized("The token is unknown or revoked.")
        if not token.has_scope(scope):
            raise Forbidden(f"The token lacks the '{scope}' scope.")
        request.api_token = token  # type: ignore[attr-defined]
        return
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        # A logged-in user may read and acknowledge (as the alert page lets them); writing
        # anything else needs a token.
        if scope not in SESSION_SCOPES:
            raise Forbidden(f"A login session may only read and acknowledge; use a token with the '{scope}' scope.")
        if request.method not in SAFE_METHODS:
            _check_csrf(request)
        return
    raise Unauthorized("Authentication required: send 'Authorization: Bearer <token>' or log in.")


def api_view(scope: str | None = TokenScope.READ, methods: Iterable[str] = ("GET",)) -> Callable[[View], View]:
    """Wrap a JSON API view: method check, authentication (``scope=None``: public),
    JSON errors for :class:`ApiError` and a 503 when the database is down."""
    allowed = {m.upper() for m in methods}
    if "GET" in allowed:
        allowed.add("HEAD")

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if request.method not in allowed:
                response = error_response(405, f"Method {request.method} is not allowed here.")
                response["Allow"] = ", ".join(sorted(allowed))
                return response
            try:
                if scope is not None:
                    authenticate(request, scope)
                return view(request, *args, **kwargs)
            except ApiError as error:
                return render_api_error(error)
            except QueryError as error:  # the read layer's "fix your input"
                return render_api_error(BadRequest(
                    f"Bad query parameter '{error.field}': {error.message}",
                    [FieldError(("query", error.field), error.message)],
                ))
            except DatabaseError as exc:
                log.warning("API %s failed: database unavailable (%s)", request.path, type(exc).__name__)
                return render_api_error(ServiceUnavailable("The database is unavailable; try again shortly."))

        # Token-authenticated clients have no CSRF cookie; session writes are checked above.
        return csrf_exempt(wrapper)

    return decorator
