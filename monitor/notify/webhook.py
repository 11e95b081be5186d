"""Generic webhooks: the alert data as JSON, for any receiver (incident tools, chat bridges)."""
from __future__ import annotations

from monitor.notify import render
from monitor.notify.http import HttpNotifier


class WebhookNotifier(HttpNotifier):
    def body(self, notification: object) -> dict:
        return render.webhook_body(notification.payload)
