"""monitor/flow/stats.py against real PostgreSQL (and, in a child process, the demo's
SQLite): the service and topic pages' numbers, schema tables, their cache."""
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from monitor.flow import stats as flow_stats
from monitor.models import Finding, Topic
from tests.flow_data import (
    SINCE, T0, UNTIL, WINDOW, cluster, event, group_with_lag, new_trace_id, order_saga, save, varied_reports,
)
from tests.flow_sqlite import on_sqlite, page_numbers

pytestmark = pytest.mark.django_db


def test_service_and_topic_numbers_are_cached_per_range(django_assert_num_queries):
    save(*order_saga(new_trace_id()))
    service = flow_stats.cached_service_stats("payments", WINDOW)
    topic = flow_stats.cached_topic_stats("orders.events", WINDOW)
    with django_assert_num_queries(0):
        assert flow_stats.cached_service_stats("payments", WINDOW).consumes == service.consumes
        assert flow_stats.cached_topic_stats("orders.events", WINDOW).producers == topic.producers
    assert flow_stats.cached_service_stats("payments with spaces/and slashes", WINDOW).known is False


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


# --------------------------------------------------------------------------- pure helpers

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
