"""Builders of event reports for pathway, transaction and outbox tests: stored through
the same validation and idempotent store as the ingest API."""
import uuid
from datetime import timedelta

from django.utils import timezone

from monitor.events.config import IngestLimits
from monitor.events.store import forget_registry_cache, ingest_payload

LIMITS = IngestLimits(max_events=1000, max_bytes=5 * 1024 * 1024, max_attributes_bytes=8192)


def report(service, stage, when, *, type="OrderPlaced", topic="orders.events", trace_id="", key="", group=""):
    event = {"event_id": uuid.uuid4().hex, "type": type, "service": service, "stage": stage,
             "timestamp": when.isoformat().replace("+00:00", "Z"), "topic": topic}
    if trace_id:
        event["trace_id"], event["span_id"] = trace_id, uuid.uuid4().hex[:16]
    if key:
        event["key"] = key
    if group:
        event["consumer_group"] = group
    return event


def order_trace(start, payment_seconds, shipping_seconds, key=""):
    trace = uuid.uuid4().hex
    return trace, [
        report("orders", "published", start, trace_id=trace, key=key),
        report("payments", "processed", start + timedelta(seconds=payment_seconds), type="OrderPlaced",
               trace_id=trace, key=key, group="payments"),
        report("payments", "published", start + timedelta(seconds=payment_seconds), type="PaymentTaken",
               topic="payments.events", trace_id=trace, key=key),
        report("shipping", "processed", start + timedelta(seconds=shipping_seconds), type="PaymentTaken",
               topic="payments.events", trace_id=trace, key=key, group="shipping"),
    ]


def store(events, now=None):
    """Stored as the ingest API stores them (the service registry's in-process cache is
    forgotten first: each test starts from an empty database)."""
    forget_registry_cache()
    now = now or timezone.now()
    for start in range(0, len(events), 1000):
        ingest_payload({"events": events[start:start + 1000]}, now, LIMITS)


