"""Read side of event data: flow edges, trace timelines, service and topic statistics.

Every query is an aggregate the database does (GROUP BY with filtered counts, one
percentile per edge) bounded by the time range, so a page costs a handful of queries
whatever the number of events. The rules applied to the results live in the pure
modules :mod:`dashboards.flow_model` and :mod:`dashboards.trace_timeline`.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, OuterRef, Q, Subquery, Window
from django.db.models.functions import RowNumber, TruncHour, TruncMinute

from dashboards.flow_model import (
    ConsumeAggregate,
    FlowGraph,
    GroupLag,
    KeyShare,
    PartitionSkew,
    PublishAggregate,
    Tolerances,
    build_flow_graph,
    hot_keys,
    partition_skew,
)
from dashboards.time_range import TimeRange, parse_time_range
from dashboards.trace_timeline import TraceEvent
from monitor.choices import AlertState, FlowEdgeKind, GroupStatus, Stage
from monitor.models import Alert, ConsumerGroup, Event, ExpectedSubscription, Finding, Service, Topic, TopicLagSample

log = logging.getLogger(__name__)
T = TypeVar("T")

FAILURE_STAGES = (Stage.FAILED, Stage.DEAD_LETTERED)
RECEIPT_STAGES = (Stage.CONSUMED, Stage.PROCESSED)
# A consumer far behind receives events published long before the range starts.
PUBLISH_LOOKBACK = timedelta(days=1)
TRACE_EVENT_LIMIT = 5_000
EXAMPLES_PER_EDGE = 3
HASH_BUCKETS = 1024
LATENCY_SAMPLE_PER_TOPIC = 5_000  # receipts measured per topic; p95 of 5,000 is stable to a few %
ANALYTIC_WORK_MEM = "32MB"
FIXED_RANGE_CACHE_SECONDS = 300
WARM_RANGES = ("24h", "7d")  # the ranges too long to compute while a page waits
FLOW_CACHE = "flow:data:v3"
_GROUP_STATUS_RANK = {
    GroupStatus.DATA_LOSS: 9, GroupStatus.STOPPED: 8, GroupStatus.STALLED: 7, GroupStatus.GROWING: 6,
    GroupStatus.REWIND: 5, GroupStatus.EMPTY: 4, GroupStatus.OK: 3, GroupStatus.IDLE: 2,
    GroupStatus.GONE: 1, GroupStatus.UNKNOWN: 0,
}


def _in_range(since: datetime, until: datetime) -> Q:
    return Q(timestamp__gte=since, timestamp__lt=until)


def _stage_counts() -> dict[str, Count]:
    return {
        "published": Count("id", filter=Q(stage=Stage.PUBLISHED)),
        "consumed": Count("id", filter=Q(stage=Stage.CONSUMED)),
        "processed": Count("id", filter=Q(stage=Stage.PROCESSED)),
        "failed": Count("id", filter=Q(stage=Stage.FAILED)),
        "dead_lettered": Count("id", filter=Q(stage=Stage.DEAD_LETTERED)),
    }


# --------------------------------------------------------------------------- caching

@dataclass
class CacheOutcome:
    """Whether Redis answered; a page shows a banner instead of failing when it did not."""

    available: bool = True


def cached(key: str, seconds: int, compute: Callable[[], T], outcome: CacheOutcome | None = None,
           accept: Callable[[T], bool] | None = None) -> T:
    """``compute()`` through the cache (a cached value ``accept`` rejects counts as a
    miss); a cache outage only costs speed."""
    try:
        value = cache.get(key)
    except Exception as exc:  # noqa: BLE001 - any Redis failure: compute without the cache
        log.warning("cache unavailable (%s); computing %s directly", type(exc).__name__, key.split(":")[0])
        if outcome is not None:
            outcome.available = False
        return compute()
    if value is not None and (accept is None or accept(value)):
        return value
    value = compute()
    try:
        cache.set(key, value, seconds)
    except Exception:  # noqa: BLE001
        if outcome is not None:
            outcome.available = False
    return value


# --------------------------------------------------------------------------- flow graph

@dataclass
class FlowData:
    """Everything the flow graph is built from; cached as one value."""

    since: datetime
    until: datetime
    publishes: list[PublishAggregate]
    consumes: list[ConsumeAggregate]
    p95: dict[tuple[str, str, str], float]
    lags: dict[tuple[str, str], GroupLag]
    examples: dict[tuple[str, str, str], list[str]]

    @property
    def span_seconds(self) -> float:
        return (self.until - self.since).total_seconds()


def edge_aggregates(since: datetime, until: datetime,
                    extra: Q | None = None) -> tuple[list[PublishAggregate], list[ConsumeAggregate]]:
    """One GROUP BY (service, topic, consumer_group) with a count per stage.

    Failures reported without a consumer group go to the consume edge when that row also
    consumed, else to the publish edge when it published (a failed publication)."""
    rows = (
        Event.objects.filter(_in_range(since, until), extra or Q()).exclude(topic="")
        .values("service", "topic", "consumer_group").annotate(**_stage_counts()).order_by()
    )
    publishes: list[PublishAggregate] = []
    consumes: list[ConsumeAggregate] = []
    for row in rows:
        receives = row["consumed"] + row["processed"]
        failures_to_publisher = not row["consumer_group"] and not receives and row["published"] > 0
        if row["published"] and not row["consumer_group"]:
            publishes.append(PublishAggregate(
                service=row["service"], topic=row["topic"], published=row["published"],
                failed=row["failed"] if failures_to_publisher else 0,
                dead_lettered=row["dead_lettered"] if failures_to_publisher else 0,
            ))
        if not failures_to_publisher and (receives or row["failed"] or row["dead_lettered"]):
            consumes.append(ConsumeAggregate(
                topic=row["topic"], service=row["service"], consumer_group=row["consumer_group"],
                consumed=row["consumed"], processed=row["processed"], failed=row["failed"],
                dead_lettered=row["dead_lettered"],
            ))
    return publishes, consumes


def percentile(values: list[float], fraction: float) -> float | None:
    """Linear interpolation between ranks, like PostgreSQL's ``percentile_cont``."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def sample_keep(receipts_by_topic: Mapping[str, int], target: int = LATENCY_SAMPLE_PER_TOPIC) -> dict[str, int]:
    """Per topic, how many of 1024 hash buckets of event ids to measure so that about
    ``target`` receipts per topic are joined: exact for quiet topics, bounded work for
    busy ones. Both reports of one event fall in the same bucket."""
    return {topic: max(1, min(HASH_BUCKETS, math.ceil(HASH_BUCKETS * target / receipts)))
            for topic, receipts in receipts_by_topic.items() if receipts > 0}


def p95_latencies(since: datetime, until: datetime, service: str | None = None,
                  receipts_by_topic: Mapping[str, int] | None = None,
                  portable: bool | None = None) -> dict[tuple[str, str, str], float]:
    """p95 of (first receipt by a consumer) - (first publication) of the same event on
    the same topic, per (topic, service, consumer_group), optionally of one consuming
    service. PostgreSQL computes it in one statement over a stratified sample of event
    ids when ``receipts_by_topic`` says how busy each topic is (see :func:`sample_keep`);
    other databases stream every latency (the demo's SQLite)."""
    if portable is None:
        portable = connection.vendor != "postgresql"
    if portable:
        return _p95_portable(since, until, Q(service=service) if service is not None else Q())
    keep = sample_keep(receipts_by_topic) if receipts_by_topic is not None else {}
    if receipts_by_topic is not None and not keep:
        return {}
    table = connection.ops.quote_name(Event._meta.db_table)
    params: list[Any] = []
    if keep:
        rates = "WITH rates(topic, keep) AS (SELECT * FROM unnest(%s::text[], %s::int[])), "
        params += [list(keep), list(keep.values())]
        join = "JOIN rates ON rates.topic = e.topic"
        sampled = f"AND (hashtext(e.event_id) & {HASH_BUCKETS - 1}) < rates.keep"
    else:
        rates, join, sampled = "WITH ", "", ""
    service_filter = "AND e.service = %s" if service is not None else ""
    sql = f"""
        {rates}published AS (
            SELECT e.event_id, e.topic, MIN(e.timestamp) AS published_at FROM {table} e {join}
            WHERE e.stage = %s AND e.timestamp >= %s AND e.timestamp < %s AND e.topic <> '' {sampled}
            GROUP BY e.event_id, e.topic
        ), received AS (
            SELECT e.event_id, e.topic, e.service, e.consumer_group, MIN(e.timestamp) AS received_at
            FROM {table} e {join}
            WHERE e.stage IN (%s, %s) AND e.timestamp >= %s AND e.timestamp < %s AND e.topic <> ''
                  {sampled} {service_filter}
            GROUP BY e.event_id, e.topic, e.service, e.consumer_group
        )
        SELECT r.topic, r.service, r.consumer_group, percentile_cont(0.95) WITHIN GROUP (
            ORDER BY GREATEST(0, EXTRACT(EPOCH FROM (r.received_at - p.published_at))))
        FROM received r JOIN published p ON p.event_id = r.event_id AND p.topic = r.topic
        GROUP BY r.topic, r.service, r.consumer_group
    """
    params += [Stage.PUBLISHED.value, since - PUBLISH_LOOKBACK, until, *[s.value for s in RECEIPT_STAGES], since, until]
    if service is not None:
        params.append(service)
    with transaction.atomic(), connection.cursor() as cursor:
        # The joins and the percentile sort spill to disk with the default 4 MB.
        cursor.execute(f"SET LOCAL work_mem = '{ANALYTIC_WORK_MEM}'")
        cursor.execute(sql, params)
        return {(topic, service, group): float(p95) for topic, service, group, p95 in cursor.fetchall()}


def _p95_portable(since: datetime, until: datetime, extra: Q) -> dict[tuple[str, str, str], float]:
    published_at = (
        Event.objects.filter(event_id=OuterRef("event_id"), topic=OuterRef("topic"), stage=Stage.PUBLISHED,
                             timestamp__gte=since - PUBLISH_LOOKBACK, timestamp__lt=until)
        .order_by("timestamp").values("timestamp")[:1]
    )
    rows = (
        Event.objects.filter(_in_range(since, until), extra, stage__in=RECEIPT_STAGES).exclude(topic="")
        .values("topic", "service", "consumer_group", "event_id")
        .annotate(received_at=Min("timestamp"), published_at=Subquery(published_at))
        .exclude(published_at=None).order_by()
    )
    latencies: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for row in rows.iterator(chunk_size=5_000):
        seconds = (row["received_at"] - row["published_at"]).total_seconds()
        latencies[(row["topic"], row["service"], row["consumer_group"])].append(max(0.0, seconds))
    return {key: percentile(values, 0.95) for key, values in latencies.items()}  # type: ignore[misc]


def group_lags(groups: Iterable[str], topics: Iterable[str], since: datetime, until: datetime,
               at_present: bool) -> dict[tuple[str, str], GroupLag]:
    """Lag of each consumer group (matched by name on every cluster) on each topic.

    For a live range: the latest poll (falling back to the group's total lag when the
    poller has no per-topic sample). For a past range: the highest lag seen in it."""
    names, topic_names = sorted(set(filter(None, groups))), sorted(set(filter(None, topics)))
    if not names or not topic_names:
        return {}
    lag_sum: dict[tuple[str, str], int | None] = {}
    statuses: dict[tuple[str, str], str] = {}
    clusters: dict[tuple[str, str], set[str]] = defaultdict(set)

    def add(key: tuple[str, str], lag: int | None, status: str | None, cluster: str) -> None:
        if lag is not None:
            lag_sum[key] = (lag_sum.get(key) or 0) + lag
        else:
            lag_sum.setdefault(key, None)
        if status is not None and _GROUP_STATUS_RANK.get(status, 0) >= _GROUP_STATUS_RANK.get(statuses.get(key), -1):
            statuses[key] = status
        clusters[key].add(cluster)

    if at_present:
        live = ConsumerGroup.objects.filter(name__in=names, gone_at=None)
        samples = TopicLagSample.objects.filter(
            group__in=live, topic__in=topic_names, resolution=0, polled_at=F("group__last_sample_at")
        ).values_list("group_id", "group__name", "topic", "lag", "group__status", "group__cluster__name")
        sampled_groups = set()
        for group_id, name, topic, lag, status, cluster in samples:
            sampled_groups.add(group_id)
            add((name, topic), lag, status, cluster)
        for group in live.exclude(id__in=sampled_groups).select_related("cluster"):
            for topic in topic_names:
                if _group_reads(group, topic):
                    add((group.name, topic), group.total_lag, group.status, group.cluster.name)
    else:
        rows = (
            TopicLagSample.objects.filter(group__name__in=names, topic__in=topic_names,
                                          polled_at__gte=since, polled_at__lt=until)
            .values("group_id", "group__name", "topic", "group__cluster__name")
            .annotate(highest=Max("lag")).order_by()
        )
        for row in rows:
            add((row["group__name"], row["topic"]), row["highest"], None, row["group__cluster__name"])
    return {
        key: GroupLag(lag=lag, status=statuses.get(key, GroupStatus.UNKNOWN), clusters=tuple(sorted(clusters[key])))
        for key, lag in lag_sum.items()
    }


def _group_reads(group: ConsumerGroup, topic: str) -> bool:
    """Whether the group's latest snapshot lists the topic (names or {"topic": ...})."""
    for entry in group.topics or []:
        name = (entry.get("topic") or entry.get("name")) if isinstance(entry, dict) else entry
        if name == topic:
            return True
    return False


def failed_examples(since: datetime, until: datetime, per_edge: int = EXAMPLES_PER_EDGE,
                    extra: Q | None = None) -> dict[tuple[str, str, str], list[str]]:
    """The latest traces that failed on each (service, topic, consumer_group)."""
    rows = (
        Event.objects.filter(_in_range(since, until), extra or Q(), stage__in=FAILURE_STAGES)
        .exclude(trace_id="").exclude(topic="")
        .values("service", "topic", "consumer_group", "trace_id").annotate(last_at=Max("timestamp"))
        .annotate(rank=Window(RowNumber(), partition_by=[F("service"), F("topic"), F("consumer_group")],
                              order_by=[F("last_at").desc(), F("trace_id")]))
        .filter(rank__lte=per_edge)
        .values_list("service", "topic", "consumer_group", "trace_id", "rank")
    )
    examples: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for service, topic, group, trace_id, _ in sorted(rows, key=lambda r: (r[:3], r[4])):
        examples[(service, topic, group)].append(trace_id)
    return dict(examples)


def flow_data(since: datetime, until: datetime, at_present: bool) -> FlowData:
    publishes, consumes = edge_aggregates(since, until)
    receipts: dict[str, int] = defaultdict(int)
    for row in consumes:
        receipts[row.topic] += row.consumed + row.processed
    return FlowData(
        since=since,
        until=until,
        publishes=publishes,
        consumes=consumes,
        p95=p95_latencies(since, until, receipts_by_topic=receipts),
        lags=group_lags((c.consumer_group for c in consumes), (c.topic for c in consumes), since, until, at_present),
        examples=failed_examples(since, until),
    )


def live_max_age_seconds(span_seconds: float) -> float:
    """How old a live range's numbers may be: a thousandth of the range (5 s for an
    hour, 10 min for a week: less than a pixel of its charts)."""
    return max(5.0, span_seconds / 1000)


def cached_for_range(name: str, time_range: TimeRange, compute: Callable[[], T],
                     outcome: CacheOutcome | None = None) -> tuple[datetime, datetime, T]:
    """``compute()`` for a time range through the cache, with the window it describes.
    A live range reuses a value up to :func:`live_max_age_seconds` old; a fixed window
    is cached as is."""
    key = f"{name}:{range_cache_suffix(time_range)}"

    def timed_compute() -> tuple[datetime, datetime, T]:
        return time_range.since, time_range.until, compute()

    if not time_range.is_live:
        return cached(key, FIXED_RANGE_CACHE_SECONDS, timed_compute, outcome)
    max_age = live_max_age_seconds(time_range.seconds)
    oldest = time_range.until - timedelta(seconds=max_age)
    return cached(key, max(60, int(3 * max_age)), timed_compute, outcome, accept=lambda value: value[1] >= oldest)


def range_cache_suffix(time_range: TimeRange) -> str:
    if time_range.is_live:
        return f"live:{time_range.key}"
    return f"{time_range.since.timestamp():.3f}:{time_range.until.timestamp():.3f}"


def cached_flow_data(time_range: TimeRange, outcome: CacheOutcome | None = None) -> FlowData:
    """The flow graph's numbers (kept warm for long live ranges by :func:`refresh_flow_cache`)."""
    return cached_for_range(
        FLOW_CACHE, time_range, lambda: flow_data(time_range.since, time_range.until, time_range.is_live), outcome
    )[2]


def refresh_flow_cache(range_keys: Iterable[str], now: datetime) -> dict[str, float]:
    """Recompute the flow data of live ranges (a periodic task keeps the long ones warm
    so no page waits for a week of events); returns seconds spent per range."""
    spent = {}
    for key in range_keys:
        started = time.monotonic()
        time_range = parse_time_range({"range": key}, now)
        data = flow_data(time_range.since, time_range.until, True)
        cache.set(f"{FLOW_CACHE}:{range_cache_suffix(time_range)}", (time_range.since, time_range.until, data),
                  max(60, int(3 * live_max_age_seconds(time_range.seconds))))
        spent[key] = time.monotonic() - started
    return spent


def flow_graph(time_range: TimeRange, tolerances: Tolerances, outcome: CacheOutcome | None = None) -> FlowGraph:
    data = cached_flow_data(time_range, outcome)
    graph = build_flow_graph(data.publishes, data.consumes, data.span_seconds, data.p95, data.lags, tolerances)
    graph.since, graph.until = data.since, data.until
    for edge in graph.edges:
        group = edge.consumer_group if edge.kind == FlowEdgeKind.CONSUME else ""
        edge.examples = list(data.examples.get((edge.service, edge.topic, group), []))
    return graph


# --------------------------------------------------------------------------- traces

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
    if not trace_ids:
        return []
    first_type = Event.objects.filter(trace_id=OuterRef("trace_id")).order_by("timestamp", "id").values("type")[:1]
    rows = (
        Event.objects.filter(trace_id__in=trace_ids).values("trace_id")
        .annotate(first_at=Min("timestamp"), last_at=Max("timestamp"), events=Count("id"),
                  services=Count("service", distinct=True),
                  failed=Count("id", filter=Q(stage=Stage.FAILED)),
                  dead_lettered=Count("id", filter=Q(stage=Stage.DEAD_LETTERED)),
                  first_type=Subquery(first_type))
        .order_by()
    )
    by_id = {row["trace_id"]: TraceSummary(**row) for row in rows}
    return [by_id[t] for t in trace_ids if t in by_id]


def recent_trace_ids(since: datetime, until: datetime, filters: TraceFilters, limit: int = 50) -> list[str]:
    """The traces most recently active in the range: the newest matching reports are
    read through the time index, then de-duplicated, so the cost does not grow with
    the range."""
    candidates = (
        Event.objects.filter(_in_range(since, until), filters.as_q()).exclude(trace_id="")
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


# --------------------------------------------------------------------------- service and topic pages

def rate_bucket_seconds(since: datetime, until: datetime) -> int:
    """Minutes for ranges up to 6 h, hours beyond (at most 744 points for 31 days)."""
    return 60 if (until - since) <= timedelta(hours=6) else 3600


def rate_series(since: datetime, until: datetime, where: Q) -> dict[str, list[tuple[datetime, int]]]:
    """Reports per stage per time bucket (see :func:`rate_bucket_seconds`)."""
    trunc = TruncMinute if rate_bucket_seconds(since, until) == 60 else TruncHour
    rows = (
        Event.objects.filter(_in_range(since, until), where)
        .annotate(bucket=trunc("timestamp")).values("bucket", "stage").annotate(events=Count("id"))
        .order_by("bucket")
    )
    series: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for row in rows:
        series[row["stage"]].append((row["bucket"], row["events"]))
    return dict(series)


@dataclass(frozen=True)
class GroupRow:
    cluster: str
    name: str
    status: str
    total_lag: int | None
    max_time_lag_seconds: float | None


def consumer_groups(names: Iterable[str]) -> list[GroupRow]:
    return [
        GroupRow(g.cluster.name, g.name, g.status, g.total_lag, g.max_time_lag_seconds)
        for g in ConsumerGroup.objects.filter(name__in=set(names), gone_at=None).select_related("cluster")
    ]


def open_alerts(groups: Iterable[str], topics: Iterable[str], since: datetime) -> list[Alert]:
    """Alerts on these groups or topics that are open, or resolved within the range."""
    about = Q(group__in=set(groups)) | Q(topic__in=set(topics))
    current = Q(state__in=[AlertState.PENDING, AlertState.FIRING]) | Q(resolved_at__gte=since)
    return list(Alert.objects.filter(about, current).select_related("rule").order_by("-started_at")[:50])


@dataclass
class ServiceStats:
    name: str
    known: bool
    publishes: list[dict[str, Any]]
    consumes: list[dict[str, Any]]
    groups: list[GroupRow]
    lags: dict[tuple[str, str], GroupLag]
    p95: dict[tuple[str, str, str], float]
    recent_failures: list[Event]
    alerts: list[Alert]
    findings: list[Finding]
    series: dict[str, list[tuple[datetime, int]]]


def service_stats(name: str, since: datetime, until: datetime, at_present: bool) -> ServiceStats:
    base = Event.objects.filter(_in_range(since, until), service=name)
    publishes = list(
        base.filter(stage=Stage.PUBLISHED).values("topic", "type")
        .annotate(events=Count("id"), last_at=Max("timestamp")).order_by("topic", "type")
    )
    consumes = list(
        base.exclude(stage=Stage.PUBLISHED).values("topic", "consumer_group")
        .annotate(**_stage_counts(), last_at=Max("timestamp")).order_by("topic", "consumer_group")
    )
    span = max((until - since).total_seconds(), 1e-9)
    for row in publishes:
        row["rate_per_second"] = row["events"] / span
    for row in consumes:
        aggregate = ConsumeAggregate(row["topic"], name, row["consumer_group"], row["consumed"], row["processed"],
                                     row["failed"], row["dead_lettered"])
        row["deliveries"] = aggregate.deliveries
        row["rate_per_second"] = aggregate.deliveries / span
        failed = row["failed"] + row["dead_lettered"]
        row["failed_share"] = min(1.0, failed / aggregate.deliveries) if aggregate.deliveries else 0.0
    group_names = {row["consumer_group"] for row in consumes if row["consumer_group"]}
    topics = {row["topic"] for row in publishes + consumes if row["topic"]}
    return ServiceStats(
        name=name,
        known=Service.objects.filter(name=name).exists() or Event.objects.filter(service=name).exists(),
        publishes=publishes,
        consumes=consumes,
        groups=consumer_groups(group_names),
        lags=group_lags(group_names, topics, since, until, at_present),
        p95=p95_latencies(since, until, service=name),
        recent_failures=list(base.filter(stage__in=FAILURE_STAGES).order_by("-timestamp")[:20]),
        alerts=open_alerts(group_names, (), since),
        findings=list(Finding.objects.filter(Q(service=name) | Q(consumer_group__in=group_names))[:20]),
        series=rate_series(since, until, Q(service=name)),
    )


@dataclass
class TopicStats:
    name: str
    known: bool
    producers: list[dict[str, Any]]
    consumers: list[dict[str, Any]]
    lags: dict[tuple[str, str], GroupLag]
    types: list[dict[str, Any]]
    skew: PartitionSkew
    keys: list[KeyShare]
    keyed_events: int
    findings: list[Finding]
    alerts: list[Alert]
    lag_pages: list[tuple[str, str]]  # (cluster, topic) known to the poller
    series: dict[str, list[tuple[datetime, int]]]


def topic_stats(name: str, since: datetime, until: datetime, at_present: bool) -> TopicStats:
    base = Event.objects.filter(_in_range(since, until), topic=name)
    published = base.filter(stage=Stage.PUBLISHED)
    producers = list(published.values("service").annotate(events=Count("id"), last_at=Max("timestamp"))
                     .order_by("service"))
    consumers = list(
        base.exclude(stage=Stage.PUBLISHED).values("service", "consumer_group")
        .annotate(**_stage_counts(), last_at=Max("timestamp")).order_by("service", "consumer_group")
    )
    for row in consumers:
        row["deliveries"] = ConsumeAggregate(name, row["service"], row["consumer_group"], row["consumed"],
                                             row["processed"], row["failed"], row["dead_lettered"]).deliveries
    types = list(base.values("type", "schema_version")
                 .annotate(events=Count("id"), first_at=Min("timestamp"), last_at=Max("timestamp"))
                 .order_by("type", F("schema_version").asc(nulls_last=True)))
    partitions = dict(published.exclude(partition=None).values_list("partition").annotate(events=Count("id"))
                      .order_by())
    keyed = published.exclude(key="")
    top_keys = list(keyed.values_list("key").annotate(events=Count("id")).order_by("-events", "key")[:5])
    keyed_events = keyed.count() if top_keys else 0
    groups = {row["consumer_group"] for row in consumers if row["consumer_group"]}
    return TopicStats(
        name=name,
        known=Event.objects.filter(topic=name).exists() or Topic.objects.filter(name=name).exists(),
        producers=producers,
        consumers=consumers,
        lags=group_lags(groups, [name], since, until, at_present),
        types=types,
        skew=partition_skew(partitions),
        keys=hot_keys(top_keys, keyed_events),
        keyed_events=keyed_events,
        findings=list(Finding.objects.filter(topic=name)[:20]),
        alerts=open_alerts((), [name], since),
        lag_pages=list(Topic.objects.filter(name=name).values_list("cluster__name", "name")),
        series=rate_series(since, until, Q(topic=name)),
    )


def _name_key(name: str) -> str:
    # Names are free text; cache keys must stay short and printable.
    return hashlib.blake2b(name.encode(), digest_size=12).hexdigest()


def cached_service_stats(name: str, time_range: TimeRange, outcome: CacheOutcome | None = None) -> ServiceStats:
    return cached_for_range(
        f"flow:service:v1:{_name_key(name)}", time_range,
        lambda: service_stats(name, time_range.since, time_range.until, time_range.is_live), outcome,
    )[2]


def cached_topic_stats(name: str, time_range: TimeRange, outcome: CacheOutcome | None = None) -> TopicStats:
    return cached_for_range(
        f"flow:topic:v1:{_name_key(name)}", time_range,
        lambda: topic_stats(name, time_range.since, time_range.until, time_range.is_live), outcome,
    )[2]
