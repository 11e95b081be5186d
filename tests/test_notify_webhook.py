"""Generic webhooks: the alert data as JSON, POSTed to a real local HTTP server."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.choices import ChannelKind, NotificationKind
from monitor.models import Channel, Notification
from monitor.notify import render
from monitor.notify.base import NotifierError
from monitor.notify.registry import notifier_for
from monitor.notify.webhook import WebhookNotifier
from tests.alert_services import Reply
from tests.test_notify_slack import item

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def channel(db, webhook_server):
    return Channel.objects.create(name="incidents", kind=ChannelKind.WEBHOOK, webhook_url=webhook_server.url("/hook"))


def notification(kind=NotificationKind.FIRING) -> Notification:
    return Notification(kind=kind, payload=render.payload(kind, [item()], now=NOW))


def test_the_body_carries_every_alert_as_data(channel, webhook_server):
    notifier_for(channel).send(notification())
    body = webhook_server.received[0].json()
    assert (body["version"], body["source"], body["kind"], body["title"]) == (
        1, "kafka-monitor", "firing", "FIRING: billing falls behind")
    [alert] = body["alerts"]
    assert (alert["group"], alert["topic"], alert["value"], alert["threshold"], alert["op"]) == (
        "billing", "payments", 12345.0, 1000.0, ">")
    assert body["text"].startswith("[FIRING] billing falls behind")


def test_any_2xx_is_success(channel, webhook_server):
    webhook_server.script(Reply(204, ""))
    notifier = WebhookNotifier(channel)
    notifier.send(notification())
    assert notifier.last_status_code == 204


@pytest.mark.parametrize("status,permanent", [(400, True), (401, True), (404, True), (408, False),
                                              (429, False), (500, False), (502, False)])
def test_4xx_is_permanent_and_5xx_temporary(channel, webhook_server, status, permanent):
    webhook_server.script(Reply(status, "nope"))
    with pytest.raises(NotifierError) as error:
        WebhookNotifier(channel).send(notification())
    assert error.value.permanent is permanent and error.value.message == f"HTTP {status}"  # never the body


def test_a_url_that_is_not_http_is_refused_permanently(db):
    channel = Channel(name="bad", kind=ChannelKind.WEBHOOK, webhook_url="file:///etc/passwd")
    with pytest.raises(NotifierError, match="must start with https://") as error:
        WebhookNotifier(channel).send(notification())
    assert error.value.permanent


def test_the_body_and_header_carry_the_notifications_idempotency_key(channel, webhook_server):
    sent = notification()
    WebhookNotifier(channel).send(sent)
    WebhookNotifier(channel).send(sent)  # a retry
    keys = {(r.headers["Idempotency-Key"], r.json()["idempotency_key"]) for r in webhook_server.received}
    assert keys == {(str(sent.idempotency_key), str(sent.idempotency_key))}
