"""Generic webhooks: the alert data as JSON, for any receiver (incident tools, chat bridges).
The body's ``idempotency_key`` (also the ``Idempotency-Key`` header) is the same on every
retry of one notification: receivers drop a key they have seen."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.models import Notification

from monitor.notify import render
from monitor.notify.http import HttpNotifier


class WebhookNotifier(HttpNotifier):
    def body(self, notification: Notification) -> dict:
        return {**render.webhook_body(notification.payload), "idempotency_key": self.idempotency_key(notification)}
