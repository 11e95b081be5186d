"""Slack incoming webhooks: a Block Kit message; Slack's error words mapped to
permanent (the webhook will never work again as configured) or temporary."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.models import Notification

from monitor.notify import render
from monitor.notify.base import NotifierError
from monitor.notify.http import HttpNotifier, HttpResponse

# Answers meaning "this webhook is broken until someone fixes the channel".
PERMANENT_ERRORS = frozenset({
    "invalid_token", "no_service", "no_service_id", "no_team", "team_disabled", "channel_not_found",
    "channel_is_archived", "action_prohibited", "posting_to_general_channel_denied", "invalid_payload",
    "no_text", "user_not_found",
})


_ERROR_WORD = re.compile(r"[a-z_]{1,64}")


class SlackNotifier(HttpNotifier):
    def body(self, notification: Notification) -> dict:
        message = render.slack_message(notification.payload)
        # Message metadata carries the key into Slack (apps reading the channel can dedupe).
        message["metadata"] = {"event_type": "kafka_monitor_notification",
                               "event_payload": {"idempotency_key": self.idempotency_key(notification)}}
        return message

    def classify(self, response: HttpResponse) -> None:
        word = response.body.strip()
        if word in PERMANENT_ERRORS:
            raise NotifierError(f"Slack answered HTTP {response.status}: {word}", permanent=True,
                                status_code=response.status)
        if 200 <= response.status < 300 and word not in ("", "ok"):
            # Slack answers 200 with an error word for some failures.
            # Only Slack's own error words are repeated, never free text from the receiver.
            shown = word if _ERROR_WORD.fullmatch(word) else "an unexpected answer"
            raise NotifierError(f"Slack answered: {shown}", permanent=False, status_code=response.status)
        super().classify(response)
