"""The read side against real PostgreSQL (and, in a child process, the demo's SQLite):
edges, latency, lag, examples, traces, pages, the warm-up's time budget."""
import json
import logging
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from monitor.flow import queries as flow_queries
from monitor.flow import stats as flow_stats
from monitor import readcache
from monitor.events import traces as trace_reads
from monitor.flow.graph import Tolerances
from monitor.timerange import CUSTOM, TimeRange, parse_time_range
from monitor.models import ExpectedSubscription, Finding, Topic, TopicLagSample
from tests import services
from tests.flow_data import T0, cluster, event, group_with_lag, new_trace_id, order_saga, save
from tests.flow_sqlite import page_numbers

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent

SINCE, UNTIL = T0 - timedelta(minutes=5), T0 + timedelta(minutes=5)
WINDOW = TimeRange(SINCE, UNTIL, CUSTOM)


def aggregates_by_key(since=SINCE, until=UNTIL):
    publishes, consumes = flow_queries.edge_aggregates(since, until)
    return ({(p.service, p.topic): p for p in publishes},
            {(c.topic, c.service, c.consumer_group): c for c in consumes})


def test_edges_count_each_stage_per_producer_and_consumer_group():
    for n in range(3):
        save(*order_saga(new_trace_id(), start=n))
    save(*order_saga(new_trace_id(), start=10, fail_payment=True))
    publishes, consumes = aggregates_by_key()
    assert publishes[("orders", "orders.events")].published == 4
    assert publishes[("payments", "payments.events")].published == 3
    payments = consumes[("orders.events", "payments", "payments")]
    assert (payments.consumed, payments.processed, payments.failed, payments.dead_lettered) == (4, 3, 1, 1)
    assert consumes[("payments.events", "shipping", "shipping")].processed == 3


def test_events_outside_the_range_are_not_counted():
    save(event("e1", "published", "orders", -3600, topic="orders.events"),
         event("e2", "published", "orders", 0, topic="orders.events"))
    publishes, _ = aggregates_by_key()
    assert publishes[("orders", "orders.events")].published == 1


def test_a_failed_publication_counts_on_the_producer_edge():
    save(event("e1", "published", "orders", 0, topic="orders.events"),
         event("e2", "failed", "orders", 1, topic="orders.events"))
    publishes, consumes = aggregates_by_key()
    assert publishes[("orders", "orders.events")].failed == 1
    assert consumes == {}


def test_p95_latency_is_consume_minus_publish_of_the_same_event():
    reports = []
    for n in range(1, 101):  # latencies 1 s .. 100 s
        reports.append(event(f"e{n}", "published", "orders", 0, topic="orders.events"))
        reports.append(event(f"e{n}", "consumed", "payments", n, topic="orders.events", group="payments"))
        reports.append(event(f"e{n}", "processed", "payments", n + 0.5, topic="orders.events", group="payments"))
    save(*reports)
    database = flow_queries.p95_latencies(SINCE, UNTIL)
    portable = flow_queries.p95_latencies(SINCE, UNTIL, portable=True)
    assert database[("orders.events", "payments", "payments")] == pytest.approx(95.05)
    assert portable == pytest.approx(database)
    quiet_topic = flow_queries.p95_latencies(SINCE, UNTIL, receipts_by_topic={"orders.events": 200})
    assert quiet_topic == pytest.approx(database)  # few receipts: measured exactly


def test_p95_of_a_busy_topic_is_measured_on_a_stable_sample():
    reports = []
    for n in range(2000):  # latencies cycle through 0.1 s .. 10 s
        reports.append(event(f"e{n}", "published", "orders", 0, topic="orders.events"))
        reports.append(event(f"e{n}", "consumed", "payments", 0.1 * (1 + n % 100), topic="orders.events",
                             group="payments"))
    save(*reports)
    exact = flow_queries.p95_latencies(SINCE, UNTIL)[("orders.events", "payments", "payments")]
    assert flow_queries.sample_keep({"orders.events": 2000}, target=500) == {"orders.events": 256}
    sampled = flow_queries.p95_latencies(SINCE, UNTIL, receipts_by_topic={"orders.events": 8000})
    assert sampled[("orders.events", "payments", "payments")] == pytest.approx(exact, rel=0.05)
    assert flow_queries.p95_latencies(SINCE, UNTIL, receipts_by_topic={}) == {}


def test_p95_latency_counts_publications_made_before_the_range():
    save(event("e1", "published", "orders", -1800, topic="orders.events"),
         event("e1", "consumed", "payments", 0, topic="orders.events", group="payments"))
    assert flow_queries.p95_latencies(SINCE, UNTIL) == {("orders.events", "payments", "payments"): 1800.0}
    assert flow_queries.p95_latencies(SINCE, UNTIL, service="shipping") == {}


def test_live_lag_is_the_latest_poll_summed_over_clusters_with_the_same_group():
    first, second = cluster("prod-a"), cluster("prod-b")
    group = group_with_lag(first, "payments", {"orders.events": 40}, T0)
    TopicLagSample.objects.create(group=group, topic="orders.events", polled_at=T0 - timedelta(minutes=1), lag=999)
    group_with_lag(second, "payments", {"orders.events": 2}, T0, status="stalled")
    lags = flow_queries.group_lags(["payments"], ["orders.events"], SINCE, UNTIL, at_present=True)
    assert lags[("payments", "orders.events")].lag == 42
    assert lags[("payments", "orders.events")].status == "stalled"
    assert lags[("payments", "orders.events")].clusters == ("prod-a", "prod-b")


def test_live_lag_falls_back_to_the_total_when_the_poller_has_no_topic_sample():
    group = group_with_lag(cluster("prod"), "shipping", {}, T0, total_lag=7)
    group.topics = ["payments.events"]
    group.save()
    lags = flow_queries.group_lags(["shipping"], ["payments.events"], SINCE, UNTIL, at_present=True)
    assert lags[("shipping", "payments.events")].lag == 7


def test_lag_of_a_past_range_is_the_highest_seen_in_it():
    group = group_with_lag(cluster("prod"), "payments", {"orders.events": 5}, T0)
    TopicLagSample.objects.create(group=group, topic="orders.events", polled_at=T0 - timedelta(minutes=2), lag=300)
    TopicLagSample.objects.create(group=group, topic="orders.events", polled_at=T0 - timedelta(hours=2), lag=9000)
    lags = flow_queries.group_lags(["payments"], ["orders.events"], SINCE, UNTIL, at_present=False)
    assert lags[("payments", "orders.events")].lag == 300


def test_failed_examples_are_the_latest_failed_traces_per_edge():
    traces = [new_trace_id() for _ in range(5)]
    for n, trace_id in enumerate(traces):
        save(*order_saga(trace_id, start=n, fail_payment=True))
    examples = flow_queries.failed_examples(SINCE, UNTIL)
    assert examples[("payments", "orders.events", "payments")] == [traces[4], traces[3], traces[2]]


def test_the_flow_graph_is_built_in_a_fixed_number_of_queries(django_assert_max_num_queries):
    for n in range(30):
        save(*order_saga(new_trace_id(), start=n, fail_payment=n % 10 == 0))
    group_with_lag(cluster("prod"), "payments", {"orders.events": 12}, T0)
    with django_assert_max_num_queries(9):  # whatever the number of events
        graph = flow_queries.flow_graph(TimeRange(SINCE, UNTIL, "10m"), Tolerances())
    consume = next(e for e in graph.edges if e.consumer_group == "payments")
    assert (consume.events, consume.failed, consume.lag) == (30, 6, 12)
    assert consume.p95_latency_seconds == pytest.approx(1.0)
    assert len(consume.examples) == 3


def test_a_fixed_window_is_cached():
    save(event("e1", "published", "orders", 0, topic="orders.events"))
    first = flow_queries.flow_graph(WINDOW, Tolerances())
    save(event("e2", "published", "orders", 1, topic="orders.events"))
    again = flow_queries.flow_graph(WINDOW, Tolerances())
    assert first.edges[0].events == again.edges[0].events == 1
    assert (again.since, again.until) == (SINCE, UNTIL)
    cache.clear()
    assert flow_queries.flow_graph(WINDOW, Tolerances()).edges[0].events == 2


def test_a_live_range_reuses_numbers_only_while_they_are_fresh_enough():
    save(event("e1", "published", "orders", 0, topic="orders.events"))
    hour = parse_time_range({"range": "1h"}, T0 + timedelta(minutes=1))
    assert flow_queries.flow_graph(hour, Tolerances()).edges[0].events == 1
    save(event("e2", "published", "orders", 2, topic="orders.events"))
    moment_later = parse_time_range({"range": "1h"}, T0 + timedelta(minutes=1, seconds=4))
    cached = flow_queries.flow_graph(moment_later, Tolerances())
    assert cached.edges[0].events == 1 and cached.until == hour.until  # 4 s old: fine for an hour
    later = parse_time_range({"range": "1h"}, T0 + timedelta(minutes=1, seconds=6))
    assert flow_queries.flow_graph(later, Tolerances()).edges[0].events == 2


def test_the_periodic_refresh_keeps_long_ranges_warm(django_assert_num_queries):
    save(event("e1", "published", "orders", -3600 * 30, topic="orders.events"))
    spent = flow_queries.refresh_flow_cache(["24h", "7d"], T0)
    assert set(spent) == {"24h", "7d"}
    week = parse_time_range({"range": "7d"}, T0 + timedelta(seconds=30))
    with django_assert_num_queries(0):
        graph = flow_queries.flow_graph(week, Tolerances())
    assert graph.edges[0].events == 1


def test_the_beat_task_warms_the_week_for_the_flow_page(django_assert_num_queries):
    from monitor.tasks import warm_flow_cache

    save(event("e1", "published", "orders", timezone.now() - timedelta(days=3), topic="orders.events"))
    assert set(warm_flow_cache()) == {"24h", "7d"}
    with django_assert_num_queries(0):
        graph = flow_queries.flow_graph(parse_time_range({"range": "7d"}, timezone.now()), Tolerances())
    assert graph.edges[0].events == 1


def test_service_and_topic_numbers_are_cached_per_range(django_assert_num_queries):
    save(*order_saga(new_trace_id()))
    service = flow_stats.cached_service_stats("payments", WINDOW)
    topic = flow_stats.cached_topic_stats("orders.events", WINDOW)
    with django_assert_num_queries(0):
        assert flow_stats.cached_service_stats("payments", WINDOW).consumes == service.consumes
        assert flow_stats.cached_topic_stats("orders.events", WINDOW).producers == topic.producers
    assert flow_stats.cached_service_stats("payments with spaces/and slashes", WINDOW).known is False


def test_without_redis_the_graph_is_computed_and_the_outage_reported():
    closed_port = services.free_port()  # nothing listens there: a Redis that is down
    down = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                        "LOCATION": f"redis://127.0.0.1:{closed_port}/0",
                        "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2}}}
    save(event("e1", "published", "orders", 0, topic="orders.events"))
    outcome = readcache.CacheOutcome()
    with override_settings(CACHES=down):
        graph = flow_queries.flow_graph(WINDOW, Tolerances(), outcome)
    assert graph.edges[0].events == 1
    assert not outcome.available


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


def test_service_stats_cover_what_it_publishes_consumes_and_its_groups():
    for n in range(4):
        save(*order_saga(new_trace_id(), start=n, fail_payment=n == 0))
    group_with_lag(cluster("prod"), "payments", {"orders.events": 3}, T0)
    Finding.objects.create(kind="failure_rate", fingerprint="f1", service="payments", summary="payments fails",
                           first_seen_at=T0, last_seen_at=T0, examples=[])
    stats = flow_stats.service_stats("payments", SINCE, UNTIL, at_present=True)
    assert stats.known
    assert [(r["topic"], r["type"], r["events"]) for r in stats.publishes] == [
        ("payments.events", "PaymentAuthorised", 3)]
    consume = stats.consumes[0]
    assert (consume["topic"], consume["consumer_group"], consume["deliveries"]) == ("orders.events", "payments", 4)
    assert consume["failed_share"] == pytest.approx(0.5)  # one failure and one dead-letter out of 4
    assert [(g.cluster, g.name) for g in stats.groups] == [("prod", "payments")]
    assert stats.lags[("payments", "orders.events")].lag == 3
    assert [f.summary for f in stats.findings] == ["payments fails"]
    assert {e.stage for e in stats.recent_failures} == {"failed", "dead_lettered"}
    assert sum(n for _, n in stats.series["published"]) == 3
    assert not flow_stats.service_stats("nobody", SINCE, UNTIL, True).known


def test_topic_stats_show_types_versions_partition_skew_and_hot_keys():
    reports = []
    for n in range(40):
        partition = 2 if n < 28 else n % 4
        reports.append(event(f"e{n}", "published", "orders", n, topic="orders.events", partition=partition,
                             key="order-hot" if n < 20 else f"order-{n}", schema_version=1 if n < 30 else 2))
    reports.append(event("e0", "consumed", "payments", 50, topic="orders.events", group="payments"))
    save(*reports)
    Topic.objects.create(cluster=cluster("prod"), name="orders.events", first_seen_at=T0, last_seen_at=T0)
    stats = flow_stats.topic_stats("orders.events", SINCE, UNTIL, at_present=True)
    assert [(r["service"], r["events"]) for r in stats.producers] == [("orders", 40)]
    assert [(r["service"], r["consumer_group"], r["deliveries"]) for r in stats.consumers] == [
        ("payments", "payments", 1)]
    assert [(t["type"], t["schema_version"], t["events"]) for t in stats.types] == [
        ("OrderPlaced", 1, 30), ("OrderPlaced", 2, 10), ("OrderPlaced", None, 1)]
    assert stats.skew.hot_partition == 2
    assert stats.keys[0].key == "order-hot" and stats.keys[0].hot
    assert stats.lag_pages == [("prod", "orders.events")]


def schema_reports(topic: str = "orders.events") -> list:
    """OrderPlaced published as v1 and v2; billing reports handling only v1, ledger both.
    OrderCancelled published as v1 and handled as v1 by billing."""
    return [
        event("p1", "published", "orders", 0, topic=topic, schema_version=1),
        event("p2", "published", "orders", 1, topic=topic, schema_version=2),
        event("p3", "published", "orders", 2, topic=topic, schema_version=2),
        event("p1", "consumed", "billing", 3, topic=topic, group="billing", schema_version=1),
        event("p2", "processed", "billing", 4, topic=topic, group="billing", schema_version=1),
        event("p1", "processed", "ledger", 3, topic=topic, group="ledger", schema_version=1),
        event("p2", "consumed", "ledger", 4, topic=topic, group="ledger", schema_version=2),
        event("c1", "published", "orders", 5, type="OrderCancelled", topic=topic, schema_version=1),
        event("c1", "processed", "billing", 6, type="OrderCancelled", topic=topic, group="billing",
              schema_version=1),
    ]


def matrix(stats) -> dict:
    return {table.event_type: {(row.producer, row.version): dict(zip([c.name for c in table.consumers], row.handled))
                               for row in table.rows} for table in stats.schema}


def test_a_version_published_that_a_group_never_reported_handling_is_schema_drift():
    save(*schema_reports())
    stats = flow_stats.topic_stats("orders.events", SINCE, UNTIL, at_present=True)
    assert matrix(stats) == {
        "OrderCancelled": {("orders", 1): {"billing": True}},
        "OrderPlaced": {("orders", 1): {"billing": True, "ledger": True},
                        ("orders", 2): {"billing": False, "ledger": True}},
    }
    by_type = {table.event_type: table for table in stats.schema}
    assert by_type["OrderPlaced"].drift and not by_type["OrderCancelled"].drift
    assert [(row.version, row.events, row.drift) for row in by_type["OrderPlaced"].rows] == [
        (1, 1, False), (2, 2, True)]
    assert [(c.name, c.versions) for c in by_type["OrderPlaced"].consumers] == [("billing", (1,)), ("ledger", (1, 2))]


def test_schema_handling_counts_only_receipts_in_the_range():
    save(*schema_reports(),
         # Handling v2 after the range is not seen in it.
         event("p3", "processed", "billing", 600, topic="orders.events", group="billing", schema_version=2),
         event("p4", "published", "orders", -600, topic="orders.events", schema_version=3))
    stats = flow_stats.topic_stats("orders.events", SINCE, UNTIL, at_present=True)
    assert matrix(stats)["OrderPlaced"][("orders", 2)] == {"billing": False, "ledger": True}
    assert ("orders", 3) not in matrix(stats)["OrderPlaced"]
    later = flow_stats.topic_stats("orders.events", SINCE, T0 + timedelta(minutes=15), at_present=True)
    assert matrix(later)["OrderPlaced"][("orders", 2)] == {"billing": True, "ledger": True}


def test_a_group_that_failed_on_a_version_has_reported_it_as_the_drift_detector_says():
    save(*schema_reports(),
         event("p3", "failed", "billing", 7, topic="orders.events", group="billing", schema_version=2))
    stats = flow_stats.topic_stats("orders.events", SINCE, UNTIL, at_present=True)
    assert matrix(stats)["OrderPlaced"][("orders", 2)] == {"billing": True, "ledger": True}


def test_the_schema_matrix_costs_no_query_per_event_type():
    save(*schema_reports())
    with CaptureQueriesContext(connection) as few_types:
        flow_stats.topic_stats("orders.events", SINCE, UNTIL, at_present=True)
    save(*[event(f"x{n}-{v}", stage, "orders" if stage == "published" else "billing", n, type=f"Type{n}",
                 topic="orders.events", group="" if stage == "published" else "billing", schema_version=v)
           for n in range(10) for v in (1, 2) for stage in ("published", "consumed")])
    with CaptureQueriesContext(connection) as many_types:
        stats = flow_stats.topic_stats("orders.events", SINCE, UNTIL, at_present=True)
    assert len(stats.schema) == 12
    assert len(many_types) == len(few_types)


def test_schema_tables_use_the_service_when_a_receipt_names_no_group_and_ignore_unversioned_reports():
    rows = [
        {"stage": "published", "type": "T", "service": "p", "consumer_group": "", "schema_version": 2, "events": 4},
        {"stage": "published", "type": "T", "service": "p", "consumer_group": "", "schema_version": 2, "events": 1},
        {"stage": "published", "type": "U", "service": "p", "consumer_group": "", "schema_version": None,
         "events": 9},
        {"stage": "consumed", "type": "T", "service": "worker", "consumer_group": "", "schema_version": 2,
         "events": 1},
        {"stage": "processed", "type": "T", "service": "other", "consumer_group": "g", "schema_version": None,
         "events": 1},
    ]
    [table] = flow_stats.schema_tables(rows)
    assert table.event_type == "T" and [c.name for c in table.consumers] == ["worker"]
    assert [(row.producer, row.version, row.events, row.handled) for row in table.rows] == [("p", 2, 5, (True,))]
    assert not table.drift


# --------------------------------------------------------------------------- the same numbers on SQLite

def varied_reports(sagas: int) -> list[dict]:
    """Traffic for both databases (kwargs of ``event``): latencies at awkward fractions of
    a second (0.9997 s, microseconds), failures and dead letters, a second topic, keys,
    partitions and two schema versions; one publication before the range, one receipt
    without a publication and one reported before its publication (clock skew)."""
    reports = [
        dict(event_id="early", stage="published", service="orders", at=-7200.25, topic="orders.events"),
        dict(event_id="early", stage="consumed", service="payments", at=1.5, topic="orders.events", group="payments"),
        dict(event_id="orphan", stage="consumed", service="payments", at=2, topic="orders.events", group="payments"),
        dict(event_id="skewed", stage="published", service="orders", at=3.25, topic="orders.events"),
        dict(event_id="skewed", stage="consumed", service="analytics", at=3.0, topic="orders.events",
             group="analytics"),
    ]
    for n in range(sagas):
        start, placed, paid = n * 0.7 + (n % 7) * 0.000_1, f"placed-{n}", f"paid-{n}"
        reports.append(dict(event_id=placed, stage="published", service="orders", at=start, topic="orders.events",
                            partition=n % 3 if n % 4 else 0, key=f"order-{n % 9 if n % 2 else 0}",
                            schema_version=1 + n % 2))
        for group, lag in (("payments", 0.9997 + (n % 13) * 0.31), ("analytics", 0.000_003 * n)):
            for stage, after in (("consumed", 0.0), ("processed", 0.05)):
                reports.append(dict(event_id=placed, stage=stage, service=group, at=start + lag + after,
                                    topic="orders.events", group=group, partition=n % 3))
        if n % 5 == 0:
            reports.append(dict(event_id=placed, stage="failed", service="payments", at=start + 2,
                                topic="orders.events", group="payments"))
            reports.append(dict(event_id=placed, stage="dead_lettered", service="payments", at=start + 2.1,
                                topic="orders.events", group="payments"))
            continue
        reports.append(dict(event_id=paid, stage="published", service="payments", at=start + 2,
                            type="PaymentAuthorised", topic="payments.events", key=f"order-{n}"))
        reports.append(dict(event_id=paid, stage="consumed", service="shipping", at=start + 2 + (n % 17) * 0.013,
                            type="PaymentAuthorised", topic="payments.events", group="shipping"))
    return reports


def on_sqlite(tmp_path: Path, reports: list[dict], since: float, until: float, ask: list[str]) -> dict:
    """Runs :mod:`tests.flow_sqlite` on a fresh SQLite file with these reports."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("REDIS_URL", "MONITOR_TEST_DB_NAME", "DJANGO_SETTINGS_MODULE")}
    environment.update(DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}", DEBUG="true")
    child = subprocess.run(
        [sys.executable, "-m", "tests.flow_sqlite"], input=json.dumps({"events": reports, "since": since,
                                                                      "until": until, "ask": ask}),
        capture_output=True, text=True, cwd=ROOT, env=environment, timeout=300,
    )
    assert child.returncode == 0, child.stderr
    results = json.loads(child.stdout)
    assert results["vendor"] == "sqlite"
    return results


def expected_p95(reports: list[dict], since: float, until: float) -> dict[tuple[str, str, str], float]:
    """The definition, computed the slow way: per consuming edge, each event's first
    receipt in the range minus its first publication (up to a day before), at least 0."""
    published: dict[tuple[str, str], float] = {}
    received: dict[tuple[str, str, str, str], float] = {}
    for r in reports:
        if r["stage"] == "published" and since - 86400 <= r["at"] < until:
            key = (r["event_id"], r["topic"])
            published[key] = min(published.get(key, r["at"]), r["at"])
        elif r["stage"] in ("consumed", "processed") and since <= r["at"] < until:
            key = (r["event_id"], r["topic"], r["service"], r["group"])
            received[key] = min(received.get(key, r["at"]), r["at"])
    latencies: dict[tuple[str, str, str], list[float]] = {}
    for (event_id, topic, service, group), at in received.items():
        if (event_id, topic) in published:
            latencies.setdefault((topic, service, group), []).append(max(0.0, at - published[(event_id, topic)]))
    return {edge: flow_queries.percentile(values, 0.95) for edge, values in latencies.items()}


def test_p95_is_the_same_on_sqlite_and_postgresql_to_the_microsecond(tmp_path):
    reports = varied_reports(120)
    save(*[event(**report) for report in reports])
    expected = expected_p95(reports, -60, 150)
    on_postgresql = flow_queries.p95_latencies(T0 - timedelta(seconds=60), T0 + timedelta(seconds=150))
    sqlite = {(topic, service, group): p95 for topic, service, group, p95 in
              on_sqlite(tmp_path, reports, -60, 150, ["p95"])["p95"]}
    assert set(expected) == {("orders.events", "payments", "payments"), ("orders.events", "analytics", "analytics"),
                             ("payments.events", "shipping", "shipping")}
    assert on_postgresql == pytest.approx(expected, abs=1e-6)
    assert sqlite == pytest.approx(expected, abs=1e-6)


def test_service_and_topic_pages_show_the_same_numbers_on_sqlite_and_postgresql(tmp_path):
    reports = varied_reports(60)
    save(*[event(**report) for report in reports])
    since, until = T0 - timedelta(seconds=60), T0 + timedelta(seconds=90)
    asked = ["service:payments", "service:orders", "topic:orders.events", "topic:payments.events"]
    sqlite = on_sqlite(tmp_path, reports, -60, 90, asked)
    for ask in asked:
        kind, name = ask.split(":", 1)
        stats = (flow_stats.service_stats if kind == "service" else flow_stats.topic_stats)(name, since, until,
                                                                                             True)
        on_postgresql = page_numbers(stats)

        def p95(numbers: dict) -> dict:
            return {tuple(row[:3]): row[3] for row in numbers.pop("p95", [])}

        assert p95(sqlite[ask]) == pytest.approx(p95(on_postgresql), abs=1e-6), ask
        assert sqlite[ask] == on_postgresql, ask
    orders_topic = sqlite["topic:orders.events"]
    assert [(r["service"], r["consumer_group"], r["consumed"], r["failed"]) for r in orders_topic["consumers"]] == [
        ("analytics", "analytics", 61, 0), ("payments", "payments", 62, 12)]
    assert [(t["schema_version"], t["events"]) for t in orders_topic["types"]] == [(1, 30), (2, 30), (None, 268)]


def test_on_sqlite_the_p95_work_grows_with_the_events_not_with_their_square(tmp_path):
    small = on_sqlite(tmp_path / "small", varied_reports(150), -60, 10_000, ["p95_steps"])["p95_steps"]
    large = on_sqlite(tmp_path / "large", varied_reports(600), -60, 10_000, ["p95_steps"])["p95_steps"]
    assert large < 8 * small  # 4 times the events; a lookup scanning the range would be 16 times the work


def test_on_sqlite_a_statement_over_its_budget_or_asked_to_stop_is_ended(tmp_path):
    ended = on_sqlite(tmp_path, [], 0, 1, ["budget"])["budget"]
    assert ended["over_budget"] is not None and ended["over_budget"] < 5
    assert ended["stopped"] is not None and ended["stopped"] < 5


# --------------------------------------------------------------------------- pure helpers

@pytest.mark.parametrize("count", [1, 2, 3, 19, 20, 21, 100, 101, 999])
def test_the_percentile_from_the_ranks_around_it_equals_the_percentile_of_all_values(count):
    values = sorted((n * 7919 % 1000) / 7 for n in range(count))
    position = (count - 1) * 0.95
    around = {rank: values[rank - 1] for rank in range(1, count + 1) if rank - 3 <= position < rank + 1}
    assert len(around) <= 4
    assert flow_queries.percentile_of_ranked(count, around, 0.95) == flow_queries.percentile(values, 0.95)


def test_regroup_sums_counts_and_keeps_the_earliest_and_latest_in_key_order():
    rows = [
        {"service": "b", "stage": "consumed", "events": 2, "first_at": 5, "last_at": 9},
        {"service": "a", "stage": "failed", "events": 1, "first_at": 3, "last_at": 4},
        {"service": "b", "stage": "processed", "events": 3, "first_at": 1, "last_at": 6},
    ]
    assert flow_stats.regroup(rows, ("service",), sums=("events",), earliest=("first_at",),
                                latest=("last_at",)) == [
        {"service": "a", "events": 1, "first_at": 3, "last_at": 4},
        {"service": "b", "events": 5, "first_at": 1, "last_at": 9},
    ]
    by_stage = flow_stats.receipts_by_stage(rows, ("service",))
    assert [(r["service"], r["consumed"], r["processed"], r["failed"], r["published"]) for r in by_stage] == [
        ("a", 0, 0, 1, 0), ("b", 2, 3, 0, 0)]


# --------------------------------------------------------------------------- the warm-up's budget

def test_a_statement_over_the_budget_is_cancelled_on_postgresql():
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('statement_timeout')")
        [usual_timeout] = cursor.fetchone()
    started = time.monotonic()
    with pytest.raises(readcache.BudgetExhausted, match="budget"):
        with readcache.bounded_reads(readcache.TimeBudget(0.3)), connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(120)")
    assert time.monotonic() - started < 60  # cancelled by the 0.3 s budget, long before the 120 s statement
    with connection.cursor() as cursor:  # the connection is usable, with its usual timeout back
        cursor.execute("SELECT pg_sleep(0.4), current_setting('statement_timeout')")
        assert cursor.fetchone()[1] == usual_timeout


def test_a_refresh_out_of_budget_leaves_the_remaining_ranges_to_the_next_run(caplog):
    save(event("e1", "published", "orders", -3600 * 30, topic="orders.events"))
    with caplog.at_level(logging.WARNING, logger="monitor.flow.queries"):
        assert flow_queries.refresh_flow_cache(["24h", "7d"], T0, budget_seconds=0) == {}
    assert "24h not refreshed: over its 0 s budget" in caplog.text
    assert cache.get(f"{flow_queries.FLOW_CACHE}:live:7d") is None


def test_the_beat_task_stops_when_the_worker_shuts_down(caplog):
    from celery.signals import worker_shutting_down

    from monitor import tasks

    save(event("e1", "published", "orders", timezone.now() - timedelta(days=3), topic="orders.events"))
    try:
        worker_shutting_down.send(sender="celery@test", sig="SIGTERM", how="Warm", exitcode=0)
        with caplog.at_level(logging.WARNING, logger="monitor.flow.queries"):
            assert tasks.warm_flow_cache() == {}
        assert "not refreshed: asked to stop" in caplog.text
    finally:
        tasks.worker_stopping.clear()
    assert set(tasks.warm_flow_cache()) == {"24h", "7d"}


def test_rates_are_per_second_of_the_range_that_has_reports():
    """Two minutes of traffic in a ten-minute window: the rate is not diluted five-fold."""
    for n in range(120):
        save(event(f"p-{n}", "published", "orders", n, topic="orders.events"))
    graph = flow_queries.flow_graph(TimeRange(SINCE, T0 + timedelta(seconds=120), "custom"), Tolerances())
    publish = next(e for e in graph.edges if e.service == "orders")
    assert publish.rate_per_second == pytest.approx(1.0)
