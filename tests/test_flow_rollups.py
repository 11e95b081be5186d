"""monitor/flow/rollups.py against real PostgreSQL: per-minute (and hourly) edge rollups
kept current by a cursor-based updater, read together with raw events at the edges of a
range, and always equal to the raw computation."""
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from monitor.flow import queries as flow_queries
from monitor.flow import rollups
from monitor.models import FlowEdgeRollup
from monitor.pathways import histogram
from tests.flow_data import T0, event, save

pytestmark = pytest.mark.django_db

LATER = T0 + timedelta(days=3)  # a run this late has settled everything below


def traffic(rng: random.Random, messages: int, span_seconds: float, start: datetime = T0) -> list:
    """Publications on two topics, each received (consumed, then processed) by one or two
    groups after a latency from milliseconds to minutes; some failures and dead letters,
    a receipt reported twice (a redelivery), reports with no topic."""
    reports = []
    for n in range(messages):
        at = start + timedelta(seconds=rng.uniform(0, span_seconds))
        topic = "orders.events" if n % 3 else "payments.events"
        event_id = f"m-{n}"
        reports.append(event(event_id, "published", "orders" if n % 3 else "payments", at, topic=topic))
        for group in ("billing", "analytics")[: 1 + n % 2]:
            received = at + timedelta(seconds=rng.choice((0.0004, 0.003, 0.2, 1.7, 59.9997, 130.0)) * rng.random())
            reports.append(event(event_id, "consumed", group, received, topic=topic, group=group))
            reports.append(event(event_id, "processed", group, received + timedelta(milliseconds=40), topic=topic,
                                 group=group))
            if n % 11 == 0:
                reports.append(event(event_id, "consumed", group, received + timedelta(seconds=90), topic=topic,
                                     group=group))
            if n % 7 == 0:
                reports.append(event(event_id, "failed", group, received + timedelta(seconds=1), topic=topic,
                                     group=group))
                reports.append(event(event_id, "dead_lettered", group, received + timedelta(seconds=2),
                                     topic=topic, group=group))
        if n % 13 == 0:
            reports.append(event(f"u-{n}", "published", "legacy", at))
    return reports


def as_set(rows):
    return sorted((r.service, r.topic, r.consumer_group, r.published, r.consumed, r.processed, r.failed,
                   r.dead_lettered, sorted(r.latency_buckets.items())) for r in rows)


def stored_rows():
    return sorted(FlowEdgeRollup.objects.values_list(
        "period_seconds", "period_start", "service", "topic", "consumer_group", "published", "consumed",
        "processed", "failed", "dead_lettered", "latency_buckets"), key=repr)


def test_a_rollup_backed_read_equals_the_raw_computation_for_random_ranges():
    rng = random.Random(7)
    save(*traffic(rng, 400, span_seconds=3 * 3600), *traffic(rng, 60, span_seconds=3 * 86_400, start=T0 - timedelta(days=1)))
    rollups.update(LATER)
    rolled_until = rollups.rolled_up_until()
    ranges = [
        (T0, T0 + timedelta(hours=3)),  # whole hours
        (T0 - timedelta(minutes=1), T0 + timedelta(hours=4)),  # beyond the data at both ends
        (T0 + timedelta(seconds=17.25), T0 + timedelta(seconds=41)),  # inside one minute
        (T0 + timedelta(minutes=59, seconds=30), T0 + timedelta(hours=2, minutes=0, seconds=30)),
        (T0 - timedelta(days=1, seconds=-17), T0 + timedelta(days=2)),  # whole days
    ]
    for _ in range(30):
        since = T0 + timedelta(seconds=rng.uniform(-600, 3 * 3600))
        ranges.append((since, since + timedelta(seconds=rng.choice((30, 600, 3600, 9000, 200_000)) * rng.random())))
    used_hours = used_days = 0
    for since, until in ranges:
        plan = rollups.read_plan(since, until, rolled_until)
        used_hours += bool(plan.windows(rollups.HOUR))
        used_days += bool(plan.windows(rollups.DAY))
        assert as_set(rollups.edge_rows(since, until, rolled_until)) == as_set(rollups.edge_rows(since, until, None))
    assert used_hours >= 3 and used_days >= 1  # long ranges read hour and day rows, not only minutes


def test_flow_data_from_the_rollup_equals_flow_data_from_raw_events():
    save(*traffic(random.Random(3), 200, span_seconds=9000))
    rollups.update(LATER)
    since, until = T0 + timedelta(seconds=95.5), T0 + timedelta(seconds=8000.1)
    rolled = flow_queries.flow_data(since, until, at_present=False)
    raw = flow_queries.flow_data(since, until, at_present=False, rollup=False)
    assert rollups.read_plan(since, until, rollups.rolled_up_until()).windows(rollups.HOUR)
    assert sorted(rolled.publishes, key=repr) == sorted(raw.publishes, key=repr)
    assert sorted(rolled.consumes, key=repr) == sorted(raw.consumes, key=repr)
    assert rolled.p95 == raw.p95 and rolled.p95


def test_latency_is_counted_once_per_event_and_consumer_at_its_first_receipt_in_histogram_buckets():
    latencies = [0.0004, 0.001, 0.05, 0.9997, 1.0, 59.9997, 3600.0]
    for n, seconds in enumerate(latencies):
        at = T0 + timedelta(seconds=n)
        save(event(f"e{n}", "published", "orders", at, topic="orders.events"),
             event(f"e{n}", "consumed", "billing", at + timedelta(seconds=seconds), topic="orders.events",
                   group="billing"),
             event(f"e{n}", "processed", "billing", at + timedelta(seconds=seconds + 0.5), topic="orders.events",
                   group="billing"))
    rows = rollups.edge_rows(T0, T0 + timedelta(hours=2), None)
    [billing] = [r for r in rows if r.consumer_group == "billing"]
    assert billing.latency_buckets == dict(Counter(histogram.bucket_of(s) for s in latencies))
    assert (billing.consumed, billing.processed) == (7, 7)


def test_incremental_runs_with_late_and_out_of_order_reports_equal_a_rebuild():
    save(event("a", "consumed", "billing", 130, topic="orders.events", group="billing"))  # before its publication
    rollups.update(LATER)
    save(event("a", "published", "orders", 10, topic="orders.events"),  # the publication, reported late
         event("b", "published", "orders", 20, topic="orders.events"),
         event("b", "consumed", "billing", 200, topic="orders.events", group="billing"))
    rollups.update(LATER)
    save(event("b", "consumed", "billing", 25, topic="orders.events", group="billing"))  # an earlier receipt, late
    result = rollups.update(LATER)
    assert result.events == 1
    incremental = stored_rows()
    rollups.update(LATER)  # a run repeated changes nothing
    assert stored_rows() == incremental
    rollups.rebuild(LATER)
    assert stored_rows() == incremental
    [minute_two] = FlowEdgeRollup.objects.filter(period_seconds=rollups.MINUTE, consumer_group="billing",
                                                 period_start=T0 + timedelta(minutes=2))
    assert minute_two.latency_buckets == {str(histogram.bucket_of(120.0)): 1}  # a's receipt; b's moved to minute 0


def test_reports_after_the_last_run_are_read_from_raw_events():
    save(event("a", "published", "orders", 0, topic="orders.events"))
    rollups.update(T0 + timedelta(minutes=10))
    assert rollups.rolled_up_until() == T0 + timedelta(minutes=9)
    save(event("b", "published", "orders", 60 * 9 + 5, topic="orders.events"),  # after the watermark
         event("c", "published", "orders", 60 * 3, topic="orders.events"))  # > settle time late: next run
    [row] = rollups.edge_rows(T0, T0 + timedelta(minutes=20), rollups.rolled_up_until())
    assert row.published == 2
    rollups.update(T0 + timedelta(minutes=11))
    [row] = rollups.edge_rows(T0, T0 + timedelta(minutes=20), rollups.rolled_up_until())
    assert row.published == 3


def test_pruning_drops_the_rollup_of_pruned_events_and_sums_the_cutoff_hour_and_day_again():
    save(*(event(f"e{n}", "published", "orders", n * 600, topic="orders.events") for n in range(12)))
    rollups.update(LATER)
    cutoff = T0 + timedelta(minutes=35)
    rollups.prune(cutoff)
    starts = FlowEdgeRollup.objects.filter(period_seconds=rollups.MINUTE).values_list("period_start", flat=True)
    assert min(starts) == T0 + timedelta(minutes=40)
    hours = dict(FlowEdgeRollup.objects.filter(period_seconds=rollups.HOUR).values_list("period_start", "published"))
    assert hours == {T0: 2, T0 + timedelta(hours=1): 6}
    days = dict(FlowEdgeRollup.objects.filter(period_seconds=rollups.DAY).values_list("period_start", "published"))
    assert days == {rollups.floor_to(T0, rollups.DAY): 8}


@pytest.mark.parametrize(("since", "until", "raw", "minutes", "hours", "days"), [
    (T0, T0 + timedelta(seconds=30), 1, 0, 0, 0),
    (T0 + timedelta(seconds=1), T0 + timedelta(minutes=5, seconds=1), 2, 1, 0, 0),
    (T0 - timedelta(seconds=1), T0 + timedelta(hours=2, minutes=3), 1, 1, 1, 0),
    (T0 + timedelta(seconds=1), T0 + timedelta(days=7, minutes=3, seconds=1), 2, 2, 2, 1),
])
def test_a_range_reads_whole_days_hours_and_minutes_from_the_rollup_and_its_edges_raw(since, until, raw, minutes,
                                                                                        hours, days):
    plan = rollups.read_plan(since, until, T0 + timedelta(days=10))
    assert (len(plan.raw), len(plan.windows(rollups.MINUTE)), len(plan.windows(rollups.HOUR)),
            len(plan.windows(rollups.DAY))) == (raw, minutes, hours, days)
    pieces = sorted(plan.raw + tuple((start, end) for _, start, end in plan.rolled))
    assert pieces[0][0] == since and pieces[-1][1] == until
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))  # no gap, no overlap


def test_without_a_rollup_everything_is_read_from_raw_events():
    plan = rollups.read_plan(T0, T0 + timedelta(hours=5), None)
    assert plan == rollups.ReadPlan(((T0, T0 + timedelta(hours=5)),), ())
    assert rollups.floor_to(datetime(2024, 5, 1, 12, 7, 59, tzinfo=UTC), 60) == datetime(2024, 5, 1, 12, 7, tzinfo=UTC)


def test_the_periodic_tasks_keep_the_rollup_and_prune_it_with_the_events(settings):
    from django.utils import timezone

    from monitor.celery import app
    from monitor.tasks import prune_events, update_flow_rollups

    settings.MONITOR_EVENT_RETENTION_DAYS = 1
    now = timezone.now()
    save(event("old", "published", "orders", now - timedelta(days=3), topic="orders.events"),
         event("new", "published", "orders", now - timedelta(hours=2), topic="orders.events"))
    app.conf.task_always_eager = True
    try:
        assert update_flow_rollups.delay().get() == 2
        assert FlowEdgeRollup.objects.filter(period_seconds=rollups.MINUTE).count() == 2
        prune_events.delay()
    finally:
        app.conf.task_always_eager = False
    [kept] = FlowEdgeRollup.objects.filter(period_seconds=rollups.MINUTE).values_list("period_start", flat=True)
    assert kept == rollups.floor_to(now - timedelta(hours=2), rollups.MINUTE)


def test_a_run_while_another_is_still_going_leaves_the_work_to_it():
    import psycopg
    from django.db import connection

    save(event("a", "published", "orders", 0, topic="orders.events"))
    settings = connection.settings_dict
    with psycopg.connect(host=settings["HOST"], port=settings["PORT"], user=settings["USER"],
                         dbname=settings["NAME"], autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [rollups._LOCK_KEY])  # the run still going
        assert rollups.update(LATER) == rollups.UpdateResult(events=0, minutes=0)
        other.execute("SELECT pg_advisory_unlock(%s)", [rollups._LOCK_KEY])  # it finishes
    assert rollups.update(LATER).events == 1
