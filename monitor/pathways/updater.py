"""Keeps pathways and business transactions up to date from the events table.

Incremental and idempotent: every run reads the events added since the cursor, then
recomputes from scratch every trace and every transaction key those events touch (so a
run repeated, or an event read twice, changes nothing). The cursor trails ingest by
``SETTLE_SECONDS``: rows of an ingest transaction that committed late, with a lower id
than rows already read, are still read on the next run. Every run reads everything up
to now, so pathways and transactions reflect every event ingested before it.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import transaction

from monitor.choices import TransactionKey
from monitor.lag.series import EpochSeconds
from monitor.models import BusinessFlow, BusinessTransaction, Event, Pathway, ProcessingCursor, TracePathway
from monitor.pathways import histogram
from monitor.pathways.routes import RouteEvent, TraceRoute, trace_route
from monitor.pathways.transactions import FlowSpec, KeyEvent, transaction_state

log = logging.getLogger(__name__)

CURSOR = "pathways"
SETTLE_SECONDS = 60
BATCH = 20_000
CHUNK = 1_000


@dataclass
class UpdateResult:
    events: int = 0
    traces: int = 0
    transactions: int = 0


def _chunks(items: Iterable[str], size: int = CHUNK) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _moment(epoch: float) -> datetime:
    """Timestamps are read as epoch seconds: parsing a float is ~50x cheaper than a
    timestamp's text, which dominated the cost of a run (to the microsecond, as stored)."""
    return datetime.fromtimestamp(float(epoch), tz=UTC)


def flow_spec(flow: BusinessFlow) -> FlowSpec:
    return FlowSpec(flow.name, frozenset(flow.start_types), frozenset(flow.success_types),
                    frozenset(flow.compensated_types or ()), float(flow.slo_seconds))


def update(now: datetime, since_id: int | None = None) -> UpdateResult:
    """Read the events added since the cursor (or since ``since_id``) and bring the
    affected traces' pathways and the affected transactions up to date."""
    cursor, _ = ProcessingCursor.objects.get_or_create(name=CURSOR)
    last_id = cursor.position if since_id is None else since_id
    settled_until = last_id
    settled = True
    cutoff = now - timedelta(seconds=SETTLE_SECONDS)
    result = UpdateResult()
    flows = list(BusinessFlow.objects.filter(enabled=True))
    while True:
        rows = list(Event.objects.filter(id__gt=last_id).order_by("id")
                    .values_list("id", "trace_id", "key", "received_at")[:BATCH])
        if not rows:
            break
        trace_ids = {trace for _, trace, _, _ in rows if trace}
        keys = {key for _, _, key, _ in rows if key}
        result.traces += update_traces(trace_ids, now)
        result.transactions += update_transactions(flows, keys, trace_ids)
        for event_id, _, _, received_at in rows:
            if settled and received_at <= cutoff:
                settled_until = event_id
            else:
                settled = False
        last_id = rows[-1][0]
        result.events += len(rows)
    if since_id is None and settled_until != cursor.position:
        ProcessingCursor.objects.filter(pk=cursor.pk).update(position=settled_until, updated_at=now)
    return result


def rebuild(now: datetime) -> UpdateResult:
    """Everything from scratch (the reference the incremental runs must equal)."""
    with transaction.atomic():
        TracePathway.objects.all().delete()
        BusinessTransaction.objects.all().delete()
        ProcessingCursor.objects.filter(name=CURSOR).delete()
    return update(now)


# --------------------------------------------------------------------------- pathways

def update_traces(trace_ids: Iterable[str], now: datetime) -> int:
    count = 0
    for chunk in _chunks(sorted(trace_ids)):
        by_trace: dict[str, list[RouteEvent]] = defaultdict(list)
        rows = Event.objects.filter(trace_id__in=chunk).annotate(epoch=EpochSeconds("timestamp")).values_list(
            "trace_id", "service", "stage", "epoch", "topic")
        for trace_id, service, stage, epoch, topic in rows:
            by_trace[trace_id].append(RouteEvent(service, stage, _moment(epoch), topic))
        routes = {trace_id: route for trace_id, events in by_trace.items()
                  if (route := trace_route(events)) is not None}
        _store_routes(routes, now)
        stale = set(chunk) - set(routes)
        if stale:
            TracePathway.objects.filter(trace_id__in=stale).delete()
        count += len(routes)
    return count


def _pathway_ids(routes: Sequence[TraceRoute], now: datetime) -> dict[str, int]:
    wanted = {r.route.fingerprint: r.route for r in routes}
    known = dict(Pathway.objects.filter(fingerprint__in=wanted).values_list("fingerprint", "id"))
    missing = [Pathway(fingerprint=fp, services=list(route.services), topics=list(route.topics),
                       label=route.label[:1000], first_seen_at=now)
               for fp, route in wanted.items() if fp not in known]
    if missing:
        Pathway.objects.bulk_create(missing, ignore_conflicts=True)
        known = dict(Pathway.objects.filter(fingerprint__in=wanted).values_list("fingerprint", "id"))
    return known


def _store_routes(routes: dict[str, TraceRoute], now: datetime) -> None:
    if not routes:
        return
    ids = _pathway_ids(list(routes.values()), now)
    rows = [
        TracePathway(
            trace_id=trace_id, pathway_id=ids[route.route.fingerprint], origin_at=route.origin_at,
            ended_at=route.ended_at, latency_seconds=route.latency_seconds,
            latency_bucket=histogram.bucket_of(route.latency_seconds),
            hop_buckets=[histogram.bucket_of(seconds) for seconds in route.hop_seconds],
        )
        for trace_id, route in routes.items()
    ]
    TracePathway.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["trace_id"],
        update_fields=["pathway", "origin_at", "ended_at", "latency_seconds", "latency_bucket", "hop_buckets"],
    )


# --------------------------------------------------------------------------- transactions

def update_transactions(flows: Sequence[BusinessFlow], keys: set[str], trace_ids: set[str]) -> int:
    count = 0
    for flow in flows:
        spec = flow_spec(flow)
        by_trace = flow.key == TransactionKey.TRACE_ID
        identifiers = trace_ids if by_trace else keys
        field = "trace_id" if by_trace else "key"
        for chunk in _chunks(sorted(identifiers)):
            events: dict[str, list[KeyEvent]] = defaultdict(list)
            rows = Event.objects.filter(**{f"{field}__in": chunk}).annotate(epoch=EpochSeconds("timestamp")) \
                .values_list(field, "type", "service", "epoch", "trace_id")
            for identifier, event_type, service, epoch, trace_id in rows:
                events[identifier].append(KeyEvent(event_type, service, _moment(epoch), trace_id))
            transactions = []
            for identifier, items in events.items():
                view = transaction_state(spec, items)
                if view is None:
                    continue
                transactions.append(BusinessTransaction(
                    flow=flow, key=identifier[:255], trace_id=view.trace_id, state=view.state,
                    started_at=view.started_at, ended_at=view.ended_at, last_event_type=view.last_event_type,
                    last_service=view.last_service, last_event_at=view.last_event_at,
                    compensations=view.compensations,
                ))
            if transactions:
                BusinessTransaction.objects.bulk_create(
                    transactions, update_conflicts=True, unique_fields=["flow", "key"],
                    update_fields=["trace_id", "state", "started_at", "ended_at", "last_event_type",
                                   "last_service", "last_event_at", "compensations"],
                )
            count += len(transactions)
    return count


def backfill_flow(flow: BusinessFlow) -> int:
    """A new or changed flow: recompute its transactions from every stored event of its
    start types (the incremental runs only see events added after this)."""
    field = "trace_id" if flow.key == TransactionKey.TRACE_ID else "key"
    BusinessTransaction.objects.filter(flow=flow).delete()
    identifiers = set(Event.objects.filter(type__in=list(flow.start_types)).exclude(**{field: ""})
                      .values_list(field, flat=True).distinct())
    if not flow.enabled:
        return 0
    return update_transactions([flow], identifiers, identifiers)
