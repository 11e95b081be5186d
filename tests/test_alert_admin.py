"""The admin: channels with write-only secrets and a test action, rules validated like
apply_config with a backtest before saving, alerts, the outbox, silences, windows."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitor.alerts.metrics import STATUS_RANK
from monitor.choices import AlertState, ChannelKind, NotificationKind
from monitor.models import (
    Alert, AlertRule, Channel, ConsumerGroup, DeliveryAttempt, MaintenanceWindow, Notification, Silence,
)
from tests.alert_services import Reply
from tests.lag_rows import Part, record_poll

SECRET_URL_PATH = "/services/T000/B000/secret-token-XYZ"


def rule_form(**overrides) -> dict:
    values = {"name": "billing falls behind", "enabled": "on", "cluster": "prod", "group": "billing*",
              "topic": "*", "metric": "lag", "op": ">", "threshold": "1000", "for_seconds": "120",
              "keep_firing_seconds": "0", "repeat_seconds": "0", "severity": "critical"}
    return {**values, **overrides}


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_a_channel_secret_is_never_shown_back(admin_client, webhook_server):
    response = admin_client.post("/admin/monitor/channel/add/", {
        "name": "oncall", "kind": ChannelKind.SLACK, "webhook_url": webhook_server.url(), "email_to": "",
        "enabled": "on"})
    assert response.status_code == 302
    channel = Channel.objects.get()
    assert channel.webhook_url == webhook_server.url()
    for page in (f"/admin/monitor/channel/{channel.id}/change/", "/admin/monitor/channel/"):
        html = admin_client.get(page).content.decode()
        assert "secret-token-XYZ" not in html
    assert "127.0.0.1 (URL hidden)" in admin_client.get("/admin/monitor/channel/").content.decode()


def test_leaving_the_secret_empty_keeps_it(admin_client, webhook_server):
    channel = Channel.objects.create(name="oncall", kind=ChannelKind.SLACK, webhook_url=webhook_server.url())
    response = admin_client.post(f"/admin/monitor/channel/{channel.id}/change/", {
        "name": "oncall-renamed", "kind": ChannelKind.SLACK, "webhook_url": "", "email_to": "", "enabled": "on"})
    assert response.status_code == 302
    channel.refresh_from_db()
    assert channel.name == "oncall-renamed" and channel.webhook_url == webhook_server.url()


def test_channel_fields_are_validated_per_kind(admin_client, db):
    response = admin_client.post("/admin/monitor/channel/add/", {
        "name": "mail", "kind": ChannelKind.EMAIL, "webhook_url": "", "email_to": "oncall@example.com, nope"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["email_to"] == ["'nope' is not an email address."]
    response = admin_client.post("/admin/monitor/channel/add/", {
        "name": "hook", "kind": ChannelKind.WEBHOOK, "webhook_url": "ftp://x", "email_to": ""})
    assert "must start with https://" in response.context["adminform"].form.errors["webhook_url"][0]
    assert not Channel.objects.exists()


def test_the_test_notification_action_shows_the_result(admin_client, webhook_server):
    channel = Channel.objects.create(name="oncall", kind=ChannelKind.SLACK, webhook_url=webhook_server.url())
    response = admin_client.post("/admin/monitor/channel/", {
        "action": "send_test_notification", "_selected_action": [channel.id]}, follow=True)
    [message] = messages_of(response)
    assert message.startswith("oncall: delivered (HTTP 200, ")
    assert webhook_server.received[0].json()["text"].startswith("Test notification from kafka-monitor")
    assert DeliveryAttempt.objects.get().ok


def test_a_failing_test_notification_marks_the_channel_failing_in_the_list(admin_client, webhook_server):
    webhook_server.script(Reply(403, "invalid_token"))
    channel = Channel.objects.create(name="oncall", kind=ChannelKind.SLACK, webhook_url=webhook_server.url())
    response = admin_client.post("/admin/monitor/channel/", {
        "action": "send_test_notification", "_selected_action": [channel.id]}, follow=True)
    [message] = messages_of(response)
    assert message == ("oncall: failed permanently: Slack answered HTTP 403: invalid_token. "
                       "The channel is marked failing.")
    html = admin_client.get("/admin/monitor/channel/").content.decode()
    assert "failing</strong>: Slack answered HTTP 403: invalid_token" in html


def test_a_test_notification_that_fails_temporarily_is_not_retried_later(admin_client, webhook_server):
    from monitor.notify.delivery import sweep_due

    webhook_server.script(Reply(500, "down"))
    channel = Channel.objects.create(name="oncall", kind=ChannelKind.SLACK, webhook_url=webhook_server.url())
    response = admin_client.post("/admin/monitor/channel/", {
        "action": "send_test_notification", "_selected_action": [channel.id]}, follow=True)
    assert messages_of(response) == ["oncall: failed (HTTP 500); alerts would be retried."]  # never the body
    assert sweep_due(timezone.now() + timedelta(hours=1)).total == 0


def test_a_rule_is_created_from_the_admin(admin_client, db):
    slack = Channel.objects.create(name="oncall", kind=ChannelKind.SLACK, webhook_url="https://x.example/h")
    response = admin_client.post("/admin/monitor/alertrule/add/", rule_form(channels=[slack.id]))
    assert response.status_code == 302
    rule = AlertRule.objects.get()
    assert (rule.threshold, rule.for_seconds, list(rule.channels.all())) == (1000.0, 120, [slack])


def test_bad_rule_fields_are_refused_naming_the_field(admin_client, db):
    response = admin_client.post("/admin/monitor/alertrule/add/", rule_form(group="billing[", threshold="-5"))
    errors = response.context["adminform"].form.errors
    assert "unclosed" in errors["group"][0]
    assert errors["threshold"] == ["must not be negative (got -5)"]
    response = admin_client.post("/admin/monitor/alertrule/add/", rule_form(metric="lagg"))
    assert "lagg is not one of the available choices" in response.context["adminform"].form.errors["metric"][0]
    response = admin_client.post("/admin/monitor/alertrule/add/", rule_form(metric="status", threshold="sleepy"))
    assert "status thresholds are one of: ok" in response.context["adminform"].form.errors["threshold"][0]
    assert not AlertRule.objects.exists()


def test_a_status_rule_takes_a_status_name_and_shows_it_back(admin_client, db):
    admin_client.post("/admin/monitor/alertrule/add/", rule_form(metric="status", op="==", threshold="stopped"))
    rule = AlertRule.objects.get()
    assert rule.threshold == STATUS_RANK["stopped"]
    html = admin_client.get(f"/admin/monitor/alertrule/{rule.id}/change/").content.decode()
    assert 'value="stopped"' in html
    assert "status == stopped for 120s" in admin_client.get("/admin/monitor/alertrule/").content.decode()


@pytest.fixture
def history(cluster):
    now = timezone.now()
    group = ConsumerGroup.objects.create(cluster=cluster, name="billing", first_seen_at=now, last_seen_at=now)
    for i in range(60):
        lag = 3000 if 20 <= i < 30 else 100
        record_poll(group, now - timedelta(minutes=60 - i), [Part("payments", 0, 0, lag, lag)], latest=False)
    return cluster


def test_a_backtest_of_unsaved_settings_shows_results_and_saves_nothing(admin_client, history):
    response = admin_client.post("/admin/monitor/alertrule/add/",
                                 rule_form(cluster=history.name, _backtest="Backtest these settings"))
    html = response.content.decode()
    assert response.status_code == 200 and not AlertRule.objects.exists()
    assert "(these unsaved settings)" in html
    summary = response.context["backtest"]
    assert summary.fired == 1 and summary.longest_firing_seconds == 8 * 60
    assert "Would have fired <strong>1</strong> time" in html
    assert 'value="billing falls behind"' in html  # the form keeps what was typed

    lower = admin_client.post("/admin/monitor/alertrule/add/",
                              rule_form(cluster=history.name, threshold="50", _backtest="Backtest"))
    assert lower.context["backtest"].firing_at_end == 1


def test_a_backtest_of_invalid_settings_shows_the_errors_instead(admin_client, history):
    response = admin_client.post("/admin/monitor/alertrule/add/", rule_form(group="[", _backtest="Backtest"))
    assert "backtest" not in response.context and response.context["adminform"].form.errors["group"]


def test_the_change_page_backtests_the_saved_rule(admin_client, history):
    rule = AlertRule.objects.create(name="r", cluster=history.name, group="billing", metric="lag", op=">",
                                    threshold=1000, for_seconds=0)
    response = admin_client.get(f"/admin/monitor/alertrule/{rule.id}/change/")
    assert response.context["backtest"].fired == 1
    response = admin_client.post(f"/admin/monitor/alertrule/{rule.id}/change/", rule_form(
        cluster=history.name, threshold="5000", _backtest="Backtest"))
    assert response.context["backtest"].fired == 0
    rule.refresh_from_db()
    assert rule.threshold == 1000  # a backtest never saves


def test_alerts_and_the_outbox_are_read_only_with_their_attempts(admin_client, db):
    rule = AlertRule.objects.create(name="r", metric="lag", threshold=1)
    now = timezone.now()
    alert = Alert.objects.create(rule=rule, subject="prod/billing/payments", state=AlertState.FIRING, threshold=1,
                                 started_at=now, last_evaluated_at=now)
    channel = Channel.objects.create(name="oncall", kind=ChannelKind.SLACK, webhook_url="https://x.example/h")
    notification = Notification.objects.create(alert=alert, channel=channel, kind=NotificationKind.FIRING,
                                               payload={"kind": "test", "items": [], "channel": "oncall"},
                                               created_at=now, due_at=now, failed_at=now, attempts=1,
                                               last_error="HTTP 404")
    DeliveryAttempt.objects.create(notification=notification, at=now, status_code=404, error="HTTP 404",
                                   duration_seconds=0.1)
    assert admin_client.get("/admin/monitor/alert/").status_code == 200
    assert admin_client.get("/admin/monitor/alert/add/").status_code == 403
    html = admin_client.get(f"/admin/monitor/notification/{notification.id}/change/").content.decode()
    assert "HTTP 404" in html and "Test notification from kafka-monitor" in html

    admin_client.post("/admin/monitor/notification/", {"action": "retry_now", "_selected_action": [notification.id]})
    notification.refresh_from_db()
    assert notification.failed_at is None and notification.due_at >= now

    admin_client.post("/admin/monitor/alert/", {"action": "acknowledge_selected", "_selected_action": [alert.id]})
    alert.refresh_from_db()
    assert alert.acknowledged_by == "admin"


def test_a_silence_records_its_author_and_must_end_after_it_starts(admin_client, db):
    now = timezone.now()
    fields = {"cluster": "prod", "group": "billing*", "topic": "*", "reason": "deploy",
              "starts_at_0": now.strftime("%Y-%m-%d"), "starts_at_1": now.strftime("%H:%M:%S"),
              "ends_at_0": (now + timedelta(hours=1)).strftime("%Y-%m-%d"),
              "ends_at_1": (now + timedelta(hours=1)).strftime("%H:%M:%S")}
    assert admin_client.post("/admin/monitor/silence/add/", fields).status_code == 302
    assert Silence.objects.get().created_by == "admin"
    backwards = {**fields, "ends_at_0": (now - timedelta(days=1)).strftime("%Y-%m-%d")}
    response = admin_client.post("/admin/monitor/silence/add/", backwards)
    assert response.context["adminform"].form.errors["ends_at"] == ["The silence must end after it starts."]
    response = admin_client.post("/admin/monitor/silence/add/", {**fields, "group": "billing eu"})
    assert "spaces" in response.context["adminform"].form.errors["group"][0]


def test_the_silence_form_is_prefilled_from_an_alert_link(admin_client, db):
    html = admin_client.get("/admin/monitor/silence/add/?cluster=prod&group=billing&topic=payments").content.decode()
    assert 'value="billing"' in html and 'value="payments"' in html


def test_maintenance_window_weekdays_are_validated(admin_client, db):
    fields = {"name": "nightly", "enabled": "on", "cluster": "*", "group": "*", "topic": "*",
              "start_time": "02:00", "duration_minutes": "60"}
    response = admin_client.post("/admin/monitor/maintenancewindow/add/", {**fields, "weekdays": "0,7"})
    assert response.context["adminform"].form.errors["weekdays"] == [
        "'7' is not a weekday number 0 (Monday) to 6 (Sunday)"]
    assert admin_client.post("/admin/monitor/maintenancewindow/add/", {**fields, "weekdays": "6, 5"}).status_code == 302
    assert MaintenanceWindow.objects.get().weekdays == "5,6"


def test_the_channel_page_has_a_test_button_that_sends_one(admin_client, webhook_server):
    channel = Channel.objects.create(name="oncall", kind=ChannelKind.SLACK, webhook_url=webhook_server.url())
    page = admin_client.get(f"/admin/monitor/channel/{channel.id}/change/").content.decode()
    assert f'action="/admin/monitor/channel/{channel.id}/test/"' in page and 'id="channel-test"' in page
    assert admin_client.get(f"/admin/monitor/channel/{channel.id}/test/").status_code == 405
    response = admin_client.post(f"/admin/monitor/channel/{channel.id}/test/", follow=True)
    [message] = messages_of(response)
    assert message.startswith("oncall: delivered (HTTP 200, ")
    assert response.redirect_chain[-1][0] == f"/admin/monitor/channel/{channel.id}/change/"
    assert webhook_server.received[0].json()["text"].startswith("Test notification from kafka-monitor")


def test_a_new_rule_defaults_to_lag_and_suggests_the_known_groups(admin_client, cluster):
    now = timezone.now()
    ConsumerGroup.objects.create(cluster=cluster, name="billing", first_seen_at=now, last_seen_at=now)
    page = admin_client.get("/admin/monitor/alertrule/add/").content.decode()
    assert '<option value="lag" selected>' in page
    assert 'list="rule-group-names"' in page and '<option value="billing">' in page
    response = admin_client.post("/admin/monitor/alertrule/add/", rule_form(name="glob still goes", group="bill*"))
    assert response.status_code == 302 and AlertRule.objects.get(name="glob still goes").group == "bill*"


def test_the_alert_list_shows_a_detector_subject_without_a_leading_slash(admin_client, db):
    rule = AlertRule.objects.create(name="drift", metric="schema_drift_events", op=">", threshold=0)
    now = timezone.now()
    Alert.objects.create(rule=rule, subject="/inventory/inventory.events", group="inventory", topic="inventory.events",
                         state=AlertState.FIRING, threshold=0, started_at=now, last_evaluated_at=now)
    html = admin_client.get("/admin/monitor/alert/").content.decode()
    assert "inventory / inventory.events" in html and ">/inventory/inventory.events<" not in html
