"""Detectors as pure functions (events that do and do not trigger each), and the runner
that loads a window, learns subscriptions and upserts findings."""
import datetime as dt

import pytest

from monitor.choices import FindingKind
from monitor.events import detectors as d
from monitor.events.detectors import EventFact, Subscription

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
TRACE = "0af7651916cd43dd8448eb211c80319c"


def at(seconds):
    return T0 + dt.timedelta(seconds=seconds)


def pub(event_id, seconds=0, topic="orders", type="OrderPlaced", service="orders", **kw):  # noqa: A002
    return EventFact(event_id, type, service, "published", at(seconds), topic=topic,
                     trace_id=kw.pop("trace_id", TRACE), **kw)


def got(event_id, stage, group, seconds=1, topic="orders", type="OrderPlaced", **kw):  # noqa: A002
    return EventFact(event_id, type, kw.pop("service", group + "-svc"), stage, at(seconds), topic=topic,
                     consumer_group=group, trace_id=kw.pop("trace_id", TRACE), **kw)


# -- lost ---------------------------------------------------------------------------------------

SUBS = [Subscription("orders", "billing", at(-3600)), Subscription("orders", "shipping", at(-3600))]


def test_event_not_consumed_by_an_expected_group_within_the_window_is_lost():
    events = [pub("a"), got("a", "processed", "billing"), pub("b", 5), got("b", "consumed", "billing", 6),
              got("b", "failed", "shipping", 7)]
    [finding] = d.detect_lost(events, SUBS, now=at(400), lost_after_seconds=300)
    assert finding.kind == FindingKind.LOST
    assert (finding.topic, finding.consumer_group, finding.value) == ("orders", "shipping", 1)
    assert [e["event_id"] for e in finding.examples] == ["a"]
    assert finding.examples[0]["trace_id"] == TRACE


def test_recent_events_and_events_before_the_subscription_began_are_not_lost():
    subs = [Subscription("orders", "billing", at(100))]
    events = [pub("old", 0), pub("recent", 350)]
    assert d.detect_lost(events, subs, now=at(400), lost_after_seconds=300) == []


def test_topics_without_expected_subscribers_lose_nothing():
    assert d.detect_lost([pub("a", topic="audit")], SUBS, now=at(1000), lost_after_seconds=60) == []


def test_subscriptions_are_learned_with_their_first_consumption():
    events = [got("a", "consumed", "billing", 9), got("b", "processed", "billing", 3), pub("c"),
              got("d", "consumed", "", 4, service="legacy")]
    assert d.learn_subscriptions(events) == {("orders", "billing"): at(3), ("orders", "legacy"): at(4)}


# -- duplicates --------------------------------------------------------------------------

def test_same_offset_processed_twice_is_a_redelivery():
    events = [pub("a", offset=7, partition=0),
              got("a", "processed", "billing", 1, partition=0, offset=7),
              got("a", "processed", "billing", 9, partition=0, offset=7)]
    [finding] = d.detect_duplicates(events)
    assert (finding.consumer_group, finding.value) == ("billing", 1)
    assert finding.examples[0]["cause"] == d.REDELIVERY
    assert "redelivered" in finding.summary


def test_same_event_id_at_another_offset_is_a_duplicate_publication():
    events = [pub("a", offset=7, partition=0), pub("a", 1, offset=8, partition=0),
              got("a", "consumed", "billing", 2, partition=0, offset=7),
              got("a", "consumed", "billing", 3, partition=0, offset=8)]
    [finding] = d.detect_duplicates(events)
    assert finding.examples[0]["cause"] == d.DUPLICATE_PUBLICATION
    assert finding.examples[0]["offsets"] == [7, 8]


def test_retry_after_a_failure_and_one_handling_per_group_are_not_duplicates():
    events = [pub("a"),
              got("a", "consumed", "billing", 1), got("a", "failed", "billing", 2),
              got("a", "consumed", "billing", 3), got("a", "processed", "billing", 4),
              got("a", "consumed", "shipping", 1), got("a", "processed", "shipping", 2)]
    assert d.detect_duplicates(events) == []


# -- out of order ---------------------------------------------------------------------------

def test_older_event_of_a_key_processed_after_a_newer_one_is_out_of_order():
    events = [pub("e1", 0, key="order-1"), pub("e2", 1, key="order-1"), pub("x", 2, key="order-2"),
              got("e2", "processed", "billing", 5, key="order-1"), got("e1", "processed", "billing", 6, key="order-1"),
              got("x", "processed", "billing", 7, key="order-2")]
    [finding] = d.detect_out_of_order(events)
    assert (finding.consumer_group, finding.value) == ("billing", 1)
    assert finding.examples[0]["event_id"] == "e1"
    assert finding.examples[0]["after_event_id"] == "e2"


def test_offsets_order_events_of_one_partition_without_publication_reports():
    events = [got("e9", "consumed", "billing", 1, key="k", partition=0, offset=9),
              got("e8", "consumed", "billing", 2, key="k", partition=0, offset=8)]
    [finding] = d.detect_out_of_order(events)
    assert finding.examples[0]["event_id"] == "e8"


def test_in_order_processing_and_redeliveries_are_not_out_of_order():
    events = [pub("e1", 0, key="k"), pub("e2", 1, key="k"),
              got("e1", "processed", "billing", 5, key="k"), got("e2", "processed", "billing", 6, key="k"),
              got("e1", "processed", "billing", 7, key="k"),  # a redelivery: a duplicate, not a reordering
              got("e2", "processed", "shipping", 5, key="k"), got("e1", "consumed", "shipping", 6, key="k")]
    assert d.detect_out_of_order(events) == []


# -- schema drift ------------------------------------------------------------------------------

def test_version_a_consuming_group_never_handled_is_drift():
    events = [pub("a", schema_version=3), got("a", "processed", "billing", schema_version=2),
              pub("b", schema_version=2), got("b", "processed", "billing", schema_version=2)]
    [finding] = d.detect_schema_drift(events, {("OrderPlaced", "billing"): {1, 2}})
    assert (finding.event_type, finding.consumer_group, finding.service, finding.value) == (
        "OrderPlaced", "billing", "orders", 1)
    assert "orders v3" in finding.summary and "v1, v2" in finding.summary
    assert finding.examples[0]["event_id"] == "a"


def test_versions_every_consuming_group_has_handled_are_not_drift():
    events = [pub("a", schema_version=3), got("a", "processed", "billing", schema_version=3),
              pub("z", schema_version=9, type="Unconsumed")]
    assert d.detect_schema_drift(events, {("OrderPlaced", "billing"): {2}}) == []


def test_schema_matrix_joins_producer_and_consumer_versions():
    events = [pub("a", schema_version=3), got("a", "processed", "billing", schema_version=2),
              pub("b", schema_version=2), got("b", "processed", "billing", schema_version=2),
              got("b", "consumed", "audit")]
    assert d.schema_matrix(events) == {"OrderPlaced": {(3, "billing", 2): 1, (2, "billing", 2): 1, (2, "audit", None): 1}}


# -- cascade storms --------------------------------------------------------------------------

def _trace(trace_id, size, fanout_parent="", type="OrderPlaced"):  # noqa: A002
    root = pub(f"{trace_id}-root", 0, trace_id=trace_id, type=type, span_id="1" * 16)
    children = [pub(f"{trace_id}-{i}", 1, trace_id=trace_id, type="Child", parent_span_id=fanout_parent or f"{i:016x}")
                for i in range(size - 1)]
    return [root, *children]


def test_trace_over_the_absolute_event_threshold_is_a_storm():
    events = _trace("a" * 32, 12) + _trace("b" * 32, 3)
    [finding] = d.detect_cascade_storms(events, d.StormThresholds(max_events=10, max_fanout=100, min_events=2))
    assert (finding.kind, finding.value, finding.event_type) == (FindingKind.CASCADE_STORM, 12, "OrderPlaced")
    assert finding.examples[0]["trace_id"] == "a" * 32


def test_one_event_fanning_out_beyond_the_threshold_is_a_storm():
    events = _trace("c" * 32, 8, fanout_parent="1" * 16)
    [finding] = d.detect_cascade_storms(events, d.StormThresholds(max_events=100, max_fanout=5))
    assert "fanned out to 7" in finding.summary


def test_trace_many_times_its_usual_size_is_a_storm_and_usual_ones_are_not():
    events = []
    for i in range(6):
        events += _trace(f"{i:032x}", 3)
    events += _trace("f" * 32, 40)
    thresholds = d.StormThresholds(max_events=1000, max_fanout=1000, factor=10, min_events=20)
    [finding] = d.detect_cascade_storms(events, thresholds)
    assert finding.examples[0]["trace_id"] == "f" * 32
    assert "usual 3" in finding.summary
    assert d.detect_cascade_storms(events[:-40 + 25], thresholds) == []


# -- failures --------------------------------------------------------------------------------

def test_failed_and_dead_lettered_events_are_counted_per_group_and_type():
    events = [got("a", "consumed", "billing"), got("a", "failed", "billing", 2),
              got("b", "consumed", "billing"), got("b", "dead_lettered", "billing", 3),
              got("c", "processed", "billing"), got("d", "processed", "billing"),
              got("e", "processed", "shipping")]
    [finding] = d.detect_failures(events)
    assert (finding.consumer_group, finding.event_type, finding.value) == ("billing", "OrderPlaced", 2)
    assert "1 failed, 1 dead-lettered of 4 OrderPlaced events (50.0%)" in finding.summary
    assert {e["stage"] for e in finding.examples} == {"failed", "dead_lettered"}


def test_no_failures_no_finding():
    assert d.detect_failures([got("a", "processed", "billing")]) == []


# -- the runner ------------------------------------------------------------------------------

def _store(*facts, received_at=None):
    from monitor.events.ingest import report_hash
    from monitor.models import Event

    Event.objects.bulk_create([
        Event(**f._asdict(), received_at=received_at or f.timestamp,
              report_hash=report_hash(f.event_id, f.stage, f.service, f.consumer_group, f.timestamp))
        for f in facts
    ])


@pytest.mark.django_db
def test_runner_learns_subscriptions_detects_and_upserts_findings_by_fingerprint():
    from monitor.events.config import DetectorConfig
    from monitor.events.runner import run_detectors
    from monitor.models import ExpectedSubscription, Finding

    config = DetectorConfig(lookback_seconds=3600, lost_after_seconds=300)
    _store(pub("a", 0), got("a", "processed", "billing", 1), got("a", "processed", "billing", 2),
           pub("b", 10), got("b", "failed", "billing", 11))
    run = run_detectors(at(600), config)
    assert run.events == 5 and run.learned_subscriptions == 1
    assert ExpectedSubscription.objects.get().first_seen_at == at(1)
    assert run.findings[FindingKind.DUPLICATE] == 1 and run.findings[FindingKind.FAILURE_RATE] == 1
    assert run.findings[FindingKind.LOST] == 0  # failed counts as received
    duplicate = Finding.objects.get(kind=FindingKind.DUPLICATE)
    first_seen = duplicate.first_seen_at

    run_detectors(at(660), config)  # found again: same row, last_seen moves
    duplicate.refresh_from_db()
    assert Finding.objects.filter(kind=FindingKind.DUPLICATE).count() == 1
    assert (duplicate.first_seen_at, duplicate.last_seen_at) == (first_seen, at(660))

    run_detectors(at(5000), config)  # out of the window: value drops to 0, the row stays
    duplicate.refresh_from_db()
    assert duplicate.value == 0 and duplicate.last_seen_at == at(660)


@pytest.mark.django_db
def test_runner_finds_lost_events_for_learned_and_admin_added_subscriptions_unless_disabled():
    from monitor.events.config import DetectorConfig
    from monitor.events.runner import run_detectors
    from monitor.models import ExpectedSubscription, Finding

    ExpectedSubscription.objects.create(topic="orders", consumer_group="audit", learned=False, first_seen_at=at(-10))
    ExpectedSubscription.objects.create(topic="orders", consumer_group="paused", enabled=False, first_seen_at=at(-10))
    _store(pub("a", 0), got("a", "processed", "billing", 1), pub("b", 5))
    run_detectors(at(1000), DetectorConfig(lost_after_seconds=300))
    lost = {(f.consumer_group, f.value) for f in Finding.objects.filter(kind=FindingKind.LOST)}
    assert lost == {("audit", 2.0), ("billing", 1.0)}
    assert not ExpectedSubscription.objects.get(consumer_group="paused").enabled


@pytest.mark.django_db
def test_event_metrics_read_findings_for_the_alert_rules():
    from monitor.alerts import metrics
    from monitor.alerts.rules import Scope, Subject
    from monitor.events.runner import save_findings

    finding = d.detect_failures([got("a", "failed", "billing")])[0]
    save_findings([finding], at(0))
    readings = metrics.get("failed_events").fetch([Scope()], at(0))
    assert readings[Subject("", "billing", "orders")].value == 1
    save_findings([], at(60))
    assert metrics.get("failed_events").fetch([Scope()], at(60))[Subject("", "billing", "orders")].value == 0
    assert {"lost_events", "duplicate_events", "out_of_order_events", "schema_drift_events",
            "cascade_storm_events", "failed_events"} <= set(metrics.all_metrics())


@pytest.mark.django_db
def test_detector_task_runs_through_celery():
    from django.utils import timezone

    from monitor.celery import app
    from monitor.models import Finding
    from monitor.tasks import run_detectors as task

    now = timezone.now()
    _store(EventFact("a", "T", "svc", "failed", now - dt.timedelta(seconds=5), topic="orders", consumer_group="g"))
    app.conf.task_always_eager = True
    try:
        task.delay()
    finally:
        app.conf.task_always_eager = False
    assert Finding.objects.get().kind == FindingKind.FAILURE_RATE


@pytest.mark.django_db
def test_finding_admin_links_its_examples_to_the_trace_view(admin_client):
    from monitor.events.runner import save_findings
    from monitor.models import Finding

    save_findings(d.detect_failures([got("a", "failed", "billing")]), at(0))
    finding = Finding.objects.get()
    page = admin_client.get(f"/admin/monitor/finding/{finding.pk}/change/")
    assert page.status_code == 200
    assert f'href="/traces/{TRACE}/"' in page.content.decode()
    assert admin_client.get("/admin/monitor/finding/").status_code == 200


@pytest.mark.django_db
def test_expected_subscriptions_are_editable_and_events_read_only_in_the_admin(admin_client):
    from monitor.models import Event, ExpectedSubscription

    _store(pub("a"))
    response = admin_client.post("/admin/monitor/expectedsubscription/add/", {
        "topic": "orders", "consumer_group": "audit", "enabled": "on",
        "first_seen_at_0": "2024-05-01", "first_seen_at_1": "12:00:00"})
    assert response.status_code == 302
    added = ExpectedSubscription.objects.get()
    assert (added.consumer_group, added.learned, added.enabled) == ("audit", False, True)
    event = Event.objects.get()
    assert admin_client.get("/admin/monitor/event/").status_code == 200
    assert admin_client.get("/admin/monitor/event/add/").status_code == 403
    detail = admin_client.get(f"/admin/monitor/event/{event.pk}/change/")
    assert detail.status_code == 200 and 'name="event_id"' not in detail.content.decode()
