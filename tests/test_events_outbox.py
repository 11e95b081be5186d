"""The transactional outbox seen from its events: lag from write to publication, rows
never published as a finding, and a per-service lag metric that fires while a relay stalls."""
import datetime as dt
import uuid

import pytest

from monitor.events.config import IngestLimits
from monitor.events.detectors import EventFact
from monitor.events.outbox import detect_unpublished, outbox_lag_by_service, outbox_latencies
from monitor.events.store import forget_registry_cache, ingest_payload

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
LIMITS = IngestLimits(max_events=1000, max_bytes=5 * 1024 * 1024, max_attributes_bytes=8192)


def fact(event_id, stage, seconds, service="orders"):
    return EventFact(event_id, "OrderPlaced", service, stage, T0 + dt.timedelta(seconds=seconds))


def test_outbox_lag_is_publication_minus_write_per_service():
    events = [fact("a", "outbox", 0), fact("a", "published", 2), fact("b", "outbox", 1), fact("b", "published", 1.5)]
    assert {service: sorted(v) for service, v in outbox_latencies(events).items()} == {"orders": [0.5, 2.0]}


def test_rows_written_and_never_published_are_a_finding_with_examples():
    events = [fact("a", "outbox", 0), fact("b", "outbox", 10), fact("c", "outbox", 290), fact("b", "published", 11)]
    [finding] = detect_unpublished(events, T0 + dt.timedelta(seconds=300), after_seconds=60, examples=3)
    assert finding.kind == "unpublished_outbox" and finding.service == "orders"
    assert finding.value == 1 and finding.examples == [{"event_id": "a", "trace_id": ""}]
    assert "1 outbox rows of orders not published" in finding.summary


def test_a_relay_that_keeps_up_finds_nothing():
    events = [fact(f"e{i}", stage, i + (0.2 if stage == "published" else 0))
              for i in range(10) for stage in ("outbox", "published")]
    assert detect_unpublished(events, T0 + dt.timedelta(hours=1), 60, 3) == []


@pytest.fixture
def stored(db):
    forget_registry_cache()

    def store(events, now):
        payload = [{"event_id": e, "type": "OrderPlaced", "service": service, "stage": stage,
                    "timestamp": (now - dt.timedelta(seconds=ago)).isoformat().replace("+00:00", "Z")}
                   for e, service, stage, ago in events]
        ingest_payload({"events": payload}, now, LIMITS)
    yield store
    forget_registry_cache()


def test_the_lag_metric_is_the_age_of_the_oldest_unpublished_write_and_zero_when_caught_up(stored):
    from django.utils import timezone

    now = timezone.now()
    stalled = uuid.uuid4().hex
    stored([(stalled, "orders", "outbox", 120), ("ok-1", "orders", "outbox", 100), ("ok-1", "orders", "published", 99),
            ("ok-2", "billing", "outbox", 50), ("ok-2", "billing", "published", 49)], now)
    lag = outbox_lag_by_service(now)
    assert lag["billing"] == 0.0
    assert lag["orders"] == pytest.approx(120, abs=1)
    stored([(stalled, "orders", "published", 0)], now)
    assert outbox_lag_by_service(now)["orders"] == 0.0
