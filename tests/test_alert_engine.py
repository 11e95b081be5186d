"""Evaluation against real PostgreSQL: states, the outbox, muting, idempotency and races."""
from __future__ import annotations

import re
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
from monitor.notify import render
from tests.lag_rows import lag_snapshot
from tests.race import race


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

    results = race(lambda: evaluate(now), runners=2)

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
    [resolved] = notifications(NotificationKind.RESOLVED)
    assert "resolved without data: the rule was disabled" in render.fallback_text(resolved.payload)


def test_deleting_a_rule_resolves_its_open_alerts_with_a_message_that_says_why(reachable, make_rule, t0):
    rule = make_rule("fires", for_seconds=0)
    make_rule("waits", for_seconds=600, group="billing")
    poll(reachable, t0, {"billing": 5000})
    evaluate(t0)
    rule.delete()
    [firing, resolved] = notifications()
    assert (firing.kind, resolved.kind) == (NotificationKind.FIRING, NotificationKind.RESOLVED)
    assert firing.alert is None and resolved.alert is None  # the outbox outlives the rule
    assert "resolved without data: the rule was deleted" in render.fallback_text(resolved.payload)
    assert Alert.objects.filter(rule__name="waits", state=AlertState.PENDING).count() == 1  # other rules untouched


def test_deleting_a_rule_keeps_an_unsent_digest_that_carries_other_rules_alerts(reachable, make_rule, slack, t0):
    email = Channel.objects.create(name="team-email", kind=ChannelKind.EMAIL, email_to="oncall@example.com")
    first = make_rule("lag rule", channels=[email], for_seconds=0)
    make_rule("status rule", channels=[email], for_seconds=0, metric="status", op=">=",
              threshold=metrics.get("status").parse_threshold("stalled"))
    poll(reachable, t0, {"billing": 5000}, status=GroupStatus.STOPPED)
    evaluate(t0)
    [digest] = notifications()
    assert digest.alert.rule_id == first.id  # the digest hangs on the first rule's alert
    AlertRule.objects.filter(pk=first.pk).delete()
    digest.refresh_from_db()
    assert sorted(i["rule"] for i in digest.payload["items"]) == ["lag rule", "status rule"]
    assert digest.sent_at is None and digest.failed_at is None
    assert [n.kind for n in notifications()] == [NotificationKind.FIRING, NotificationKind.RESOLVED]


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

# -- values you can trust at the edges (issue 9) --------------------------------------

def record_poll(cluster, at, committed: dict, offsets: dict, group: str = "billing"):
    """One poll through the poller's recording path, at an explicit time; an offsets
    value of None is a partition whose log offsets the broker did not answer for."""
    import time as clock

    from monitor.kafka.adapter import GroupListing, LogOffsets
    from monitor.lag.record import ClusterReading, record_cycle

    reading = ClusterReading(
        polled_at=at, groups=[GroupListing(group, "Stable", "consumer")], committed={group: committed},
        partition_counts={"payments": len(offsets)},
        log_offsets={tp: LogOffsets(*pair) for tp, pair in offsets.items() if pair is not None},
        log_errors={tp: "NotLeaderForPartitionError" for tp, pair in offsets.items() if pair is None},
    )
    record_cycle(cluster, reading, at, clock.monotonic())


def test_a_partial_total_is_no_new_data_the_alert_keeps_its_state_and_sends_nothing(reachable, make_rule, t0):
    """2 partitions at lag 800 each, rule lag > 1000: one partition's log offsets fail for
    one poll (a leader election). Before: firing, resolved, firing."""
    make_rule(for_seconds=0)
    committed = {("payments", 0): 200, ("payments", 1): 200}
    full = {("payments", 0): (0, 1000), ("payments", 1): (0, 1000)}
    record_poll(reachable, t0, committed, full)
    evaluate(t0)

    record_poll(reachable, t0 + timedelta(seconds=30), committed, {("payments", 0): (0, 1000), ("payments", 1): None})
    evaluate(t0 + timedelta(seconds=30))
    alert = Alert.objects.get()
    assert alert.state == AlertState.FIRING and alert.value == 1600.0
    assert "partial" in alert.detail["no_data_reason"]

    record_poll(reachable, t0 + timedelta(seconds=60), committed, full)
    evaluate(t0 + timedelta(seconds=60))

    assert [n.kind for n in notifications()] == [NotificationKind.FIRING]
    assert Alert.objects.get().state == AlertState.FIRING


def test_a_partial_total_does_not_drop_a_pending_alert(reachable, make_rule, t0):
    make_rule(for_seconds=120)
    committed = {("payments", 0): 200, ("payments", 1): 200}
    full = {("payments", 0): (0, 1000), ("payments", 1): (0, 1000)}
    record_poll(reachable, t0, committed, full)
    evaluate(t0)
    record_poll(reachable, t0 + timedelta(seconds=60), committed, {("payments", 0): (0, 1000), ("payments", 1): None})
    evaluate(t0 + timedelta(seconds=60))
    record_poll(reachable, t0 + timedelta(seconds=120), committed, full)
    evaluate(t0 + timedelta(seconds=120))

    alert = Alert.objects.get()
    assert (alert.state, alert.started_at) == (AlertState.FIRING, t0)


def test_a_catch_up_rule_does_not_fire_on_the_first_poll_for_lack_of_history(reachable, make_rule, t0):
    make_rule(metric="catch_up_seconds", threshold=3600, for_seconds=0)
    record_poll(reachable, t0, {("payments", 0): 0}, {("payments", 0): (0, 1000)})

    evaluate(t0)

    assert not Alert.objects.exists() and notifications() == []


def test_an_alert_in_its_keep_firing_period_sends_no_reminder(reachable, make_rule, t0):
    make_rule(for_seconds=0, repeat_seconds=300, keep_firing_seconds=1800)
    poll(reachable, t0, {"billing": 5000})
    evaluate(t0)
    for minutes in (10, 20):  # clear, but held firing; reminders would be due
        poll(reachable, t0 + timedelta(minutes=minutes), {"billing": 0})
        evaluate(t0 + timedelta(minutes=minutes))

    assert Alert.objects.get().state == AlertState.FIRING
    assert [n.kind for n in notifications()] == [NotificationKind.FIRING]


def test_a_group_whose_commits_all_disappeared_says_so(reachable, make_rule, t0):
    make_rule(metric="status", op=">=", threshold=metrics.STATUS_RANK[GroupStatus.STALLED], group="billing")
    record_poll(reachable, t0, {}, {})

    reading = metrics.get("status").fetch([metrics.Scope(reachable.name, "billing")], t0)
    [found] = metrics.normalise(reading).values()
    assert "has no committed offset on any partition" in found.no_data_reason


def test_firing_message_names_the_owner_of_each_lagging_partition(reachable, make_rule, t0):
    from monitor.notify.render import email_text, slack_message

    make_rule(for_seconds=0)
    poll(reachable, t0, {"billing": 18223}, member_details=[
        {"member_id": "m-1", "client_id": "billing-7f9c", "host": "10.2.3.4", "partitions": [["payments", 0]]}])

    evaluate(t0)

    [firing] = notifications()
    assert firing.payload["items"][0]["worst_partitions"] == [
        {"topic": "payments", "partition": 0, "lag": 18223, "time_lag_seconds": None,
         "owner": "billing-7f9c on 10.2.3.4"}]
    assert re.search(r"payments/0 +18,223 +unknown +billing-7f9c on 10.2.3.4", email_text(firing.payload))
    assert "billing-7f9c on 10.2.3.4" in str(slack_message(firing.payload))


def test_detector_alert_messages_link_example_traces_to_the_trace_backend(make_rule, t0, settings):
    from monitor.models import Finding
    from monitor.notify.render import email_html, email_text, slack_message

    settings.MONITOR_TRACE_URL_TEMPLATE = "https://jaeger.example/trace/{trace_id}"
    Finding.objects.create(kind="lost", fingerprint="f-1", consumer_group="billing", topic="payments", value=4,
                           summary="4 events lost", examples=[{"event_id": "e1", "trace_id": "abc/123"}],
                           first_seen_at=t0, last_seen_at=t0)
    make_rule("lost", cluster="*", metric="lost_events", threshold=0, for_seconds=0)

    evaluate(t0)

    [message] = notifications()
    assert message.payload["items"][0]["traces"] == [
        {"trace_id": "abc/123", "url": "https://jaeger.example/trace/abc%2F123"}]
    assert "trace abc/123: https://jaeger.example/trace/abc%2F123" in email_text(message.payload)
    assert 'href="https://jaeger.example/trace/abc%2F123"' in email_html(message.payload)
    assert "<https://jaeger.example/trace/abc%2F123|abc/123>" in str(slack_message(message.payload))
