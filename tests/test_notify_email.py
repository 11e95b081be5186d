"""Email: text and HTML parts, a sortable subject, threading, digests, and delivery to a
real SMTP server (aiosmtpd) on a free port."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor.choices import ChannelKind, NotificationKind
from monitor.models import Channel, Notification
from monitor.notify import render
from monitor.notify.base import NotifierError
from monitor.notify.email import EmailNotifier
from tests.services import free_port
from tests.test_notify_slack import item

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def notification(kind=NotificationKind.FIRING, items=None) -> Notification:
    return Notification(kind=kind, payload=render.payload(kind, items or [item()], now=NOW))


@pytest.fixture
def channel(db):
    return Channel.objects.create(name="team-email", kind=ChannelKind.EMAIL,
                                  email_to="oncall@example.com,\nlead@example.com")


def test_an_alert_email_has_a_text_and_an_html_part(channel, smtp_server):
    EmailNotifier(channel).send(notification())
    [message] = smtp_server.messages
    assert smtp_server.envelopes == [("monitor@example.com", ["oncall@example.com", "lead@example.com"])]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for body in (text, html):
        assert "billing falls behind" in body
        assert "group billing, topic payments (cluster prod): lag is 12,345 messages" in body
        assert "payments/3" in body and "9,000" in body
        assert "http://monitor.example/alerts/7/" in body
    assert message["Auto-Submitted"] == "auto-generated"


def test_the_subject_leads_with_rule_and_subject_so_an_incident_sorts_together():
    firing = render.email_subject(notification().payload)
    resolved = render.email_subject(notification(NotificationKind.RESOLVED).payload)
    assert firing == "[kafka-monitor] billing falls behind | prod/billing/payments | FIRING critical"
    assert resolved == "[kafka-monitor] billing falls behind | prod/billing/payments | RESOLVED critical"
    assert sorted([resolved, "[kafka-monitor] zebra | x | FIRING info", firing])[:2] == [firing, resolved]


def test_messages_about_one_alert_share_a_thread(channel, smtp_server):
    EmailNotifier(channel).send(notification())
    EmailNotifier(channel).send(notification(NotificationKind.RESOLVED))
    assert {m["References"] for m in smtp_server.messages} == {"<alert-7@kafka-monitor>"}


def test_several_alerts_firing_together_make_one_digest(channel, smtp_server):
    items = [item(alert_id=1), item(alert_id=2, rule="orders stalled", severity="warning", group="orders",
                                    topic="orders", subject="prod/orders/orders")]
    EmailNotifier(channel).send(notification(items=items))
    [message] = smtp_server.messages
    assert message["Subject"] == "[kafka-monitor] digest | 2 alerts from 2 rules | FIRING critical"
    text = message.get_body(("plain",)).get_content()
    assert "billing falls behind (critical)" in text and "orders stalled (warning)" in text
    assert message["References"] is None


def test_html_is_escaped(channel, smtp_server):
    EmailNotifier(channel).send(notification(items=[item(group="<script>x</script>")]))
    html = smtp_server.messages[0].get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_a_refused_recipient_is_a_permanent_error(channel, smtp_server):
    smtp_server.refuse = {"oncall@example.com", "lead@example.com"}
    with pytest.raises(NotifierError, match="recipients refused") as error:
        EmailNotifier(channel).send(notification())
    assert error.value.permanent and error.value.status_code == 550


def test_an_smtp_server_that_is_down_is_a_temporary_error(channel, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"  # tests default to locmem
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    with pytest.raises(NotifierError, match="SMTP server unavailable") as error:
        EmailNotifier(channel).send(notification())
    assert not error.value.permanent


def test_a_channel_without_recipients_is_a_permanent_error(db):
    with pytest.raises(NotifierError, match="no recipients") as error:
        EmailNotifier(Channel(name="x", kind=ChannelKind.EMAIL, email_to="")).send(notification())
    assert error.value.permanent


def test_every_attempt_of_one_notification_has_the_same_message_id(channel, smtp_server):
    sent, other = notification(), notification()
    EmailNotifier(channel).send(sent)
    EmailNotifier(channel).send(sent)  # a retry after a lost outcome
    EmailNotifier(channel).send(other)
    ids = [m["Message-ID"] for m in smtp_server.messages]
    assert ids[0] == ids[1] == f"<notification-{sent.idempotency_key}@kafka-monitor>" != ids[2]
    assert smtp_server.messages[0]["Idempotency-Key"] == str(sent.idempotency_key)


def test_line_breaks_in_names_inject_no_header_and_the_mail_is_sent(channel, smtp_server):
    hostile = "billing\r\nBcc: victim@example.com\nX-Evil: 1"
    EmailNotifier(channel).send(notification(items=[item(group=hostile, subject=f"prod/{hostile}/payments")]))
    [message] = smtp_server.messages
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert "billing  Bcc: victim@example.com X-Evil: 1" in message["Subject"]
    assert smtp_server.envelopes[0][1] == ["oncall@example.com", "lead@example.com"]

