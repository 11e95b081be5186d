"""Read side of pathways and business transactions, shared by the API and the pages.

Pathway percentiles come from per-trace histogram buckets summed by the database
(GROUP BY pathway, bucket or minute, bucket): the same mergeable counts whatever the
range, so p95 over a week is exact to the bucket, never an average of percentiles.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, Q
from django.db.models.functions import Substr, TruncMinute

from monitor.choices import TransactionState
from monitor.models import BusinessFlow, BusinessTransaction, Pathway, TracePathway
from monitor.pathways import histogram
from monitor.pathways.transactions import shown_state

PERCENTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class PathwaySummary:
    id: int
    services: list[str]
    topics: list[str]
    label: str
    traces: int
    p50_seconds: float | None
    p95_seconds: float | None
    p99_seconds: float | None


@dataclass(frozen=True)
class HopSummary:
    service: str
    p50_seconds: float | None
    p95_seconds: float | None
    p99_seconds: float | None


@dataclass
class PathwayDetail:
    summary: PathwaySummary
    hops: list[HopSummary]
    minutes: list[tuple[datetime, int, float | None, float | None, float | None]] = field(default_factory=list)


def _in_range(since: datetime, until: datetime) -> Q:
    return Q(origin_at__gte=since, origin_at__lt=until)


def _quantiles(counts: dict[int, int]) -> tuple[float | None, float | None, float | None]:
    p50, p95, p99 = (histogram.percentile(counts, q) for q in PERCENTILES)
    return p50, p95, p99


def pathway_summaries(since: datetime, until: datetime, limit: int | None = None) -> list[PathwaySummary]:
    """Every route taken by a trace that started in the range, busiest first."""
    counts: dict[int, dict[int, int]] = defaultdict(dict)
    for pathway_id, bucket, n in (TracePathway.objects.filter(_in_range(since, until))
                                  .values_list("pathway_id", "latency_bucket").annotate(n=Count("id")).order_by()):
        counts[pathway_id][bucket] = n
    pathways = Pathway.objects.in_bulk(list(counts))
    summaries = [
        PathwaySummary(pid, list(p.services), list(p.topics), p.label, sum(counts[pid].values()),
                       *_quantiles(counts[pid]))
        for pid, p in pathways.items()
    ]
    summaries.sort(key=lambda s: (-s.traces, s.label))
    return summaries[:limit] if limit else summaries


def _minute(column: str) -> Any:
    if connection.vendor == "sqlite":
        return Substr(column, 1, 16)  # 'YYYY-MM-DD HH:MM' of the stored UTC text
    return TruncMinute(column)


def pathway_detail(pathway_id: int, since: datetime, until: datetime) -> PathwayDetail | None:
    pathway = Pathway.objects.filter(pk=pathway_id).first()
    if pathway is None:
        return None
    rows = TracePathway.objects.filter(_in_range(since, until), pathway_id=pathway_id)
    total: dict[int, int] = {}
    by_minute: dict[datetime, dict[int, int]] = defaultdict(dict)
    for minute, bucket, n in (rows.annotate(minute=_minute("origin_at"))
                              .values_list("minute", "latency_bucket").annotate(n=Count("id")).order_by()):
        if isinstance(minute, str):
            minute = datetime.fromisoformat(minute + ":00").replace(tzinfo=UTC)
        by_minute[minute][bucket] = n
        total[bucket] = total.get(bucket, 0) + n
    hop_counts: list[dict[int, int]] = [{} for _ in pathway.services]
    for buckets in rows.values_list("hop_buckets", flat=True).iterator(chunk_size=5000):
        for index, bucket in enumerate(buckets[: len(hop_counts)]):
            hop_counts[index][bucket] = hop_counts[index].get(bucket, 0) + 1
    summary = PathwaySummary(pathway.id, list(pathway.services), list(pathway.topics), pathway.label,
                             sum(total.values()), *_quantiles(total))
    return PathwayDetail(
        summary=summary,
        hops=[HopSummary(service, *_quantiles(counts)) for service, counts in zip(pathway.services, hop_counts)],
        minutes=[(minute, sum(c.values()), *_quantiles(c)) for minute, c in sorted(by_minute.items())],
    )


# --------------------------------------------------------------------------- transactions

@dataclass(frozen=True)
class TransactionRow:
    id: int
    name: str
    key: str
    trace_id: str
    state: str
    started_at: datetime
    ended_at: datetime | None
    last_event_type: str
    last_service: str
    last_event_at: datetime
    compensations: int
    slo_seconds: int


@dataclass(frozen=True)
class FlowSummary:
    name: str
    slo_seconds: int
    in_flight: int
    stuck: int
    completed: int
    compensated: int
    p50_seconds: float | None
    p95_seconds: float | None
    p99_seconds: float | None


def _past_slo(now: datetime) -> Q:
    """Transactions started before their own flow's SLO deadline (one clause per flow)."""
    clause = Q(pk__in=[])
    for flow_id, slo in BusinessFlow.objects.values_list("id", "slo_seconds"):
        clause |= Q(flow_id=flow_id, started_at__lt=now - timedelta(seconds=slo))
    return clause


def transactions(now: datetime, name: str = "", state: str = "", limit: int = 100,
                 after_id: int | None = None) -> list[TransactionRow]:
    """Newest first; ``state`` may be ``stuck`` (in flight past the flow's SLO) or
    ``in_flight`` (in flight within it)."""
    query = BusinessTransaction.objects.select_related("flow")
    if name:
        query = query.filter(flow__name=name)
    if state == TransactionState.STUCK:
        query = query.filter(_past_slo(now), state=TransactionState.IN_FLIGHT)
    elif state == TransactionState.IN_FLIGHT:
        query = query.filter(state=TransactionState.IN_FLIGHT).exclude(_past_slo(now))
    elif state:
        query = query.filter(state=state)
    if after_id is not None:
        query = query.filter(id__lt=after_id)
    return [
        TransactionRow(t.id, t.flow.name, t.key, t.trace_id, shown_state(t.state, t.started_at, t.flow.slo_seconds, now),
                       t.started_at, t.ended_at, t.last_event_type, t.last_service, t.last_event_at,
                       t.compensations, t.flow.slo_seconds)
        for t in query.order_by("-id")[:limit]
    ]


def stuck_counts(now: datetime) -> dict[str, int]:
    """Stuck transactions per flow (every enabled flow present, 0 when none)."""
    return {
        flow.name: BusinessTransaction.objects.filter(
            flow=flow, state=TransactionState.IN_FLIGHT, started_at__lt=now - timedelta(seconds=flow.slo_seconds),
        ).count()
        for flow in BusinessFlow.objects.filter(enabled=True)
    }


def flow_summaries(now: datetime, since: datetime) -> list[FlowSummary]:
    """Per flow: how many in flight, stuck, completed and compensated (started since
    ``since``), and completion-time percentiles of the completed ones."""
    result = []
    for flow in BusinessFlow.objects.order_by("name"):
        rows = BusinessTransaction.objects.filter(flow=flow, started_at__gte=since)
        deadline = now - timedelta(seconds=flow.slo_seconds)
        in_flight = rows.filter(state=TransactionState.IN_FLIGHT)
        counts: dict[int, int] = {}
        for started, ended in rows.filter(state=TransactionState.COMPLETED).values_list("started_at", "ended_at"):
            if ended is None:
                continue
            bucket = histogram.bucket_of((ended - started).total_seconds())
            counts[bucket] = counts.get(bucket, 0) + 1
        result.append(FlowSummary(
            flow.name, flow.slo_seconds,
            in_flight=in_flight.filter(started_at__gte=deadline).count(),
            stuck=in_flight.filter(started_at__lt=deadline).count(),
            completed=rows.filter(state=TransactionState.COMPLETED).count(),
            compensated=rows.filter(state=TransactionState.COMPENSATED).count(),
            p50_seconds=histogram.percentile(counts, 0.5), p95_seconds=histogram.percentile(counts, 0.95),
            p99_seconds=histogram.percentile(counts, 0.99),
        ))
    return result
