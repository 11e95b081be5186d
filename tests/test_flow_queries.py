"""monitor/flow/queries.py against real PostgreSQL (and, in a child process, the demo's
SQLite): edges, latency, lag, examples, the flow graph, its cache and the warm-up's budget."""
import logging
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import override_settings
from django.utils import timezone

from monitor import readcache
from monitor.flow import queries as flow_queries
from monitor.flow.graph import Tolerances
from monitor.models import ConsumerGroup
from monitor.timerange import TimeRange, parse_time_range
from tests import services
from tests.flow_data import (
    SINCE, T0, UNTIL, WINDOW, cluster, event, group_with_lag, new_trace_id, order_saga, save, varied_reports,
)
from tests.flow_sqlite import on_sqlite
from tests.lag_rows import topic_samples

pytestmark = pytest.mark.django_db


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
    topic_samples(group, "orders.events", T0 - timedelta(minutes=1), 1, timedelta(minutes=1), lag=999)
    group_with_lag(second, "payments", {"orders.events": 2}, T0, status="stalled")
    lags = flow_queries.group_lags(["payments"], ["orders.events"], SINCE, UNTIL, at_present=True)
    assert lags[("payments", "orders.events")].lag == 42
    assert lags[("payments", "orders.events")].status == "stalled"
    assert lags[("payments", "orders.events")].clusters == ("prod-a", "prod-b")


def test_live_lag_is_unknown_while_a_group_of_that_name_is_unread_on_some_cluster():
    """Its latest detail is not its lag now: neither shown alone nor added into a sum."""
    first, second = cluster("prod-a"), cluster("prod-b")
    group_with_lag(first, "payments", {"orders.events": 40}, T0)
    unread = group_with_lag(second, "payments", {"orders.events": 2}, T0, status="unknown")
    ConsumerGroup.objects.filter(pk=unread.pk).update(unread_since=T0)
    lags = flow_queries.group_lags(["payments"], ["orders.events"], SINCE, UNTIL, at_present=True)
    assert lags[("payments", "orders.events")].lag is None
    assert lags[("payments", "orders.events")].clusters == ("prod-a", "prod-b")


def test_live_lag_falls_back_to_the_total_when_the_poller_has_no_topic_sample():
    group = group_with_lag(cluster("prod"), "shipping", {}, T0, total_lag=7)
    group.topics = ["payments.events"]
    group.save()
    lags = flow_queries.group_lags(["shipping"], ["payments.events"], SINCE, UNTIL, at_present=True)
    assert lags[("shipping", "payments.events")].lag == 7


def test_lag_of_a_past_range_is_the_highest_seen_in_it():
    group = group_with_lag(cluster("prod"), "payments", {"orders.events": 5}, T0)
    topic_samples(group, "orders.events", T0 - timedelta(minutes=2), 1, timedelta(minutes=1), lag=300)
    topic_samples(group, "orders.events", T0 - timedelta(hours=2), 1, timedelta(minutes=1), lag=9000)
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
    with django_assert_max_num_queries(10):  # whatever the number of events
        graph = flow_queries.flow_graph(TimeRange(SINCE, UNTIL, "10m"), Tolerances())
    consume = next(e for e in graph.edges if e.consumer_group == "payments")
    assert (consume.events, consume.failed, consume.lag) == (30, 6, 12)
    assert consume.p95_latency_seconds == pytest.approx(1.0, rel=0.05)  # a histogram bucket's middle
    assert len(consume.examples) == 3


def test_rates_are_per_second_of_the_range_that_has_reports():
    """Two minutes of traffic in a ten-minute window: the rate is not diluted five-fold."""
    for n in range(120):
        save(event(f"p-{n}", "published", "orders", n, topic="orders.events"))
    graph = flow_queries.flow_graph(TimeRange(SINCE, T0 + timedelta(seconds=120), "custom"), Tolerances())
    publish = next(e for e in graph.edges if e.service == "orders")
    assert publish.rate_per_second == pytest.approx(1.0)


# --------------------------------------------------------------------------- the cache and the warm-up

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


# --------------------------------------------------------------------------- the same numbers on SQLite

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


def test_on_sqlite_the_p95_work_grows_with_the_events_not_with_their_square(tmp_path):
    small = on_sqlite(tmp_path / "small", varied_reports(150), -60, 10_000, ["p95_steps"])["p95_steps"]
    large = on_sqlite(tmp_path / "large", varied_reports(600), -60, 10_000, ["p95_steps"])["p95_steps"]
    assert large < 8 * small  # 4 times the events; a lookup scanning the range would be 16 times the work


# --------------------------------------------------------------------------- pure helpers

@pytest.mark.parametrize("count", [1, 2, 3, 19, 20, 21, 100, 101, 999])
def test_the_percentile_from_the_ranks_around_it_equals_the_percentile_of_all_values(count):
    values = sorted((n * 7919 % 1000) / 7 for n in range(count))
    position = (count - 1) * 0.95
    around = {rank: values[rank - 1] for rank in range(1, count + 1) if rank - 3 <= position < rank + 1}
    assert len(around) <= 4
    assert flow_queries.percentile_of_ranked(count, around, 0.95) == flow_queries.percentile(values, 0.95)


@pytest.mark.parametrize(("spread_hours", "sparse_edge"), [(0.5, False), (20, False), (0.5, True), (70, True)])
def test_the_latest_failed_examples_read_from_the_end_of_the_range_equal_those_of_the_whole_range(spread_hours,
                                                                                                   sparse_edge):
    """Looked for in the last hour, then the last day, then the whole range: the same traces
    whichever suffix holds enough of them (one edge has only two failing traces)."""
    until = T0 + timedelta(days=3)
    for n in range(12):
        at = until - timedelta(hours=spread_hours * n / 12, seconds=1)
        save(event(f"f-{n}", "failed", "payments", at, topic="orders.events", group="payments", trace_id=f"t{n:02d}"))
    for n in range(2 if sparse_edge else 0):
        save(event(f"g-{n}", "failed", "shipping", until - timedelta(days=2, hours=n), topic="payments.events",
                   group="shipping", trace_id=f"s{n}"))
    failing = [("payments", "orders.events", "payments"), *([("shipping", "payments.events", "shipping")] * sparse_edge)]
    since = T0 - timedelta(days=1)
    assert flow_queries.latest_failed_examples(since, until, failing) == flow_queries.failed_examples(since, until)
