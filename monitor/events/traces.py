"""Read side of traces: the reports of one trace, trace search (trace id, event id or
aggregate key) and the list of recent traces. Ordering a trace causally is
:mod:`monitor.events.timeline`'s job.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection
from django.db.models import Count, Max, Min, Q

from monitor.choices import FAILURE_STAGES, Stage
from monitor.events.timeline import TraceEvent
from monitor.flow.queries import in_range
from monitor.models import Event, ExpectedSubscription

TRACE_EVENT_LIMIT = 5_000


def _trace_event(row: Event) -> TraceEvent:
    return TraceEvent(
        pk=row.pk, event_id=row.event_id, type=row.type, service=row.service, stage=row.stage,
        timestamp=row.timestamp, received_at=row.received_at, topic=row.topic, partition=row.partition,
        offset=row.offset, key=row.key, consumer_group=row.consumer_group, schema_version=row.schema_version,
        trace_id=row.trace_id, span_id=row.span_id, parent_span_id=row.parent_span_id, attributes=row.attributes,
    )


def trace_events(trace_id: str, limit: int = TRACE_EVENT_LIMIT) -> tuple[list[TraceEvent], bool]:
    """The reports of one trace (time order; the caller orders them causally) and
    whether the trace was cut at ``limit``."""
    rows = list(Event.objects.filter(trace_id=trace_id).order_by("timestamp", "id")[: limit + 1])
    return [_trace_event(r) for r in rows[:limit]], len(rows) > limit


def expected_groups(topics: Iterable[str]) -> dict[str, set[str]]:
    result: dict[str, set[str]] = defaultdict(set)
    for topic, group in ExpectedSubscription.objects.filter(topic__in=set(topics), enabled=True).values_list(
        "topic", "consumer_group"
    ):
        result[topic].add(group)
    return dict(result)


@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    first_at: datetime
    last_at: datetime
    events: int
    services: int
    failed: int
    dead_lettered: int
    first_type: str
    key: str = ""  # an aggregate key the trace's events carry (the largest, when several)

    @property
    def duration_seconds(self) -> float:
        return (self.last_at - self.first_at).total_seconds()


@dataclass(frozen=True)
class TraceFilters:
    service: str = ""
    topic: str = ""
    group: str = ""
    failed_only: bool = False

    def as_q(self) -> Q:
        q = Q()
        if self.service:
            q &= Q(service=self.service)
        if self.topic:
            q &= Q(topic=self.topic)
        if self.group:
            q &= Q(consumer_group=self.group)
        if self.failed_only:
            q &= Q(stage__in=FAILURE_STAGES)
        return q


def summarise_traces(trace_ids: list[str]) -> list[TraceSummary]:
    """One summary per trace: two queries, each linear in the traces' events (the first
    event's type is not a correlated subquery, which ran once per event)."""
    if not trace_ids:
        return []
    rows = (
        Event.objects.filter(trace_id__in=trace_ids).values("trace_id")
        .annotate(first_at=Min("timestamp"), last_at=Max("timestamp"), events=Count("id"),
                  services=Count("service", distinct=True),
                  failed=Count("id", filter=Q(stage=Stage.FAILED)),
                  dead_lettered=Count("id", filter=Q(stage=Stage.DEAD_LETTERED)),
                  key=Max("key", filter=~Q(key="")))
        .order_by()
    )
    first_types = _first_types(trace_ids)
    by_id = {row["trace_id"]: TraceSummary(**{**row, "key": row["key"] or ""},
                                           first_type=first_types.get(row["trace_id"], "")) for row in rows}
    return [by_id[t] for t in trace_ids if t in by_id]


TRACE_SORTS = ("recent", "duration")


def sort_summaries(summaries: list[TraceSummary], sort: str) -> list[TraceSummary]:
    """The listed traces most recent first (as found) or longest first (``duration``)."""
    if sort == "duration":
        return sorted(summaries, key=lambda s: (-s.duration_seconds, s.trace_id))
    return summaries


def _first_types(trace_ids: list[str]) -> dict[str, str]:
    """The type of each trace's first report (by time, then arrival)."""
    ordered = Event.objects.filter(trace_id__in=trace_ids).order_by("trace_id", "timestamp", "id")
    if connection.vendor == "postgresql":
        return dict(ordered.distinct("trace_id").values_list("trace_id", "type"))
    first: dict[str, str] = {}
    for trace_id, event_type in ordered.values_list("trace_id", "type").iterator(chunk_size=5000):
        first.setdefault(trace_id, event_type)
    return first


def recent_trace_ids(since: datetime, until: datetime, filters: TraceFilters, limit: int = 50) -> list[str]:
    """The traces most recently active in the range: the newest matching reports are
    read through the time index, then de-duplicated, so the cost does not grow with
    the range."""
    candidates = (
        Event.objects.filter(in_range(since, until), filters.as_q()).exclude(trace_id="")
        .order_by("-timestamp").values_list("trace_id", flat=True)[: limit * 20]
    )
    return list(dict.fromkeys(candidates))[:limit]


@dataclass
class TraceSearch:
    """What a search box query found: one trace to open, or a list to choose from."""

    query: str
    trace_id: str | None = None
    matched: str = ""  # "trace", "event", "key" or "" (nothing)
    traces: list[TraceSummary] = field(default_factory=list)
    untraced_events: int = 0


def search_traces(query: str, limit: int = 50) -> TraceSearch:
    """A trace id, else an event id, else an aggregate key (newest first, any time)."""
    text = query.strip()
    result = TraceSearch(query=text)
    if not text:
        return result
    for candidate in dict.fromkeys([text, text.lower()]):
        if Event.objects.filter(trace_id=candidate).exists():
            result.trace_id, result.matched = candidate, "trace"
            return result
    by_event = Event.objects.filter(event_id=text)
    if by_event.exists():
        result.matched = "event"
        trace_ids = list(dict.fromkeys(by_event.exclude(trace_id="").order_by("timestamp").values_list(
            "trace_id", flat=True)[:limit]))
        result.untraced_events = by_event.filter(trace_id="").count()
        if len(trace_ids) == 1 and not result.untraced_events:
            result.trace_id = trace_ids[0]
        result.traces = summarise_traces(trace_ids)
        return result
    by_key = Event.objects.filter(key=text)
    trace_ids = list(dict.fromkeys(
        by_key.exclude(trace_id="").order_by("-timestamp").values_list("trace_id", flat=True)[: limit * 20]
    ))[:limit]
    if trace_ids or by_key.exists():
        result.matched = "key"
        result.traces = summarise_traces(trace_ids)
        result.untraced_events = by_key.filter(trace_id="").count()
        if len(trace_ids) == 1 and not result.untraced_events:
            result.trace_id = trace_ids[0]  # one order, one trace: open it
    return result


