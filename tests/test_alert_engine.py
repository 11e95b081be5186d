"""Evaluation against real PostgreSQL: states, the outbox, muting, idempotency and races."""
from __future__ import annotations

import threading
from datetime import time, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from monitor.alerts import metrics
from monitor.alerts.engine import AcknowledgeError, acknowledge, evaluate
from monitor.alerts.rules import Subject
from monitor.choices import AlertState, ChannelKind, ClusterStatus, GroupStatus, NotificationKind
from monitor.models import Alert, AlertRule, Channel, MaintenanceWindow, Notification, Silence
from tests.alert_services import lag_snapshot


@pytest.fixture
def t0():
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def reachable(cluster):
    cluster.status = ClusterStatus.OK
    cluster.save()
    return cluster


@pytest.fixture
def slack(db):
    return Channel.objects.create(name="oncall-slack", kind=ChannelKind.SLACK,
                                  webhook_url="https://hooks.slack.com/services/T0/B0/XYZ")


@pytest.fixture
def make_rule(reachable, slack):
    def make(name="billing behind", channels=None, **fields):
        values = {"cluster": reachable.name, "group": "billing*", "topic": "*", "metric": "lag", "op": ">",
                  "threshold": 1000, "for_seconds": 120, **fields}
        rule = AlertRule.objects.create(name=name, **values)
        rule.channels.set(channels if channels is not None else [slack])
        return rule

    return make


def poll(cluster, at, lag_by_group: dict[str, int], topic="payments", **group_fields):
    for group, lag in lag_by_group.items():
        lag_snapshot(cluster, group, at, {topic: {0: lag}}, **group_fields)


def notifications(kind=None):
    queryset = Notification.objects.order_by("id")
    return list(queryset.filter(kind=kind) if kind else queryset)


def test_an_incident_is_pending_then_fires_once_then_resolves_once(reachable, make_rule, t0):
    rule = make_rule()
    poll(reachable, t0, {"billing": 1500})
    first = evaluate(t0)
    alert = Alert.objects.get()
    assert (first.pending, alert.state, alert.value, alert.subject) == (
        1, AlertState.PENDING, 1500.0, f"{reachable.name}/billing/payments")
    assert notifications() == []

    poll(reachable, t0 + timedelta(seconds=60), {"billing": 1800})
    evaluate(t0 + timedelta(seconds=60))
    poll(reachable, t0 + timedelta(seconds=120), {"billing": 2000})
    fired = evaluate(t0 + timedelta(seconds=120))
    alert.refresh_from_db()
    assert fired.fired == 1 and alert.state == AlertState.FIRING and alert.fired_at == t0 + timedelta(seconds=120)
    assert alert.started_at == t0 and alert.value == 2000.0
    [firing] = notifications()
    assert firing.kind == NotificationKind.FIRING and fired.notification_ids == [firing.id]
    item = firing.payload["items"][0]
    assert (item["rule"], item["group"], item["topic"], item["value"], item["threshold"]) == (
        rule.name, "billing", "payments", 2000.0, 1000.0)
    assert item["duration_seconds"] == 120 and item["worst_partitions"][0]["lag"] == 2000

    for seconds in (180, 240):
        poll(reachable, t0 + timedelta(seconds=seconds), {"billing": 2500})
        evaluate(t0 + timedelta(seconds=seconds))
    assert len(notifications()) == 1

    poll(reachable, t0 + timedelta(seconds=300), {"billing": 10})
    resolved = evaluate(t0 + timedelta(seconds=300))
    alert.refresh_from_db()
    assert resolved.resolved == 1 and alert.state == AlertState.RESOLVED
    assert alert.resolved_at == t0 + timedelta(seconds=300) and alert.value == 10.0
    assert [n.kind for n in notifications()] == [NotificationKind.FIRING, NotificationKind.RESOLVED]
    assert notifications()[-1].payload["items"][0]["duration_seconds"] == 300

    poll(reachable, t0 + timedelta(seconds=360), {"billing": 1500})
    evaluate(t0 + timedelta(seconds=360))
    assert Alert.objects.filter(state=AlertState.PENDING).count() == 1  # a new incident starts afresh


def test_evaluating_twice_in_a_row_changes_nothing_the_second_time(reachable, make_rule, t0):
    make_rule(for_seconds=0, repeat_seconds=600)
    poll(reachable, t0, {"billing": 1500, "billing-eu": 3000})
    evaluate(t0)
    before = list(Alert.objects.order_by("id").values("id", "state", "fired_at", "last_notified_at", "value"))
    again = evaluate(t0)
    assert (again.fired, again.pending, again.resolved, again.notification_ids) == (0, 0, 0, [])
    assert list(Alert.objects.order_by("id").values("id", "state", "fired_at", "last_notified_at", "value")) == before
    assert len(notifications()) == 1


@pytest.mark.django_db(transaction=True)
def test_two_evaluations_racing_in_two_workers_open_one_alert_and_one_message(broker):
    from monitor.models import Cluster

    cluster = Cluster.objects.create(name="race", bootstrap_servers=broker.bootstrap, status=ClusterStatus.OK)
    channel = Channel.objects.create(name="race-slack", kind=ChannelKind.SLACK, webhook_url="https://example.com/x")
    now = timezone.now()
    for index in range(20):
        rule = AlertRule.objects.create(name=f"rule {index}", cluster="race", group="billing*", metric="lag",
                                        op=">", threshold=100, for_seconds=0)
        rule.channels.add(channel)
    for index in range(20):
        lag_snapshot(cluster, f"billing-{index}", now, {"payments": {0: 500}})

    start = threading.Barrier(2)
    results = []

    def worker():
        try:
            start.wait()
            results.append(evaluate(now))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert Alert.objects.count() == 20 * 20
    assert Notification.objects.count() == 20  # one grouped message per rule
    assert sorted(r.fired for r in results) == [0, 400]


def test_alerts_of_one_rule_firing_together_go_out_as_one_message(reachable, make_rule, t0):
    make_rule(for_seconds=0)
    poll(reachable, t0, {f"billing-{i}": 5000 + i for i in range(7)})
    result = evaluate(t0)
    [message] = notifications()
    assert result.fired == 7 and len(message.payload["items"]) == 7


def test_email_channels_get_one_digest_for_alerts_of_several_rules(reachable, make_rule, slack, t0):
    email = Channel.objects.create(name="team-email", kind=ChannelKind.EMAIL, email_to="oncall@example.com")
    make_rule("lag rule", channels=[slack, email], for_seconds=0)
    make_rule("status rule", channels=[slack, email], for_seconds=0, metric="status", op=">=",
              threshold=metrics.get("status").parse_threshold("stalled"))
    poll(reachable, t0, {"billing": 5000}, status=GroupStatus.STOPPED)
    evaluate(t0)
    by_channel = {}
    for n in notifications():
        by_channel.setdefault(n.channel.name, []).append(n)
    assert len(by_channel["oncall-slack"]) == 2  # one per rule
    [digest] = by_channel["team-email"]
    assert sorted(i["rule"] for i in digest.payload["items"]) == ["lag rule", "status rule"]
    status_item = next(i for i in digest.payload["items"] if i["rule"] == "status rule")
    assert (status_item["value_text"], status_item["threshold_text"], status_item["topic"]) == (
        "stopped", "stalled", "")


def test_a_silence_mutes_notifications_but_keeps_the_alert_history(reachable, make_rule, t0):
    rule = make_rule(for_seconds=0)
    Silence.objects.create(cluster=reachable.name, group="billing", starts_at=t0 - timedelta(minutes=1),
                           ends_at=t0 + timedelta(hours=1), reason="deploying", created_by="ana")
    poll(reachable, t0, {"billing": 5000})
    result = evaluate(t0)
    alert = Alert.objects.get(rule=rule)
    assert alert.state == AlertState.FIRING and result.notification_ids == []
    [muted] = notifications()
    assert muted.muted and "deploying" in muted.payload["muted_by"]

    poll(reachable, t0 + timedelta(minutes=5), {"billing": 10})
    evaluate(t0 + timedelta(minutes=5))
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED
    assert all(n.muted for n in notifications())  # nothing was ever sent for this incident


def test_an_alert_that_fired_during_a_silence_is_announced_when_the_silence_ends(reachable, make_rule, t0):
    make_rule(for_seconds=0)
    Silence.objects.create(starts_at=t0 - timedelta(minutes=1), ends_at=t0 + timedelta(minutes=10),
                           reason="window", created_by="ana")
    poll(reachable, t0, {"billing": 5000})
    evaluate(t0)
    poll(reachable, t0 + timedelta(minutes=11), {"billing": 6000})
    result = evaluate(t0 + timedelta(minutes=11))
    sent = [n for n in notifications() if not n.muted]
    assert [n.kind for n in sent] == [NotificationKind.FIRING] and result.notification_ids == [sent[0].id]


def test_a_recurring_maintenance_window_mutes_its_matches(reachable, make_rule, t0):
    make_rule(for_seconds=0)
    start = (t0 - timedelta(minutes=30)).time().replace(second=0)
    MaintenanceWindow.objects.create(name="nightly", group="billing*", weekdays="0,1,2,3,4,5,6",
                                     start_time=start, duration_minutes=60)
    MaintenanceWindow.objects.create(name="elsewhere", group="orders", weekdays="0,1,2,3,4,5,6",
                                     start_time=time(0, 0), duration_minutes=24 * 60)
    poll(reachable, t0, {"billing": 5000})
    evaluate(t0)
    [muted] = notifications()
    assert muted.muted and muted.payload["muted_by"] == "maintenance window nightly"


def test_an_announced_incident_still_gets_its_resolved_message_during_a_silence(reachable, make_rule, t0):
    make_rule(for_seconds=0)
    poll(reachable, t0, {"billing": 5000})
    evaluate(t0)
    Silence.objects.create(starts_at=t0, ends_at=t0 + timedelta(hours=1), reason="noise", created_by="ana")
    poll(reachable, t0 + timedelta(minutes=1), {"billing": 1})
    evaluate(t0 + timedelta(minutes=1))
    assert [(n.kind, n.muted) for n in notifications()] == [
        (NotificationKind.FIRING, False), (NotificationKind.RESOLVED, False)]


def test_reminders_repeat_until_acknowledged_and_the_resolved_message_still_comes(reachable, make_rule, t0):
    make_rule(for_seconds=0, repeat_seconds=600)
    poll(reachable, t0, {"billing": 5000})
    evaluate(t0)
    for minutes in (5, 10, 15, 20):
        poll(reachable, t0 + timedelta(minutes=minutes), {"billing": 5000})
        evaluate(t0 + timedelta(minutes=minutes))
    assert [n.kind for n in notifications()] == [
        NotificationKind.FIRING, NotificationKind.REMINDER, NotificationKind.REMINDER]

    alert = Alert.objects.get()
    acknowledge(alert.id, by="ana", note="on it", now=t0 + timedelta(minutes=21))
    for minutes in (30, 40, 50):
        poll(reachable, t0 + timedelta(minutes=minutes), {"billing": 5000})
        evaluate(t0 + timedelta(minutes=minutes))
    assert len(notifications()) == 3

    poll(reachable, t0 + timedelta(minutes=55), {"billing": 0})
    evaluate(t0 + timedelta(minutes=55))
    resolved = notifications()[-1]
    assert resolved.kind == NotificationKind.RESOLVED
    assert resolved.payload["items"][0]["acknowledged_by"] == "ana"


def test_acknowledging_keeps_the_first_acknowledgement_and_refuses_resolved_alerts(reachable, make_rule, t0):
    make_rule(for_seconds=0)
    poll(reachable, t0, {"billing": 5000})
    evaluate(t0)
    alert = Alert.objects.get()
    acknowledge(alert.id, by="ana", note="mine")
    again = acknowledge(alert.id, by="bob", note="no, mine")
    assert (again.acknowledged_by, again.acknowledgement_note) == ("ana", "mine")
    poll(reachable, t0 + timedelta(minutes=1), {"billing": 0})
    evaluate(t0 + timedelta(minutes=1))
    other = Alert.objects.create(rule=alert.rule, subject="x//", state=AlertState.RESOLVED, threshold=1,
                                 started_at=t0, last_evaluated_at=t0)
    with pytest.raises(AcknowledgeError, match="is resolved"):
        acknowledge(other.id, by="ana")
    with pytest.raises(AcknowledgeError) as missing:
        acknowledge(999999, by="ana")
    assert missing.value.not_found


def test_a_deleted_group_resolves_its_alert_and_the_message_says_why(reachable, make_rule, t0):
    make_rule(for_seconds=0)
    poll(reachable, t0, {"billing": 5000})
    evaluate(t0)
    poll(reachable, t0 + timedelta(minutes=1), {"billing": 5000}, gone_at=t0 + timedelta(minutes=1))
    evaluate(t0 + timedelta(minutes=1))
    alert = Alert.objects.get()
    assert alert.state == AlertState.RESOLVED and "group billing was deleted" in alert.detail["resolved_reason"]
    resolved = notifications()[-1]
    assert resolved.kind == NotificationKind.RESOLVED
    assert resolved.payload["items"][0]["resolved_reason"].startswith("group billing was deleted (gone since")


def test_an_unreachable_cluster_keeps_the_alert_firing_and_flags_no_data(reachable, make_rule, t0):
    make_rule(for_seconds=0, repeat_seconds=60)
    poll(reachable, t0, {"billing": 5000})
    evaluate(t0)
    reachable.status = ClusterStatus.UNREACHABLE
    reachable.save()
    evaluate(t0 + timedelta(minutes=2))
    alert = Alert.objects.get()
    assert alert.state == AlertState.FIRING and alert.no_data
    assert alert.detail["no_data_reason"] == f"cluster {reachable.name} is unreachable"
    reminder = notifications()[-1]
    assert reminder.kind == NotificationKind.REMINDER
    assert reminder.payload["items"][0]["no_data_reason"] == f"cluster {reachable.name} is unreachable"

    reachable.status = ClusterStatus.OK
    reachable.save()
    poll(reachable, t0 + timedelta(minutes=3), {"billing": 4000})
    evaluate(t0 + timedelta(minutes=3))
    alert.refresh_from_db()
    assert not alert.no_data and alert.value == 4000.0


def test_a_subject_that_no_longer_matches_the_rule_resolves_saying_so(reachable, make_rule, t0):
    rule = make_rule(for_seconds=0)
    poll(reachable, t0, {"billing": 5000})
    evaluate(t0)
    rule.group = "orders*"
    rule.save()
    evaluate(t0 + timedelta(minutes=1))
    alert = Alert.objects.get()
    assert alert.state == AlertState.RESOLVED and "no longer" in alert.detail["resolved_reason"]


def test_disabling_a_rule_resolves_its_firing_alerts_and_drops_pending_ones(reachable, make_rule, t0):
    firing_rule = make_rule("fires", for_seconds=0)
    pending_rule = make_rule("waits", for_seconds=600)
    poll(reachable, t0, {"billing": 5000})
    evaluate(t0)
    AlertRule.objects.update(enabled=False)
    result = evaluate(t0 + timedelta(minutes=1))
    assert (result.resolved, result.dropped) == (1, 1)
    assert Alert.objects.get(rule=firing_rule).detail["resolved_reason"] == "the rule was disabled"
    assert not Alert.objects.filter(rule=pending_rule).exists()


def test_a_rule_with_an_unknown_metric_is_reported_and_other_rules_still_run(reachable, make_rule, t0):
    make_rule("ghost", metric="no_such_metric")
    make_rule("real", for_seconds=0)
    poll(reachable, t0, {"billing": 5000})
    result = evaluate(t0)
    assert result.fired == 1 and "unknown metric 'no_such_metric'" in result.errors[0]


def test_a_failing_metric_plugin_does_not_stop_the_other_rules(reachable, make_rule, t0):
    @metrics.metric("test_broken")
    def broken(scopes, now):
        from monitor.models import Alert

        Alert.objects.raw("SELECT * FROM no_such_table")[0]  # a database error inside the transaction

    try:
        make_rule("broken", metric="test_broken")
        make_rule("real", for_seconds=0)
        poll(reachable, t0, {"billing": 5000})
        result = evaluate(t0)
        assert result.fired == 1 and "metric test_broken failed" in result.errors[0]
    finally:
        metrics._REGISTRY.pop("test_broken")


def test_queries_per_evaluation_do_not_grow_with_rules_or_groups(reachable, slack, t0):
    def evaluation_queries(rules: int, groups: int) -> int:
        AlertRule.objects.all().delete()
        for index in range(rules):
            rule = AlertRule.objects.create(name=f"r{rules}-{index}", cluster=reachable.name, group="g-*",
                                            metric="lag", op=">", threshold=10 ** 9, for_seconds=60)
            rule.channels.add(slack)
        for index in range(groups):
            lag_snapshot(reachable, f"g-{index}", t0, {"t": {0: index}})
        with CaptureQueriesContext(connection) as queries:
            evaluate(t0)
        return len(queries)

    assert evaluation_queries(1, 1) == evaluation_queries(40, 80)


def test_transitions_write_in_bulk_not_per_alert(reachable, make_rule, t0):
    make_rule(for_seconds=60)
    poll(reachable, t0, {f"billing-{i}": 5000 for i in range(30)})
    evaluate(t0)
    poll(reachable, t0 + timedelta(seconds=60), {f"billing-{i}": 5000 for i in range(30)})
    with CaptureQueriesContext(connection) as queries:
        result = evaluate(t0 + timedelta(seconds=60))
    assert result.fired == 30
    assert len(queries) < 20


def test_readings_for_subjects_of_the_scope_only(reachable, make_rule, t0):
    make_rule(for_seconds=0, topic="pay*")
    lag_snapshot(reachable, "billing", t0, {"payments": {0: 5000}, "audit": {0: 5000}})
    evaluate(t0)
    assert [a.subject for a in Alert.objects.all()] == [Subject(reachable.name, "billing", "payments").key]


def test_event_metric_subjects_have_no_cluster_and_carry_the_detector_summary(make_rule, t0):
    @metrics.metric("test_lost")
    def lost(scopes, now):
        return {Subject("", "billing", "payments"): metrics.Reading(4.0, detail={"summary": "4 events lost"})}

    try:
        make_rule("lost", cluster="*", metric="test_lost", threshold=0, for_seconds=0)
        evaluate(t0)
        alert = Alert.objects.get()
        assert (alert.subject, alert.detail["summary"]) == ("/billing/payments", "4 events lost")
        [message] = notifications()
        item = message.payload["items"][0]
        assert (item["summary"], item["group_url"]) == ("4 events lost", "")
    finally:
        metrics._REGISTRY.pop("test_lost")


def test_a_resolved_alert_keeps_the_worst_value_it_reached(reachable, make_rule, t0):
    make_rule(for_seconds=0)
    for seconds, lag in ((0, 1500), (60, 3860), (120, 2000), (180, 0)):
        poll(reachable, t0 + timedelta(seconds=seconds), {"billing": lag})
        evaluate(t0 + timedelta(seconds=seconds))
    alert = Alert.objects.get()
    assert alert.state == AlertState.RESOLVED and alert.value == 0.0 and alert.detail["worst"] == 3860.0
