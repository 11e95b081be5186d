"""Builders for the flow area's tests: event reports, clusters, groups and lag samples
written straight to the database (the ingest API has its own tests)."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from monitor.models import Cluster, ConsumerGroup, Event
from monitor.timerange import CUSTOM, TimeRange
from tests.lag_rows import lag_snapshot

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SINCE, UNTIL = T0 - timedelta(minutes=5), T0 + timedelta(minutes=5)  # the read tests' usual window
WINDOW = TimeRange(SINCE, UNTIL, CUSTOM)


def event(event_id: str, stage: str, service: str, at: datetime | float, *, type: str = "OrderPlaced",
          topic: str = "", group: str = "", trace_id: str = "", span_id: str = "", parent_span_id: str = "",
          key: str = "", partition: int | None = None, offset: int | None = None,
          schema_version: int | None = None, attributes: dict | None = None) -> Event:
    """An unsaved report; ``at`` is a datetime or seconds after :data:`T0`."""
    timestamp = at if isinstance(at, datetime) else T0 + timedelta(seconds=at)
    report_hash = uuid.uuid4()  # unique: these tests are not about ingest's de-duplication
    return Event(event_id=event_id, type=type, service=service, stage=stage, timestamp=timestamp,
                 received_at=timestamp + timedelta(milliseconds=50), topic=topic, partition=partition, offset=offset,
                 key=key, consumer_group=group, schema_version=schema_version, trace_id=trace_id, span_id=span_id,
                 parent_span_id=parent_span_id, attributes=attributes, report_hash=report_hash)


def save(*events: Event) -> list[Event]:
    return Event.objects.bulk_create(events)


def new_trace_id() -> str:
    return uuid.uuid4().hex


def new_span_id() -> str:
    return uuid.uuid4().hex[:16]


def order_saga(trace_id: str, start: float = 0.0, order: str = "order-1", fail_payment: bool = False) -> list[Event]:
    """orders -> orders.events -> payments -> payments.events -> shipping; the payment may
    fail and be dead-lettered."""
    placed, paid = new_span_id(), new_span_id()
    reports = [
        event("ev-placed-" + trace_id[:8], "published", "orders", start, topic="orders.events", trace_id=trace_id,
              span_id=placed, key=order, partition=0, offset=1, schema_version=1),
        event("ev-placed-" + trace_id[:8], "consumed", "payments", start + 1, topic="orders.events", group="payments",
              trace_id=trace_id, span_id=placed, key=order, partition=0, offset=1),
    ]
    if fail_payment:
        reports += [
            event("ev-placed-" + trace_id[:8], "failed", "payments", start + 2, topic="orders.events",
                  group="payments", trace_id=trace_id, span_id=placed, key=order, attributes={"error": "declined"}),
            event("ev-placed-" + trace_id[:8], "dead_lettered", "payments", start + 2.5, topic="orders.events",
                  group="payments", trace_id=trace_id, span_id=placed, key=order),
        ]
        return reports
    reports += [
        event("ev-paid-" + trace_id[:8], "published", "payments", start + 1.5, type="PaymentAuthorised",
              topic="payments.events", trace_id=trace_id, span_id=paid, parent_span_id=placed, key=order),
        event("ev-placed-" + trace_id[:8], "processed", "payments", start + 2, topic="orders.events",
              group="payments", trace_id=trace_id, span_id=placed, key=order),
        event("ev-paid-" + trace_id[:8], "consumed", "shipping", start + 4, type="PaymentAuthorised",
              topic="payments.events", group="shipping", trace_id=trace_id, span_id=paid, key=order),
        event("ev-paid-" + trace_id[:8], "processed", "shipping", start + 4.5, type="PaymentAuthorised",
              topic="payments.events", group="shipping", trace_id=trace_id, span_id=paid, key=order),
    ]
    return reports


def cluster(name: str) -> Cluster:
    # Nothing connects to it: the read side only reads what the poller stored.
    return Cluster.objects.create(name=name, bootstrap_servers="127.0.0.1:9")


def group_with_lag(on: Cluster, name: str, topic_lags: dict[str, int | None], polled_at: datetime, *,
                   status: str = "ok", total_lag: int | None = None) -> ConsumerGroup:
    """A group's latest poll with one partition per topic, through the one poll builder
    (tests/lag_rows.py). ``total_lag`` alone (no topics) is a group whose poll stored no
    topic sample, for the read side's fallback to the group's total."""
    if topic_lags or total_lag is None:
        return lag_snapshot(on, name, polled_at, {topic: {0: lag} for topic, lag in topic_lags.items()}, status=status)
    return ConsumerGroup.objects.create(
        cluster=on, name=name, status=status, first_seen_at=polled_at - timedelta(hours=1), last_seen_at=polled_at,
        last_sample_at=polled_at, topics=[], total_lag=total_lag,
    )


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
