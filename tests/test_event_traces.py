"""monitor/events/traces.py against real PostgreSQL: a trace's events, trace search,
recent traces and their summaries, expected groups."""
import pytest

from monitor.events import traces as trace_reads
from monitor.models import ExpectedSubscription
from tests.flow_data import SINCE, T0, UNTIL, new_trace_id, order_saga, save

pytestmark = pytest.mark.django_db


def test_trace_events_come_in_time_order_and_long_traces_are_cut():
    trace_id = new_trace_id()
    save(*reversed(order_saga(trace_id)))
    events, truncated = trace_reads.trace_events(trace_id)
    assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
    assert not truncated
    events, truncated = trace_reads.trace_events(trace_id, limit=3)
    assert len(events) == 3 and truncated


def test_search_finds_a_trace_by_trace_id_event_id_or_key():
    trace_id, other = new_trace_id(), new_trace_id()
    save(*order_saga(trace_id, order="order-77"), *order_saga(other, start=30, order="order-77"))
    assert trace_reads.search_traces(trace_id).trace_id == trace_id
    assert trace_reads.search_traces(trace_id.upper()).trace_id == trace_id
    by_event = trace_reads.search_traces("ev-placed-" + trace_id[:8])
    assert (by_event.matched, by_event.trace_id) == ("event", trace_id)
    by_key = trace_reads.search_traces("order-77")
    assert by_key.matched == "key" and by_key.trace_id is None
    assert [s.trace_id for s in by_key.traces] == [other, trace_id]  # newest first
    assert by_key.traces[1].first_type == "OrderPlaced"
    nothing = trace_reads.search_traces("no-such-thing")
    assert (nothing.matched, nothing.traces) == ("", [])


def test_recent_traces_can_be_narrowed_to_failures_on_one_edge():
    ok, failing = new_trace_id(), new_trace_id()
    save(*order_saga(ok), *order_saga(failing, start=5, fail_payment=True))
    everything = trace_reads.recent_trace_ids(SINCE, UNTIL, trace_reads.TraceFilters())
    assert everything == [failing, ok]
    failed = trace_reads.TraceFilters(service="payments", topic="orders.events", group="payments", failed_only=True)
    assert trace_reads.recent_trace_ids(SINCE, UNTIL, failed) == [failing]
    summary = trace_reads.summarise_traces([failing])[0]
    assert (summary.failed, summary.dead_lettered, summary.services) == (1, 1, 2)


def test_expected_groups_come_from_enabled_subscriptions():
    ExpectedSubscription.objects.create(topic="orders.events", consumer_group="payments", first_seen_at=T0)
    ExpectedSubscription.objects.create(topic="orders.events", consumer_group="old", enabled=False, first_seen_at=T0)
    assert trace_reads.expected_groups(["orders.events"]) == {"orders.events": {"payments"}}
