"""HTTP delivery shared by Slack and generic webhooks: timeouts, no redirects, the
``Idempotency-Key`` header on every attempt, and the classification of answers into success, retry later (timeouts, 408, 429 with
``Retry-After``, 5xx) and permanent errors (other 4xx).

Uses the standard library only. Error messages never contain the URL: webhook URLs are
secrets.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.models import Notification

import email.utils
import http.client
import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime

from monitor.notify import targets
from monitor.notify.base import Notifier, NotifierError

DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_RETRY_AFTER_SECONDS = 3600.0
MAX_BODY_BYTES = 4096
USER_AGENT = "kafka-monitor-notifier/1"


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:  # noqa: D401
        return None  # a redirect is answered as the 3xx it is, never followed with our payload


def _check_peer(connection: http.client.HTTPConnection) -> None:
    """Refuse an internal receiver by the address actually connected to (after DNS)."""
    sock = connection.sock
    peer = sock.getpeername()[0] if sock is not None else ""
    problem = targets.address_problem(str(peer))
    if problem is not None:
        connection.close()
        raise _RefusedTarget(f"the webhook URL {problem}")


class _RefusedTarget(OSError):
    pass


class _CheckedHTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _check_peer(self)


class _CheckedHTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        # The TCP connection first, checked, then TLS over it: nothing is sent to a refused peer.
        http.client.HTTPConnection.connect(self)
        _check_peer(self)
        server_hostname = self._tunnel_host or self.host  # type: ignore[attr-defined]
        self.sock = self._context.wrap_socket(self.sock, server_hostname=server_hostname)  # type: ignore[attr-defined]


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_CheckedHTTPConnection, req)


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_CheckedHTTPSConnection, req, context=self._context)  # type: ignore[attr-defined]


_opener = urllib.request.build_opener(_NoRedirect(), _CheckedHTTPHandler(), _CheckedHTTPSHandler())


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def post_json(url: str, body: dict, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
              headers: dict[str, str] | None = None) -> HttpResponse:
    """POST ``body`` as JSON; any HTTP status is returned, network failures raise a
    temporary NotifierError."""
    if not url.startswith(("https://", "http://")):
        raise NotifierError("the webhook URL must start with https:// or http://", permanent=True)
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT, **(headers or {})})
    try:
        with _opener.open(request, timeout=timeout_seconds) as response:
            return HttpResponse(response.status, _read(response), dict(response.headers.items()))
    except urllib.error.HTTPError as exc:
        return HttpResponse(exc.code, _read(exc), dict(exc.headers.items()) if exc.headers else {})
    except (TimeoutError, socket.timeout):
        raise NotifierError(f"no answer within {timeout_seconds:g}s (timeout)") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, _RefusedTarget):
            raise NotifierError(str(reason), permanent=True) from None
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise NotifierError(f"no answer within {timeout_seconds:g}s (timeout)") from None
        raise NotifierError(f"cannot connect: {_reason(reason)}") from None
    except (ConnectionError, OSError) as exc:
        raise NotifierError(f"connection failed: {_reason(exc)}") from None


def _reason(reason: object) -> str:
    if isinstance(reason, OSError):
        return reason.strerror or type(reason).__name__
    return str(reason)


def _read(response: Any) -> str:
    try:
        return response.read(MAX_BODY_BYTES).decode("utf-8", errors="replace")
    except Exception:  # noqa: BLE001 - the status code is what matters
        return ""


class HttpNotifier(Notifier):
    """POSTs JSON to the channel's webhook URL. Subclasses build the body and may map
    receiver-specific errors (``classify``)."""

    def url(self) -> str:
        return self.channel.webhook_url

    def secrets(self) -> list[str]:
        return [self.url()]

    def body(self, notification: Notification) -> dict:
        raise NotImplementedError

    def send(self, notification: Notification) -> None:
        if not self.url():
            raise NotifierError("the channel has no webhook URL", permanent=True)
        headers = {"Idempotency-Key": self.idempotency_key(notification)}
        response = post_json(self.url(), self.body(notification), self.timeout_seconds, headers=headers)
        self.last_status_code = response.status
        self.classify(response)

    def classify(self, response: HttpResponse) -> None:
        """Raise unless the receiver accepted the message."""
        status = response.status
        if 200 <= status < 300:
            return
        # Never the receiver's body: it is shown to every user of the alert page, and a
        # receiver (or whatever the URL reaches) decides what it says.
        message = f"HTTP {status}"
        if status == 429 or status == 408 or status >= 500:
            retry_after = parse_retry_after(_header(response.headers, "Retry-After"))
            raise NotifierError(message, permanent=False, status_code=status, retry_after_seconds=retry_after)
        raise NotifierError(message, permanent=True, status_code=status)


def _header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None
