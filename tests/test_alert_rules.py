"""Rule matching and the alert state machine: pure functions, no database."""
from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from monitor.alerts.rules import (
    Action, AlertStatus, Reading, RuleSpec, Scope, Subject, condition_holds, glob_error, glob_matches,
    literal_values, reminder_due, step, validate_rule_fields,
)
from monitor.choices import AlertState

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def rule(**overrides) -> RuleSpec:
    values = {"id": 1, "name": "billing behind", "metric": "lag", "op": ">", "threshold": 1000.0,
              "for_seconds": 120, "keep_firing_seconds": 0}
    return RuleSpec(**{**values, **overrides})


def run(spec: RuleSpec, readings: list[tuple[float, Reading]]) -> list[tuple[float, Action | None, str | None]]:
    """Feed readings at times; return (time, action, state after) per step."""
    status = None
    trace = []
    for seconds, reading in readings:
        outcome = step(spec, status, reading, at(seconds))
        if outcome is None:
            trace.append((seconds, None, None))
            continue
        status = outcome.status
        trace.append((seconds, outcome.action, status.state if status else None))
        if outcome.action in (Action.RESOLVE, Action.DROP_PENDING):
            status = None
    return trace


def test_star_matches_everything_including_an_empty_subject_part():
    assert glob_matches("*", "")
    assert glob_matches("*", "billing")
    assert Scope().matches(Subject("prod"))


def test_globs_and_literals_match_case_sensitively():
    assert glob_matches("billing*", "billing-eu")
    assert not glob_matches("billing*", "Billing-eu")
    assert glob_matches("orders.v[12]", "orders.v2")
    assert not glob_matches("orders", "orders-dlq")


def test_bad_globs_are_explained():
    assert "unclosed" in glob_error("billing[")
    assert "spaces" in glob_error("billing eu")
    assert "non-empty" in glob_error("")
    assert glob_error("billing-[ab]*") is None


def test_literal_values_only_when_no_pattern_is_a_glob():
    assert literal_values(["prod", "staging"]) == {"prod", "staging"}
    assert literal_values(["prod", "prod-*"]) is None


def test_subject_key_round_trips_and_reads_well():
    subject = Subject("prod", "billing", "payments")
    assert subject.key == "prod/billing/payments"
    assert Subject.from_key(subject.key) == subject
    assert Subject.from_key("prod//") == Subject("prod")
    assert subject.describe() == "prod / billing / payments"


def test_topic_glob_matches_a_group_level_subject_through_the_groups_topics():
    scope = Scope("prod", "billing*", "payments*")
    assert scope.matches(Subject("prod", "billing", ""), topics=["payments-v2", "audit"])
    assert not scope.matches(Subject("prod", "billing", ""), topics=["audit"])
    assert not scope.matches(Subject("prod", "orders", ""), topics=["payments"])


@pytest.mark.parametrize("op,value,threshold,expected", [
    (">", 1001, 1000, True), (">", 1000, 1000, False), (">=", 1000, 1000, True), ("<", 5, 10, True),
    ("<=", 10, 10, True), ("==", 6, 6, True), ("==", 5, 6, False),
])
def test_operators_compare_value_to_threshold(op, value, threshold, expected):
    assert condition_holds(value, op, threshold) is expected


def test_missing_or_nan_values_never_hold():
    assert not condition_holds(None, ">", 0)
    assert not condition_holds(math.nan, "<", 10)


def test_condition_must_hold_for_seconds_before_firing():
    trace = run(rule(), [(0, Reading(1500)), (60, Reading(1600)), (119, Reading(1700)), (120, Reading(1800))])
    assert trace == [
        (0, Action.CREATE_PENDING, AlertState.PENDING), (60, Action.KEEP, AlertState.PENDING),
        (119, Action.KEEP, AlertState.PENDING), (120, Action.FIRE, AlertState.FIRING),
    ]


def test_for_seconds_zero_fires_at_once():
    assert run(rule(for_seconds=0), [(0, Reading(1500))]) == [(0, Action.CREATE_FIRING, AlertState.FIRING)]


def test_pending_that_clears_before_for_seconds_is_dropped_not_an_incident():
    trace = run(rule(), [(0, Reading(1500)), (60, Reading(10)), (90, Reading(5))])
    assert [a for _, a, _ in trace] == [Action.CREATE_PENDING, Action.DROP_PENDING, None]


def test_firing_resolves_at_once_without_keep_firing():
    trace = run(rule(for_seconds=0), [(0, Reading(1500)), (30, Reading(10))])
    assert trace[-1] == (30, Action.RESOLVE, AlertState.RESOLVED)


def test_flapping_is_damped_until_the_subject_stays_clear_keep_firing_seconds():
    spec = rule(for_seconds=0, keep_firing_seconds=300)
    trace = run(spec, [
        (0, Reading(1500)), (60, Reading(10)), (120, Reading(1200)),  # flaps back: clearing resets
        (180, Reading(10)), (400, Reading(10)), (480, Reading(10)),
    ])
    assert [a for _, a, _ in trace] == [
        Action.CREATE_FIRING, Action.KEEP, Action.KEEP, Action.KEEP, Action.KEEP, Action.RESOLVE]


def test_clearing_since_is_recorded_and_reset_when_the_condition_returns():
    spec = rule(for_seconds=0, keep_firing_seconds=300)
    firing = AlertStatus(state=AlertState.FIRING, started_at=at(0), fired_at=at(0))
    clearing = step(spec, firing, Reading(10), at(60))
    assert clearing.status.clear_since == at(60)
    back = step(spec, clearing.status, Reading(2000), at(90))
    assert back.status.clear_since is None


def test_no_data_keeps_a_firing_alert_open_and_says_so():
    firing = AlertStatus(state=AlertState.FIRING, started_at=at(0), fired_at=at(0))
    outcome = step(rule(), firing, Reading.no_data("cluster prod is unreachable"), at(60))
    assert outcome.action == Action.KEEP
    assert outcome.status.state == AlertState.FIRING and outcome.status.no_data
    assert outcome.reading.no_data_reason == "cluster prod is unreachable"


def test_data_gone_for_good_resolves_a_firing_alert_with_the_reason():
    firing = AlertStatus(state=AlertState.FIRING, started_at=at(0), fired_at=at(0))
    outcome = step(rule(), firing, Reading.no_data("group billing was deleted", final=True), at(60))
    assert outcome.action == Action.RESOLVE
    assert outcome.resolved_reason == "group billing was deleted"


def test_pending_without_data_is_dropped():
    pending = AlertStatus(state=AlertState.PENDING, started_at=at(0))
    assert step(rule(), pending, Reading.no_data("no lag sample for 5 min"), at(30)).action == Action.DROP_PENDING


def test_no_data_never_opens_an_alert():
    assert step(rule(op="<", threshold=5), None, Reading.no_data("lag unknown"), at(0)) is None


def test_reminders_are_due_every_repeat_seconds_unless_acknowledged():
    spec = rule(repeat_seconds=3600)
    firing = AlertStatus(state=AlertState.FIRING, started_at=at(0), fired_at=at(0), last_notified_at=at(0))
    assert not reminder_due(spec, firing, at(3599))
    assert reminder_due(spec, firing, at(3600))
    acknowledged = AlertStatus(state=AlertState.FIRING, started_at=at(0), fired_at=at(0), last_notified_at=at(0),
                               acknowledged_at=at(10))
    assert not reminder_due(spec, acknowledged, at(7200))
    assert not reminder_due(rule(repeat_seconds=0), firing, at(99999))


def test_validation_names_each_bad_field():
    problems = validate_rule_fields(
        {"cluster": "prod", "group": "billing[", "topic": "*", "metric": "lagg", "op": "=>", "threshold": -5,
         "for_seconds": -1, "severity": "urgent"},
        known_metrics=["lag", "time_lag_seconds"],
    )
    by_field = {p.field: p.message for p in problems}
    assert set(by_field) == {"group", "metric", "op", "threshold", "for_seconds", "severity"}
    assert "unclosed" in by_field["group"]
    assert "lagg" in by_field["metric"] and "time_lag_seconds" in by_field["metric"]
    assert "negative" in by_field["threshold"]


def test_valid_rule_has_no_problems():
    assert validate_rule_fields({"cluster": "*", "group": "billing*", "topic": "*", "metric": "lag", "op": ">",
                                 "threshold": 1000, "for_seconds": 120, "severity": "critical"}, ["lag"]) == []
