"""The metric registry and the lag metrics, read in bulk from real PostgreSQL."""
from __future__ import annotations

import math
from datetime import timedelta

import pytest
from django.utils import timezone

from monitor.alerts import metrics
from monitor.alerts.metrics import Level, Metric, STATUS_RANK
from monitor.humanize import duration as format_duration
from monitor.alerts.rules import Reading, Scope, Subject
from monitor.choices import ClusterStatus, GroupStatus
from monitor.models import ConsumerGroup
from tests.lag_rows import lag_snapshot


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def reachable(cluster):
    cluster.status = ClusterStatus.OK
    cluster.save()
    return cluster


def readings(metric_name, scopes, now):
    return metrics.normalise(metrics.get(metric_name).fetch(scopes, now))


def test_lag_is_read_per_group_and_topic_from_the_latest_poll(reachable, now):
    lag_snapshot(reachable, "billing", now - timedelta(seconds=30), {"payments": {0: 5, 1: 5}})
    lag_snapshot(reachable, "billing", now, {"payments": {0: 800, 1: 700}, "refunds": {0: 3}})
    lag_snapshot(reachable, "orders", now, {"orders": {0: 1}})

    found = readings("lag", [Scope(reachable.name, "billing*", "*")], now)

    assert found[Subject(reachable.name, "billing", "payments")] == Reading(1500.0)
    assert found[Subject(reachable.name, "billing", "refunds")] == Reading(3.0)
    assert Subject(reachable.name, "orders", "orders") not in found  # outside every scope


def test_time_lag_reads_the_topic_time_lag(reachable, now):
    lag_snapshot(reachable, "billing", now, {"payments": {0: 10}}, time_lag={"payments": 95.5})
    assert readings("time_lag_seconds", [Scope()], now)[Subject(reachable.name, "billing", "payments")].value == 95.5


def test_unknown_lag_is_no_data_never_zero(reachable, now):
    lag_snapshot(reachable, "billing", now, {"payments": {0: None}})
    reading = readings("lag", [Scope()], now)[Subject(reachable.name, "billing", "payments")]
    assert not reading.has_data and not reading.final
    assert "1 partition(s) without data" in reading.no_data_reason


def test_a_deleted_group_is_no_data_for_good_with_the_reason(reachable, now):
    lag_snapshot(reachable, "billing", now, {"payments": {0: 10}}, gone_at=now)
    reading = readings("lag", [Scope()], now)[Subject(reachable.name, "billing", "payments")]
    assert reading.final and "group billing was deleted" in reading.no_data_reason


def test_an_unreachable_cluster_is_no_data_but_not_final(reachable, now):
    lag_snapshot(reachable, "billing", now, {"payments": {0: 10}})
    reachable.status = ClusterStatus.UNREACHABLE
    reachable.save()
    reading = readings("lag", [Scope()], now)[Subject(reachable.name, "billing", "payments")]
    assert not reading.has_data and not reading.final
    assert reading.no_data_reason == f"cluster {reachable.name} is unreachable"


def test_stale_samples_are_no_data(reachable, now):
    lag_snapshot(reachable, "billing", now - timedelta(minutes=10), {"payments": {0: 10}})
    reading = readings("lag", [Scope()], now)[Subject(reachable.name, "billing", "payments")]
    assert "no lag sample for 10 min" in reading.no_data_reason and not reading.final


def test_a_group_whose_offsets_were_not_read_is_no_data_at_every_level_with_the_reason(reachable, now):
    """Its last detail is fresh in the frames, but it is not the group's current state:
    no metric reads it, none reads its unknown forecasts as "no risk" or 0."""
    lag_snapshot(reachable, "billing", now, {"payments": {0: 10}}, status=GroupStatus.UNKNOWN,
                 status_reason="offsets not read in the latest poll (GroupAuthorizationFailedError)",
                 unread_since=now - timedelta(minutes=2), total_lag=None, retention_risk_seconds=None)
    reason = "offsets not read in the latest poll (GroupAuthorizationFailedError); unread for 2 min"
    for name, subject in (("lag", Subject(reachable.name, "billing", "payments")),
                          ("time_lag_seconds", Subject(reachable.name, "billing", "payments")),
                          ("retention_risk_seconds", Subject(reachable.name, "billing", "")),
                          ("catch_up_seconds", Subject(reachable.name, "billing", "")),
                          ("status", Subject(reachable.name, "billing", ""))):
        reading = readings(name, [Scope()], now)[subject]
        assert not reading.has_data and not reading.final, name
        assert reading.no_data_reason == reason, name


def test_retention_risk_of_a_group_whose_lag_is_unknown_is_no_data_not_no_risk(reachable, now):
    lag_snapshot(reachable, "billing", now, {"payments": {0: None}}, status=GroupStatus.UNKNOWN, total_lag=None,
                 retention_risk_seconds=None)
    reading = readings("retention_risk_seconds", [Scope()], now)[Subject(reachable.name, "billing", "")]
    assert not reading.has_data and reading.no_data_reason == "lag unknown"


def test_status_is_ranked_from_healthy_to_worst_and_thresholds_are_names(reachable, now):
    lag_snapshot(reachable, "billing", now, {"payments": {0: 10}}, status=GroupStatus.STOPPED)
    lag_snapshot(reachable, "orders", now, {"orders": {0: 0}}, status=GroupStatus.UNKNOWN)
    found = readings("status", [Scope()], now)
    status = metrics.get("status")

    stopped = found[Subject(reachable.name, "billing", "")]
    assert stopped.value == status.parse_threshold("stopped") == STATUS_RANK[GroupStatus.STOPPED]
    assert status.parse_threshold("stalled") < stopped.value < status.parse_threshold("data_loss")
    assert status.format_value(stopped.value) == "stopped"
    assert stopped.detail["topics"] == ["payments"]
    assert "status is unknown" in found[Subject(reachable.name, "orders", "")].no_data_reason
    with pytest.raises(ValueError, match="one of: ok, idle"):
        status.parse_threshold("broken")


def test_every_group_status_is_either_ranked_or_handled_as_no_data():
    assert set(STATUS_RANK) | {GroupStatus.GONE, GroupStatus.UNKNOWN} == set(GroupStatus.values)
    assert sorted(STATUS_RANK.values()) == list(range(len(STATUS_RANK)))


def test_catch_up_is_never_when_the_group_is_not_catching_up(reachable, now):
    lag_snapshot(reachable, "slow", now, {"t": {0: 500}}, catch_up_seconds=None, catch_up_never=True)
    lag_snapshot(reachable, "fast", now, {"t": {0: 500}}, catch_up_seconds=42.0)
    lag_snapshot(reachable, "done", now, {"t": {0: 0}}, catch_up_seconds=None)
    found = readings("catch_up_seconds", [Scope()], now)
    slow = found[Subject(reachable.name, "slow", "")]
    assert math.isinf(slow.value) and slow.detail["value_text"] == "not catching up"
    assert found[Subject(reachable.name, "fast", "")].value == 42.0
    assert found[Subject(reachable.name, "done", "")].value == 0.0


def test_catch_up_without_enough_history_for_rates_is_no_data_not_never(reachable, now):
    lag_snapshot(reachable, "new", now, {"t": {0: 1000}}, catch_up_seconds=None, catch_up_never=False)

    reading = readings("catch_up_seconds", [Scope()], now)[Subject(reachable.name, "new", "")]

    assert not reading.has_data and reading.no_data_reason == "not enough history for rates yet"


def test_retention_risk_is_never_without_risk(reachable, now):
    lag_snapshot(reachable, "safe", now, {"t": {0: 5}}, retention_risk_seconds=None)
    lag_snapshot(reachable, "risky", now, {"t": {0: 5}}, retention_risk_seconds=600.0)
    found = readings("retention_risk_seconds", [Scope()], now)
    assert math.isinf(found[Subject(reachable.name, "safe", "")].value)
    assert found[Subject(reachable.name, "risky", "")].value == 600.0


def test_cluster_unreachable_is_one_while_unreachable(cluster, now):
    found = readings("cluster_unreachable", [Scope(cluster.name)], now)
    assert "not been polled yet" in found[Subject(cluster.name)].no_data_reason
    cluster.status, cluster.last_error = ClusterStatus.UNREACHABLE, "NoBrokersAvailable"
    cluster.save()
    reading = readings("cluster_unreachable", [Scope(cluster.name)], now)[Subject(cluster.name)]
    assert reading.value == 1.0 and reading.detail["error"] == "NoBrokersAvailable"
    cluster.status = ClusterStatus.OK
    cluster.save()
    assert readings("cluster_unreachable", [Scope(cluster.name)], now)[Subject(cluster.name)].value == 0.0


def test_reading_lag_takes_the_same_few_queries_for_one_group_or_two_hundred(reachable, now,
                                                                          django_assert_max_num_queries):
    lag_snapshot(reachable, "g-0", now, {"t": {0: 1}})
    with django_assert_max_num_queries(2):
        assert len(readings("lag", [Scope()], now)) >= 1
    for index in range(1, 200):
        lag_snapshot(reachable, f"g-{index}", now, {"t": {0: index}, "u": {0: index}})
    with django_assert_max_num_queries(2):
        assert len(readings("lag", [Scope(), Scope(reachable.name, "g-1*")], now)) >= 399


def test_another_area_registers_a_metric_with_the_decorator(now):
    @metrics.metric("test_lost_events", unit="events", level=Level.TOPIC, description="lost events")
    def lost_events(scopes, now):
        return {Subject("", "billing", "payments"): 3, Subject("", "orders", "orders"): None}

    try:
        assert "test_lost_events" in metrics.all_metrics()
        found = readings("test_lost_events", [Scope()], now)
        assert found[Subject("", "billing", "payments")] == Reading(3.0)
        assert not found[Subject("", "orders", "orders")].has_data
        assert metrics.get("test_lost_events").format_value(3) == "3 events"
    finally:
        metrics._REGISTRY.pop("test_lost_events")


def test_a_metric_name_cannot_be_taken_twice():
    with pytest.raises(ValueError, match="already registered"):
        metrics.register(Metric(name="lag", fetch=lambda scopes, now: {}))


def test_values_are_formatted_for_people():
    assert metrics.get("lag").format_value(12345) == "12,345 messages"
    assert metrics.get("time_lag_seconds").format_value(125) == "2 min 5 s"
    assert metrics.get("catch_up_seconds").format_value(math.inf) == "never"
    assert metrics.get("lag").json_value(math.inf) is None
    assert metrics.get("status").json_value(STATUS_RANK["stalled"]) == "stalled"
    assert format_duration(7200) == "2 h" and format_duration(3 * 86400 + 3600) == "3 d 1 h"


def test_thresholds_are_parsed_from_text_and_numbers():
    lag = metrics.get("lag")
    assert lag.parse_threshold("1,000") == lag.parse_threshold(1000) == 1000.0
    with pytest.raises(ValueError, match="must be a number"):
        lag.parse_threshold("many")
    with pytest.raises(ValueError):
        lag.parse_threshold(True)


def test_worst_partitions_of_a_topic_are_listed_most_lag_first(reachable, now):
    lag_snapshot(reachable, "billing", now - timedelta(seconds=30), {"payments": {0: 9999}})
    lag_snapshot(reachable, "billing", now, {"payments": {0: 10, 1: 900, 2: None, 3: 50}})
    worst = metrics.worst_partitions([Subject(reachable.name, "billing", "payments")], limit=3)
    assert [(p["partition"], p["lag"]) for p in worst[Subject(reachable.name, "billing", "payments")]] == [
        (1, 900), (3, 50), (0, 10)]


def test_worst_partitions_leave_out_an_unread_groups_last_detail(reachable, now):
    lag_snapshot(reachable, "billing", now, {"payments": {0: 900}}, unread_since=now)
    assert metrics.worst_partitions([Subject(reachable.name, "billing", "payments")]) == {}


def test_unread_seconds_is_how_long_a_listed_group_could_not_be_read_and_0_while_it_is(reachable, now):
    """The one metric an unread group has a value for: a group the monitor may never read
    is still something to alert on. Deleted, unreachable or not polled lately: no data."""
    lag_snapshot(reachable, "billing", now, {"payments": {0: 5}})
    lag_snapshot(reachable, "audit", now - timedelta(minutes=9), {"payments": {0: 5}}, last_seen_at=now,
                 unread_since=now - timedelta(minutes=7), status=GroupStatus.UNKNOWN,
                 status_reason="offsets not read in the latest poll (GroupAuthorizationFailedError)")
    found = readings("unread_seconds", [Scope()], now)
    assert found[Subject(reachable.name, "billing", "")] == Reading(0.0, detail={"topics": ["payments"]})
    audit = found[Subject(reachable.name, "audit", "")]
    assert audit.value == 420.0 and "GroupAuthorizationFailedError" in audit.detail["summary"]

    later = now + timedelta(hours=1)  # no poll has listed it since
    stale = readings("unread_seconds", [Scope()], later)[Subject(reachable.name, "audit", "")]
    assert not stale.has_data and stale.no_data_reason.startswith("no poll for")

    ConsumerGroup.objects.create(cluster=reachable, name="joined", status=GroupStatus.UNKNOWN,
                                 first_seen_at=now, last_seen_at=now)  # read, no commit yet: readable
    lag_snapshot(reachable, "deleted", now, {"payments": {0: 5}}, gone_at=now, unread_since=None)
    found = readings("unread_seconds", [Scope()], now)
    assert found[Subject(reachable.name, "joined", "")].value == 0.0
    deleted = found[Subject(reachable.name, "deleted", "")]
    assert not deleted.has_data and deleted.final

    reachable.status = ClusterStatus.UNREACHABLE
    reachable.save()
    gone_dark = readings("unread_seconds", [Scope()], now + timedelta(seconds=1))[Subject(reachable.name, "audit", "")]
    assert not gone_dark.has_data and gone_dark.no_data_reason == f"cluster {reachable.name} is unreachable"


def test_registry_lists_the_contract_metrics():
    assert {"lag", "time_lag_seconds", "status", "catch_up_seconds", "retention_risk_seconds",
            "cluster_unreachable"} <= set(metrics.all_metrics())
    assert ("lag", "lag - messages the group is behind on a topic") in metrics.choices()
