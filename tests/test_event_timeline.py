"""One trace as a timeline: causal order, steps, duplicates, gaps, where it got stuck, the saga."""
from datetime import UTC, datetime, timedelta

import pytest

from monitor.events.timeline import TraceEvent, build_timeline, causal_order
from monitor.choices import StepKind

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
_pk = iter(range(1, 10_000))


def report(event_id, stage, service, seconds, *, type="OrderPlaced", topic="orders", group="", span="", parent="",
           attributes=None):
    return TraceEvent(pk=next(_pk), event_id=event_id, type=type, service=service, stage=stage,
                      timestamp=T0 + timedelta(seconds=seconds), topic=topic, consumer_group=group,
                      span_id=span, parent_span_id=parent, attributes=attributes)


def steps_of(timeline, kind):
    return [s for s in timeline.steps if s.kind == kind]


def test_consumption_never_comes_before_publication_even_with_skewed_clocks():
    published = report("e1", "published", "orders", 5.0)
    consumed = report("e1", "consumed", "payments", 4.0, group="payments")  # payments' clock is behind
    processed = report("e1", "processed", "payments", 4.5, group="payments")
    ordered = causal_order([processed, consumed, published])
    assert [e.stage for e in ordered] == ["published", "consumed", "processed"]


def test_a_child_span_follows_the_delivery_that_caused_it():
    a, b = "a" * 16, "b" * 16
    reports = [
        report("e1", "published", "orders", 0, span=a),
        report("e1", "consumed", "payments", 1, group="payments", span=a),
        # payments' clock runs early: its publication claims to precede its own consumption
        report("e2", "published", "payments", 0.5, type="PaymentAuthorised", topic="payments", span=b, parent=a),
        report("e1", "processed", "payments", 2, group="payments", span=a),
    ]
    ordered = causal_order(reports)
    assert [(e.event_id, e.stage) for e in ordered] == [
        ("e1", "published"), ("e1", "consumed"), ("e2", "published"), ("e1", "processed")]


def test_a_cycle_of_parents_falls_back_to_time_order():
    a, b = "a" * 16, "b" * 16
    reports = [report("e1", "published", "x", 1, span=a, parent=b), report("e2", "published", "y", 0, span=b, parent=a)]
    assert [e.event_id for e in causal_order(reports)] == ["e2", "e1"]


def test_steps_show_publish_queue_wait_and_processing_per_consumer():
    timeline = build_timeline(causal_order([
        report("e1", "published", "orders", 0),
        report("e1", "consumed", "payments", 2, group="payments"),
        report("e1", "processed", "payments", 2.5, group="payments"),
        report("e1", "consumed", "analytics", 1, group="analytics"),
        report("e1", "processed", "analytics", 1.2, group="analytics"),
    ]))
    waits = [s.row for s in timeline.steps if s.kind == StepKind.QUEUE_WAIT]
    assert waits == ["analytics (analytics)", "payments (payments)"]
    wait = next(s for s in steps_of(timeline, StepKind.QUEUE_WAIT) if s.consumer_group == "payments")
    assert wait.duration_seconds == 2.0
    assert timeline.rows == ["orders", "analytics (analytics)", "payments (payments)"]
    assert timeline.slowest is wait and wait.slowest
    assert timeline.duration_seconds == 2.5
    assert timeline.stuck == ""


def test_retries_fail_then_dead_letter_and_the_trace_says_where_it_stopped():
    timeline = build_timeline(causal_order([
        report("e1", "published", "orders", 0),
        report("e1", "consumed", "payments", 1, group="payments"),
        report("e1", "failed", "payments", 2, group="payments", attributes={"error": "card declined"}),
        report("e1", "consumed", "payments", 3, group="payments"),
        report("e1", "failed", "payments", 4, group="payments"),
        report("e1", "dead_lettered", "payments", 4.1, group="payments"),
    ]))
    failed = steps_of(timeline, StepKind.FAILED)
    assert [(s.start, s.end) for s in failed] == [(T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)),
                                                   (T0 + timedelta(seconds=3), T0 + timedelta(seconds=4))]
    assert failed[0].detail == "card declined"
    assert not any(s.duplicate for s in failed)  # a retry after a failure is not a duplicate
    assert len(steps_of(timeline, StepKind.DEAD_LETTERED)) == 1
    assert timeline.stuck == "dead-lettered by payments (payments)"


def test_a_delivery_after_successful_processing_is_a_duplicate():
    timeline = build_timeline(causal_order([
        report("e1", "published", "orders", 0),
        report("e1", "consumed", "inventory", 1, group="inventory"),
        report("e1", "processed", "inventory", 1.5, group="inventory"),
        report("e1", "consumed", "inventory", 8, group="inventory"),
        report("e1", "processed", "inventory", 8.5, group="inventory"),
    ]))
    processing = steps_of(timeline, StepKind.PROCESS)
    assert [s.duplicate for s in processing] == [False, True]
    assert "delivered again" in processing[1].detail


def test_a_second_publication_is_marked():
    timeline = build_timeline(causal_order([report("e1", "published", "orders", 0),
                                            report("e1", "published", "orders", 1)]))
    assert [s.duplicate for s in steps_of(timeline, StepKind.PUBLISH)] == [False, True]


def test_an_expected_group_that_never_consumed_is_where_the_order_got_stuck():
    timeline = build_timeline(
        causal_order([report("e1", "published", "orders", 0), report("e1", "consumed", "payments", 1, group="payments"),
                      report("e1", "processed", "payments", 2, group="payments")]),
        expected_groups={"orders": {"payments", "shipping"}},
    )
    missing = steps_of(timeline, StepKind.MISSING)
    assert [(s.consumer_group, s.row) for s in missing] == [("shipping", "? (shipping)")]
    assert timeline.stuck == "never consumed by group shipping from orders"
    assert timeline.slowest is not None and timeline.slowest.kind != StepKind.MISSING


def test_a_long_silence_between_steps_is_shown_as_a_gap():
    timeline = build_timeline(causal_order([
        report("e1", "published", "orders", 0),
        report("e1", "consumed", "payments", 0.1, group="payments"),
        report("e1", "processed", "payments", 0.2, group="payments"),
        report("e2", "published", "payments", 10, type="PaymentAuthorised", topic="payments"),
    ]))
    gaps = steps_of(timeline, StepKind.GAP)
    assert len(gaps) == 1
    assert gaps[0].duration_seconds == pytest.approx(9.8)
    assert gaps[0].row == "payments"
    assert timeline.slowest is gaps[0]


def test_a_consumer_without_outcome_is_reported_as_such():
    timeline = build_timeline(causal_order([report("e1", "published", "orders", 0),
                                            report("e1", "consumed", "shipping", 1, group="shipping")]))
    assert len(steps_of(timeline, StepKind.CONSUMED)) == 1
    assert timeline.stuck == "consumed by shipping (shipping), no outcome reported"


def test_a_saga_reads_as_its_steps_and_compensations():
    reports = [
        report("e1", "published", "orders", 0, type="OrderPlaced"),
        report("e1", "processed", "payments", 1, group="payments"),
        report("e2", "published", "payments", 2, type="PaymentAuthorised", topic="payments"),
        report("e2", "processed", "inventory", 3, type="PaymentAuthorised", topic="payments", group="inventory"),
        report("e3", "published", "inventory", 4, type="InventoryOutOfStock", topic="inventory"),
        report("e4", "published", "payments", 5, type="PaymentRefunded", topic="payments"),
        report("e5", "published", "orders", 6, type="OrderClosed", topic="orders", attributes={"compensates": "e1"}),
    ]
    saga = build_timeline(causal_order(reports)).saga
    assert [(s.number, s.type, s.compensation) for s in saga] == [
        (1, "OrderPlaced", False), (2, "PaymentAuthorised", False), (3, "InventoryOutOfStock", False),
        (4, "PaymentRefunded", True), (5, "OrderClosed", True)]
    assert saga[4].compensates == "e1"
    assert [(o.consumer, o.stage) for o in saga[0].outcomes] == [("payments (payments)", "processed")]


def test_a_single_event_is_not_a_saga():
    assert build_timeline([report("e1", "published", "orders", 0)]).saga == []


def test_an_empty_trace_has_no_timeline():
    with pytest.raises(ValueError):
        build_timeline([])


def test_the_stop_carries_its_error_and_the_saga_keeps_an_earlier_failed_attempt():
    dead = build_timeline(causal_order([
        report("e1", "published", "orders", 0),
        report("e1", "consumed", "payments", 1, group="payments"),
        report("e1", "failed", "payments", 2, group="payments", attributes={"error": "card declined"}),
        report("e1", "consumed", "payments", 3, group="payments"),
        report("e1", "dead_lettered", "payments", 4, group="payments"),
    ]))
    assert dead.stuck == "dead-lettered by payments (payments)" and dead.stuck_error == "card declined"
    retried = build_timeline(causal_order([
        report("e1", "published", "orders", 0),
        report("e1", "consumed", "payments", 1, group="payments"),
        report("e1", "failed", "payments", 2, group="payments", attributes={"error": "timeout"}),
        report("e1", "consumed", "payments", 3, group="payments"),
        report("e1", "processed", "payments", 4, group="payments"),
        report("e2", "published", "payments", 5, type="PaymentCaptured"),
    ]))
    [outcome] = retried.saga[0].outcomes
    assert (outcome.stage, outcome.failed_attempts) == ("processed", 1)
    assert retried.stuck == "" and retried.stuck_error == ""

def test_an_outbox_write_comes_before_its_publication_and_its_wait_is_a_step():
    events = [report("e1", "processed", "billing", 9, group="billing"),
              report("e1", "published", "orders", 8),
              report("e1", "outbox", "orders", 2)]
    ordered = causal_order(events)
    assert [e.stage for e in ordered] == ["outbox", "published", "processed"]
    timeline = build_timeline(ordered)
    [wait] = steps_of(timeline, StepKind.OUTBOX)
    assert (wait.row, wait.duration_seconds, wait.detail) == ("orders", 6.0, "waited in the outbox")
    assert timeline.slowest is wait


def test_an_outbox_write_never_relayed_says_so():
    timeline = build_timeline(causal_order([report("e1", "outbox", "orders", 0), report("e2", "published", "x", 5)]))
    [wait] = steps_of(timeline, StepKind.OUTBOX)
    assert wait.detail == "written to the outbox, never published"
