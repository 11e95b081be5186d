"""Slack: the Block Kit message, and delivery to a real local HTTP server standing in for
Slack's incoming webhook (answers scripted per test)."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.choices import ChannelKind, NotificationKind
from monitor.models import Channel, Notification
from monitor.notify import render
from monitor.notify.base import NotifierError, redact
from monitor.notify.http import parse_retry_after
from monitor.notify.slack import SlackNotifier
from tests.alert_services import Reply

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def item(**overrides) -> dict:
    values = {
        "alert_id": 7, "rule_id": 1, "rule": "billing falls behind", "severity": "critical", "metric": "lag",
        "unit": "messages", "op": ">", "threshold": 1000.0, "threshold_text": "1,000 messages", "value": 12345.0,
        "value_text": "12,345 messages", "cluster": "prod", "group": "billing", "topic": "payments",
        "subject": "prod/billing/payments", "state": "firing", "started_at": "2025-03-01T11:57:00Z",
        "fired_at": "2025-03-01T11:59:00Z", "resolved_at": None, "duration_seconds": 180.0, "no_data_reason": "",
        "resolved_reason": "", "acknowledged_by": "", "acknowledged_at": None, "acknowledgement_note": "",
        "worst_partitions": [{"topic": "payments", "partition": 3, "lag": 9000, "time_lag_seconds": 130.0},
                             {"topic": "payments", "partition": 0, "lag": 3345, "time_lag_seconds": None}],
        "group_url": "http://monitor.example/clusters/prod/groups/billing/",
        "alert_url": "http://monitor.example/alerts/7/",
    }
    return {**values, **overrides}


def notification(kind=NotificationKind.FIRING, items=None) -> Notification:
    return Notification(kind=kind, payload=render.payload(kind, items or [item()], now=NOW))


@pytest.fixture
def channel(db, webhook_server):
    return Channel.objects.create(name="oncall-slack", kind=ChannelKind.SLACK, webhook_url=webhook_server.url())


def test_the_text_names_the_rule_group_topic_value_and_threshold():
    message = render.slack_message(notification().payload)
    assert message["text"] == ("[FIRING] billing falls behind: group billing, topic payments (cluster prod): "
                               "lag is 12,345 messages (threshold > 1,000 messages) for 3 min")


def test_the_message_is_block_kit_with_the_severity_colour_a_partition_table_and_links():
    message = render.slack_message(notification().payload)
    [attachment] = message["attachments"]
    assert attachment["color"] == render.SEVERITY_COLOURS["critical"]
    header, summary, table, links = attachment["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": "FIRING: billing falls behind",
                                                  "emoji": True}}
    assert summary["text"]["text"].startswith("*critical* · group billing, topic payments")
    assert "payments/3" in table["text"]["text"] and "9,000" in table["text"]["text"]
    assert "2 min 10 s" in table["text"]["text"] and "unknown" in table["text"]["text"]
    assert links["elements"][0]["text"] == ("<http://monitor.example/clusters/prod/groups/billing/|Group page> · "
                                            "<http://monitor.example/alerts/7/|Alert and acknowledge>")


def test_resolved_messages_are_green_and_say_how_long_it_lasted():
    payload = render.payload(NotificationKind.RESOLVED, [item(value=10.0, value_text="10 messages",
                                                               duration_seconds=900.0)], now=NOW)
    message = render.slack_message(payload)
    assert message["attachments"][0]["color"] == render.RESOLVED_COLOUR
    assert message["text"].startswith("[RESOLVED] billing falls behind: group billing, topic payments")
    assert "back to 10 messages (threshold > 1,000 messages); lasted 15 min" in message["text"]


def test_many_alerts_of_one_rule_make_one_message_listing_the_first_ten():
    payload = render.payload(NotificationKind.FIRING,
                             [item(alert_id=i, group=f"billing-{i}") for i in range(12)], now=NOW)
    message = render.slack_message(payload)
    assert message["attachments"][0]["blocks"][0]["text"]["text"] == "FIRING: billing falls behind (12 subjects)"
    assert "group billing-9" in message["text"] and "group billing-10" not in message["text"]
    assert "... and 2 more" in message["text"]


def test_mrkdwn_control_characters_are_escaped():
    message = render.slack_message(render.payload(NotificationKind.FIRING, [item(group="a<b>&c")], now=NOW))
    assert "a&lt;b&gt;&amp;c" in message["attachments"][0]["blocks"][1]["text"]["text"]


def test_a_message_is_posted_as_json_to_the_webhook(channel, webhook_server):
    notifier = SlackNotifier(channel)
    notifier.send(notification())
    [request] = webhook_server.received
    assert request.path == "/services/T000/B000/secret-token-XYZ"
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.json()["text"].startswith("[FIRING] billing falls behind")
    assert notifier.last_status_code == 200


@pytest.mark.parametrize("reply,permanent", [
    (Reply(403, "invalid_token"), True),
    (Reply(404, "no_team"), True),
    (Reply(410, "channel_is_archived"), True),
    (Reply(404, "Not Found"), True),
    (Reply(500, "internal error"), False),
    (Reply(503, ""), False),
    (Reply(429, "rate limited", {"Retry-After": "7"}), False),
])
def test_answers_are_classified_as_permanent_or_temporary(channel, webhook_server, reply, permanent):
    webhook_server.script(reply)
    with pytest.raises(NotifierError) as error:
        SlackNotifier(channel).send(notification())
    assert error.value.permanent is permanent
    assert error.value.status_code == reply.status


def test_retry_after_is_read_from_a_429(channel, webhook_server):
    webhook_server.script(Reply(429, "rate limited", {"Retry-After": "7"}))
    with pytest.raises(NotifierError) as error:
        SlackNotifier(channel).send(notification())
    assert error.value.retry_after_seconds == 7.0


def test_retry_after_accepts_seconds_and_http_dates():
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("Sat, 01 Mar 2025 12:01:00 GMT", now=NOW) == 60.0
    assert parse_retry_after("99999") == 3600.0
    assert parse_retry_after("soon") is None


def test_a_receiver_that_does_not_answer_in_time_is_a_temporary_error(channel, webhook_server):
    webhook_server.script(Reply(200, "ok", delay_seconds=1.5))
    notifier = SlackNotifier(channel)
    notifier.timeout_seconds = 0.3
    with pytest.raises(NotifierError, match="timeout") as error:
        notifier.send(notification())
    assert not error.value.permanent


def test_a_receiver_that_is_down_is_a_temporary_error(db):
    from tests.services import free_port

    channel = Channel(name="down", kind=ChannelKind.SLACK, webhook_url=f"http://127.0.0.1:{free_port()}/hook")
    with pytest.raises(NotifierError, match="cannot connect") as error:
        SlackNotifier(channel).send(notification())
    assert not error.value.permanent


def test_a_redirect_is_not_followed_and_is_permanent(channel, webhook_server):
    webhook_server.script(Reply(302, "", {"Location": "http://127.0.0.1:1/elsewhere"}))
    with pytest.raises(NotifierError) as error:
        SlackNotifier(channel).send(notification())
    assert error.value.permanent and error.value.status_code == 302


def test_errors_never_contain_the_webhook_url(channel, webhook_server):
    webhook_server.script(Reply(404, f"no such hook {channel.webhook_url}"))
    with pytest.raises(NotifierError) as error:
        SlackNotifier(channel).send(notification())
    text = redact(error.value.message, SlackNotifier(channel).secrets())
    assert "secret-token-XYZ" not in text and text == "HTTP 404"  # the receiver's body is never kept


def test_a_test_notification_says_delivery_works():
    message = render.slack_message(render.test_payload("oncall-slack", NOW))
    assert message["text"] == "Test notification from kafka-monitor for channel oncall-slack: delivery works."


def test_a_detector_summary_is_shown_and_subjects_without_a_cluster_have_no_group_link():
    payload = render.payload(NotificationKind.FIRING, [item(
        cluster="", subject="/billing/payments", group_url="", summary="12 events published, never consumed")],
        now=NOW)
    blocks = render.slack_message(payload)["attachments"][0]["blocks"]
    assert blocks[1]["text"]["text"].endswith("\n12 events published, never consumed")
    assert blocks[-1]["elements"][0]["text"] == "<http://monitor.example/alerts/7/|Alert and acknowledge>"
    assert "12 events published, never consumed" in render.email_text(payload)
