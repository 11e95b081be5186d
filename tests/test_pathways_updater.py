"""Pathways and transactions kept up to date from stored events: incremental runs equal
a from-scratch computation, and the API shows what the contract promises."""
from datetime import timedelta

import pytest
from django.utils import timezone

from monitor.alerts import config as alert_config
from monitor.models import BusinessFlow, BusinessTransaction, TracePathway
from monitor.pathways import queries, updater
from tests.event_reports import order_trace, report, store

def snapshot(since, until):
    return [(s.label, s.traces, s.p50_seconds, s.p95_seconds, s.p99_seconds)
            for s in queries.pathway_summaries(since, until)]


def test_routes_and_percentiles_from_the_origin(db):
    now = timezone.now()
    start = now - timedelta(minutes=30)
    events = []
    for index in range(20):
        events += order_trace(start + timedelta(seconds=index), 1, 2 + index)[1]
    store(events)
    updater.update(now)
    [summary] = queries.pathway_summaries(now - timedelta(hours=1), now)
    assert summary.services == ["orders", "payments", "shipping"]
    assert summary.topics == ["orders.events", "payments.events"]
    assert summary.traces == 20
    assert summary.p50_seconds == pytest.approx(11, rel=0.06)
    assert summary.p99_seconds == pytest.approx(21, rel=0.06)
    detail = queries.pathway_detail(summary.id, now - timedelta(hours=1), now)
    assert detail is not None
    assert [hop.service for hop in detail.hops] == ["orders", "payments", "shipping"]
    assert detail.hops[1].p95_seconds == pytest.approx(1, rel=0.06)
    assert sum(minute[1] for minute in detail.minutes) == 20


def test_incremental_runs_equal_a_computation_from_scratch(db):
    """Events arrive in three batches, one trace's end arriving late; after each batch an
    incremental run; the result equals a rebuild from nothing."""
    now = timezone.now()
    start = now - timedelta(hours=2)
    traces = [order_trace(start + timedelta(minutes=i), 0.5 + i % 3, 3 + i % 7) for i in range(60)]
    batches = [[], [], []]
    for index, (_, events) in enumerate(traces):
        batches[index % 3] += events[:3]
        batches[(index + 1) % 3] += events[3:]  # the shipping report of a trace may come in a later batch
    for batch in batches:
        store(batch)
        updater.update(now)
    incremental = snapshot(now - timedelta(days=1), now)
    assert updater.update(now).traces >= 0  # a repeated run changes nothing
    assert snapshot(now - timedelta(days=1), now) == incremental
    updater.rebuild(now)
    assert snapshot(now - timedelta(days=1), now) == incremental
    assert incremental[0][1] == 60


def test_a_trace_completed_later_moves_to_its_full_route(db):
    now = timezone.now()
    trace, events = order_trace(now - timedelta(minutes=5), 1, 4)
    store(events[:2])
    updater.update(now)
    assert TracePathway.objects.get(trace_id=trace).pathway.services == ["orders", "payments"]
    store(events[2:])
    updater.update(now)
    assert TracePathway.objects.get(trace_id=trace).pathway.services == ["orders", "payments", "shipping"]


def test_the_pathways_api_lists_routes_with_percentiles(client, db, read_token):
    now = timezone.now()
    store(order_trace(now - timedelta(minutes=10), 1, 3)[1])
    response = client.get("/api/v1/pathways", HTTP_AUTHORIZATION=f"Bearer {read_token}")
    assert response.status_code == 200
    [body] = response.json()
    assert body["services"] == ["orders", "payments", "shipping"]
    assert body["traces"] == 1 and body["p95_seconds"] == pytest.approx(3, rel=0.06)
    assert client.get("/api/v1/pathways?since=nonsense", HTTP_AUTHORIZATION=f"Bearer {read_token}").status_code == 400
    assert client.get("/api/v1/pathways").status_code == 401


FLOW_YAML = """
transactions:
  - name: order
    start: [OrderPlaced]
    success: [OrderShipped]
    compensated: [OrderCancelled]
    key: key
    slo_seconds: 300
"""


def test_transactions_declared_in_the_config_file_are_tracked_and_listed(client, db, read_token):
    now = timezone.now()
    old = now - timedelta(minutes=20)
    store([
        report("orders", "published", old, key="o-stuck"),
        report("payments", "processed", old + timedelta(seconds=5), type="PaymentTaken", key="o-stuck"),
        report("orders", "published", old, key="o-done"),
        report("shipping", "published", old + timedelta(seconds=60), type="OrderShipped", key="o-done"),
        report("orders", "published", old, key="o-undone"),
        report("orders", "published", old + timedelta(seconds=9), type="OrderCancelled", key="o-undone"),
        report("orders", "published", now - timedelta(seconds=30), key="o-new"),
    ])
    changes = alert_config.apply(alert_config.load(FLOW_YAML))
    assert [c.format() for c in changes] == ["created transaction 'order'"]
    states = dict(BusinessTransaction.objects.values_list("key", "state"))
    assert states == {"o-stuck": "in_flight", "o-done": "completed", "o-undone": "compensated", "o-new": "in_flight"}
    response = client.get("/api/v1/transactions?name=order&state=stuck", HTTP_AUTHORIZATION=f"Bearer {read_token}")
    assert response.status_code == 200
    [stuck] = response.json()
    assert (stuck["key"], stuck["state"], stuck["last_event_type"], stuck["last_service"]) == \
        ("o-stuck", "stuck", "PaymentTaken", "payments")
    assert {row["key"] for row in client.get("/api/v1/transactions?state=in_flight",
                                             HTTP_AUTHORIZATION=f"Bearer {read_token}").json()} == {"o-new"}
    # The flow also follows events that arrive after it was declared.
    store([report("shipping", "published", now, type="OrderShipped", key="o-new")])
    client.get("/api/v1/transactions", HTTP_AUTHORIZATION=f"Bearer {read_token}")
    assert BusinessTransaction.objects.get(key="o-new").state == "completed"


def test_transaction_lists_are_paged_with_a_link_to_the_next_page(client, db, read_token):
    now = timezone.now()
    BusinessFlow.objects.create(name="order", start_types=["OrderPlaced"], success_types=["OrderShipped"])
    store([report("orders", "published", now - timedelta(seconds=i), key=f"o-{i}") for i in range(5)])
    seen, url = [], "/api/v1/transactions?limit=2"
    while url:
        response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {read_token}")
        assert response.status_code == 200
        seen += [row["key"] for row in response.json()]
        link = response.get("Link")
        url = link[1:link.index(">")].split("testserver", 1)[1] if link else None
    assert sorted(seen) == sorted(f"o-{i}" for i in range(5))
    bad = client.get("/api/v1/transactions?limit=0", HTTP_AUTHORIZATION=f"Bearer {read_token}")
    assert bad.status_code == 400 and bad.json()["errors"][0]["loc"] == ["query", "limit"]


def test_a_bad_transactions_section_names_the_line_and_field(db):
    with pytest.raises(alert_config.ConfigError) as caught:
        alert_config.load("transactions:\n  - name: order\n    start: []\n    success: [Done]\n    key: nope\n")
    text = str(caught.value)
    assert "transactions[0].start" in text and "transactions[0].key" in text


def test_the_stuck_transactions_metric_counts_per_flow(db):
    from monitor.alerts import metrics as registry
    from monitor.alerts.rules import Scope, Subject

    now = timezone.now()
    BusinessFlow.objects.create(name="order", start_types=["OrderPlaced"], success_types=["OrderShipped"],
                                slo_seconds=60)
    store([report("orders", "published", now - timedelta(minutes=5), key="a"),
           report("orders", "published", now - timedelta(seconds=10), key="b")])
    updater.update(now)
    readings = registry.get("stuck_transactions").fetch([Scope()], now)
    assert readings[Subject("", "order", "")].value == 1


def test_the_pathway_p95_metric_is_per_route(db):
    from monitor.alerts import metrics as registry
    from monitor.alerts.rules import Scope, Subject

    now = timezone.now()
    store(order_trace(now - timedelta(minutes=2), 1, 30)[1])
    updater.update(now)
    readings = registry.get("pathway_p95_seconds").fetch([Scope()], now)
    assert readings[Subject("", "orders → payments → shipping", "")].value == pytest.approx(30, rel=0.06)


def test_the_evaluate_command_brings_pathways_up_to_date_first(db, capsys):
    from django.core.management import call_command

    now = timezone.now()
    store(order_trace(now - timedelta(minutes=2), 1, 3)[1])
    call_command("evaluate_alerts", "--once", "--no-deliver")
    assert "pathways: 4 new events" in capsys.readouterr().out
    assert TracePathway.objects.count() == 1


def test_the_cursor_trails_recent_events_so_late_commits_are_read_again(db):
    now = timezone.now()
    store(order_trace(now - timedelta(minutes=2), 1, 3)[1], now=now)
    first = updater.update(now)
    again = updater.update(now)  # received just now: not yet settled, read again (idempotently)
    assert first.events == again.events == 4
    later = updater.update(now + timedelta(minutes=5))
    assert later.events == 4
    assert updater.update(now + timedelta(minutes=6)).events == 0
