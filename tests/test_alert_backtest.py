"""Backtest: replaying the live state machine over stored history."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone

from monitor.alerts.backtest import backtest, replay
from monitor.alerts.metrics import merge_resolutions
from monitor.alerts.rules import RuleSpec, Subject
from monitor.models import ConsumerGroup
from tests.lag_rows import Part, record_poll

T0 = datetime(2025, 3, 1, tzinfo=UTC)
BILLING = Subject("prod", "billing", "payments")


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def rule(**overrides) -> RuleSpec:
    return RuleSpec(**{"name": "r", "metric": "lag", "op": ">", "threshold": 100.0, "for_seconds": 120, **overrides})


def every_minute(values: list[float | None]) -> list[tuple[datetime, float | None]]:
    return [(minutes(i), v) for i, v in enumerate(values)]


def test_counts_how_often_and_how_long_a_rule_would_have_fired():
    series = {BILLING: every_minute([0, 500, 500, 500, 500, 0, 0, 800, 900, 900, 0])}
    result = replay(rule(), series, T0, minutes(11))
    assert result.fired == 2
    first, second = result.incidents
    assert (first.started_at, first.fired_at, first.resolved_at, first.peak) == (
        minutes(1), minutes(3), minutes(5), 500)
    assert (second.fired_at, second.resolved_at, second.peak) == (minutes(9), minutes(10), 900)
    assert result.total_firing_seconds == 180 and result.longest_firing_seconds == 120
    assert result.by_subject() == [(BILLING, 2, 180.0)]
    assert result.samples == 11


def test_a_short_spike_shorter_than_for_seconds_never_fires():
    assert replay(rule(), {BILLING: every_minute([0, 500, 0, 500, 0])}, T0, minutes(5)).fired == 0


def test_keep_firing_damps_flapping_into_one_incident():
    values = [500, 500, 500, 0, 500, 0, 500, 0, 0, 0, 0, 0]
    damped = replay(rule(for_seconds=0, keep_firing_seconds=180), {BILLING: every_minute(values)}, T0, minutes(12))
    undamped = replay(rule(for_seconds=0), {BILLING: every_minute(values)}, T0, minutes(12))
    assert (damped.fired, undamped.fired) == (1, 3)


def test_an_incident_still_firing_at_the_end_counts_until_the_end():
    result = replay(rule(for_seconds=0), {BILLING: every_minute([0, 500, 500])}, T0, minutes(10))
    [incident] = result.incidents
    assert incident.resolved_at is None and result.firing_at_end == 1
    assert result.total_firing_seconds == 9 * 60


def test_a_gap_in_the_samples_resets_a_pending_condition():
    points = [(minutes(0), 500.0), (minutes(1), 500.0), (minutes(60), 500.0), (minutes(61), 500.0)]
    assert replay(rule(for_seconds=180), {BILLING: points}, T0, minutes(62)).fired == 0


def test_only_subjects_in_the_rule_scope_count():
    series = {BILLING: every_minute([500] * 5), Subject("prod", "orders", "o"): every_minute([500] * 5)}
    assert [i.subject for i in replay(rule(group="bill*"), series, T0, minutes(5)).incidents] == [BILLING]


def test_rollups_fill_only_the_time_before_the_raw_samples():
    raw = [(minutes(120), 5.0), (minutes(121), 6.0)]
    hourly = [(minutes(0), 100.0), (minutes(60), 200.0), (minutes(120), 999.0)]
    # The bucket starting at 120 min overlaps the raw samples; the one ending at 120 does not.
    assert merge_resolutions({0: raw, 3600: hourly}) == [(minutes(0), 100.0), (minutes(60), 200.0)] + raw


def test_backtest_reads_the_stored_history_of_matching_groups(cluster):
    now = timezone.now()
    group = ConsumerGroup.objects.create(cluster=cluster, name="billing", first_seen_at=now, last_seen_at=now)
    other = ConsumerGroup.objects.create(cluster=cluster, name="orders", first_seen_at=now, last_seen_at=now)
    for i in range(30):
        at = now - timedelta(minutes=30 - i)
        lag = 5000 if 10 <= i < 20 else 10
        record_poll(group, at, [Part("payments", 0, 0, lag, lag)], latest=False)
        record_poll(other, at, [Part("orders", 0, 0, 5000, 5000)], latest=False)
    record_poll(group, now - timedelta(days=9), [Part("payments", 0, 0, 10**6, 10**6)], latest=False)

    result = backtest(rule(cluster=cluster.name, group="bill*", threshold=1000, for_seconds=120), now)
    assert result.fired == 1 and result.subjects == 1 and result.samples == 30
    [incident] = result.incidents
    assert incident.subject == Subject(cluster.name, "billing", "payments")
    assert incident.firing_seconds(now) == 8 * 60


def test_backtest_skips_partial_totals_as_the_live_evaluation_does(cluster):
    """Two partitions at lag 800 each, rule lag > 1000: one poll with a partition unknown
    is no new data, not a drop to 800 (which would resolve and fire again)."""
    now = timezone.now()
    group = ConsumerGroup.objects.create(cluster=cluster, name="billing", first_seen_at=now, last_seen_at=now)
    for i in range(10):
        at = now - timedelta(minutes=10 - i)
        parts = [Part("payments", 0, 200, 1000, 800), Part("payments", 1, 200, 1000, 800)]
        if i == 5:
            parts[1] = Part("payments", 1, 200, None, None)
        record_poll(group, at, parts, latest=False)  # the unknown partition with a commit: a partial total

    result = backtest(rule(cluster=cluster.name, group="billing", threshold=1000, for_seconds=0), now)

    assert result.fired == 1 and result.samples == 9


def test_a_metric_without_history_says_so(db):
    result = backtest(rule(metric="status", threshold=5), timezone.now())
    assert result.fired == 0 and result.note == "the metric status keeps no history to backtest against"


def test_no_matching_history_says_so(db):
    assert backtest(rule(cluster="nowhere"), timezone.now()).note == (
        "no stored samples match the rule's cluster, group and topic")
