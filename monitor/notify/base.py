"""The notifier interface every channel kind implements.

``Notifier.send(notification)`` returns None on success and raises
:class:`NotifierError` otherwise; ``permanent`` errors (a deleted webhook, a revoked
token, a refused recipient) stop retries and mark the channel failing, the others are
retried by the outbox with back-off (honouring ``retry_after_seconds`` when the
receiver said how long to wait).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.models import Channel, Notification

from collections.abc import Iterable


class NotifierError(Exception):
    """``permanent``: retrying cannot help. ``of_message``: the fault is in this one
    message (a header it cannot carry), not the channel: it fails alone and the channel
    stays healthy, so later messages are not held back."""

    def __init__(self, message: str, permanent: bool = False, status_code: int | None = None,
                 retry_after_seconds: float | None = None, of_message: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent or of_message
        self.of_message = of_message
        self.status_code = status_code
        self.retry_after_seconds = retry_after_seconds


class Notifier:
    """Sends one outbox row (``Notification``) to one channel.

    Every send carries ``idempotency_key(notification)``, the same on every retry, so a
    receiver can tell a repeat from a new message (delivery is at-least-once)."""

    def __init__(self, channel: Channel) -> None:
        from django.conf import settings

        self.channel = channel
        self.last_status_code: int | None = None  # set by send(): HTTP status or SMTP reply code
        # Per network step; delivery cuts it to what is left of the claim's lease.
        self.timeout_seconds: float = float(settings.MONITOR_NOTIFY_TIMEOUT_SECONDS)

    def send(self, notification: Notification) -> None:
        raise NotImplementedError

    @staticmethod
    def idempotency_key(notification: Notification) -> str:
        """The notification's stable key (a UUID): the same on every attempt."""
        key = getattr(notification, "idempotency_key", None)
        return str(key) if key else f"notification-{getattr(notification, 'pk', '')}"

    def secrets(self) -> list[str]:
        """Values that must never appear in stored errors or logs."""
        return []


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret (and its URL path, which carries Slack's token) with '***'."""
    from urllib.parse import urlsplit

    for secret in secrets:
        if not secret:
            continue
        text = text.replace(secret, "***")
        path = urlsplit(secret).path if "://" in secret else ""
        if len(path) > 8:
            text = text.replace(path, "/***")
    return text
