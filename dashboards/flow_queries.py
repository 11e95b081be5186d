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
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import OperationalError, connection, transaction
from django.db.models import Case, Count, F, Max, Min, OuterRef, Q, Subquery, When, Window
from django.db.models.functions import RowNumber, Substr, TruncHour, TruncMinute

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
from monitor.events.detectors import CONSUMER_STAGES
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
P95 = 0.95
LATENCY_SAMPLE_PER_TOPIC = 5_000  # receipts measured per topic; p95 of 5,000 is stable to a few %
ANALYTIC_WORK_MEM = "32MB"
FIXED_RANGE_CACHE_SECONDS = 300
WARM_RANGES = ("24h", "7d")  # the ranges too long to compute while a page waits
WARM_BUDGET_SECONDS = 90.0  # the warm-up task's soft time limit is 100 s
SQLITE_PROGRESS_STEPS = 10_000  # virtual machine steps between deadline checks: well under 1 ms
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
    observed_since: datetime | None = None

    @property
    def span_seconds(self) -> float:
        """Rates are per second of the range that has data: a system reporting for two
        minutes of a one-hour range is not shown at a thirtieth of its real rate."""
        return (self.until - rate_start(self.since, self.observed_since)).total_seconds()


def rate_start(since: datetime, first_event_at: datetime | None) -> datetime:
    return max(since, first_event_at) if first_event_at else since


def first_event_at(since: datetime, until: datetime) -> datetime | None:
    """The earliest report in the range (one index lookup on the timestamp)."""
    return Event.objects.filter(_in_range(since, until)).aggregate(first=Min("timestamp"))["first"]


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
    service.

    PostgreSQL computes it in one statement over a stratified sample of event ids when
    ``receipts_by_topic`` says how busy each topic is (see :func:`sample_keep`); other
    databases measure every receipt (the demo's SQLite: see :func:`_p95_portable`)."""
    if portable is None:
        portable = connection.vendor != "postgresql"
    if portable:
        return _p95_portable(since, until, service)
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
        # A sample's publications are looked up by event id, not found among a scan of
        # the range and the day before it.
        looked_up = "AND p.event_id IN (SELECT event_id FROM received)"
    else:
        rates, join, sampled, looked_up = "WITH ", "", "", ""
    service_filter = "AND e.service = %s" if service is not None else ""
    sql = f"""
        {rates}received AS (
            SELECT e.event_id, e.topic, e.service, e.consumer_group, MIN(e.timestamp) AS received_at
            FROM {table} e {join}
            WHERE e.stage IN (%s, %s) AND e.timestamp >= %s AND e.timestamp < %s AND e.topic <> ''
                  {sampled} {service_filter}
            GROUP BY e.event_id, e.topic, e.service, e.consumer_group
        ), published AS (
            SELECT p.event_id, p.topic, MIN(p.timestamp) AS published_at FROM {table} p
            WHERE p.stage = %s AND p.timestamp >= %s AND p.timestamp < %s AND p.topic <> '' {looked_up}
            GROUP BY p.event_id, p.topic
        )
        SELECT r.topic, r.service, r.consumer_group, percentile_cont({P95}) WITHIN GROUP (
            ORDER BY {_seconds_after("r.received_at", "p.published_at")})
        FROM received r JOIN published p ON p.event_id = r.event_id AND p.topic = r.topic
        GROUP BY r.topic, r.service, r.consumer_group
    """
    params += [*[s.value for s in RECEIPT_STAGES], since, until]
    if service is not None:
        params.append(service)
    params += [Stage.PUBLISHED.value, since - PUBLISH_LOOKBACK, until]
    with transaction.atomic(), connection.cursor() as cursor:
        # The joins and the percentile sort spill to disk with the default 4 MB; compiling
        # the statement (JIT, on for its estimated cost) takes longer than running it.
        cursor.execute("SELECT set_config('work_mem', %s, true), set_config('jit', 'off', true)",
                       [ANALYTIC_WORK_MEM])
        cursor.execute(sql, params)
        return {(topic, service, group): float(p95) for topic, service, group, p95 in cursor.fetchall()}


def _p95_portable(since: datetime, until: datetime, service: str | None) -> dict[tuple[str, str, str], float]:
    """Exact p95 per edge in one statement any database with window functions runs:
    each (event, consuming edge)'s first receipt in the range, its publication looked up
    by event id, the latencies ranked per edge; only the ranks around the 95th per edge
    leave the database, :func:`percentile_of_ranked` interpolates between them."""
    table = connection.ops.quote_name(Event._meta.db_table)
    service_filter = "AND e.service = %s" if service is not None else ""
    # Materialised, the lookup runs once per receipt, not once per mention of its result
    # (SQLite before 3.35 has no such keyword: still linear, just slower).
    old_sqlite = connection.vendor == "sqlite" and connection.Database.sqlite_version_info < (3, 35)
    materialized = "" if old_sqlite else "MATERIALIZED"
    sql = f"""
        WITH received AS {materialized} (
            SELECT e.event_id, e.topic, e.service, e.consumer_group, MIN(e.timestamp) AS received_at
            FROM {table} e
            WHERE e.stage IN (%s, %s) AND e.timestamp >= %s AND e.timestamp < %s AND e.topic <> '' {service_filter}
            GROUP BY e.event_id, e.topic, e.service, e.consumer_group
        ), matched AS {materialized} (
            SELECT r.topic, r.service, r.consumer_group, r.received_at, (
                SELECT MIN(p.timestamp) FROM {table} p {_by_event_id_index()}
                WHERE p.event_id = r.event_id AND p.stage = %s AND p.topic = r.topic
                      AND p.timestamp >= %s AND p.timestamp < %s
            ) AS published_at
            FROM received r
        ), ranked AS (
            SELECT topic, service, consumer_group, latency_seconds,
                   ROW_NUMBER() OVER (PARTITION BY topic, service, consumer_group
                                      ORDER BY latency_seconds) AS latency_rank,
                   COUNT(*) OVER (PARTITION BY topic, service, consumer_group) AS measured
            FROM (SELECT topic, service, consumer_group, {_seconds_after("received_at", "published_at")}
                         AS latency_seconds
                  FROM matched WHERE published_at IS NOT NULL) latencies
        )
        SELECT topic, service, consumer_group, measured, latency_rank, latency_seconds FROM ranked
        WHERE latency_rank - 3 <= (measured - 1) * %s AND (measured - 1) * %s < latency_rank + 1
    """
    adapt = connection.ops.adapt_datetimefield_value
    params: list[Any] = [*[s.value for s in RECEIPT_STAGES], adapt(since), adapt(until)]
    if service is not None:
        params.append(service)
    params += [Stage.PUBLISHED.value, adapt(since - PUBLISH_LOOKBACK), adapt(until), P95, P95]
    ranked: dict[tuple[str, str, str], tuple[int, dict[int, float]]] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for topic, consumer, group, measured, rank, seconds in cursor.fetchall():
            ranked.setdefault((topic, consumer, group), (measured, {}))[1][rank] = float(seconds)
    return {key: percentile_of_ranked(measured, values, P95) for key, (measured, values) in ranked.items()}


def percentile_of_ranked(count: int, by_rank: Mapping[int, float], fraction: float) -> float:
    """:func:`percentile` of ``count`` sorted values of which only those ranked (from 1)
    next to the percentile are given."""
    position = (count - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    lower, upper = by_rank[low + 1], by_rank[high + 1]
    return lower + (upper - lower) * (position - low)


def _seconds_after(later: str, earlier: str) -> str:
    """SQL for the seconds from timestamp column ``earlier`` to ``later``, at least 0."""
    if connection.vendor == "postgresql":
        return f"GREATEST(0, EXTRACT(EPOCH FROM ({later} - {earlier}))::float8)"
    # SQLite stores 'YYYY-MM-DD HH:MM:SS[.ffffff]' (UTC) and its date functions round to
    # milliseconds (59.9997 s becomes the next second): whole seconds and the fraction apart.
    # Whole seconds subtracted first: an epoch plus a fraction in a double keeps only 0.2 µs.
    def whole(column: str) -> str:
        return f"CAST(strftime('%%s', substr({column}, 1, 19)) AS INTEGER)"

    def fraction(column: str) -> str:
        return f"CAST(substr({column}, 20) AS REAL)"

    return f"MAX(0.0, ({whole(later)} - {whole(earlier)}) + ({fraction(later)} - {fraction(earlier)}))"


def _by_event_id_index() -> str:
    """SQLite has no statistics until someone runs ANALYZE and then prefers the (stage,
    timestamp) index for a publication's lookup: every receipt would scan every
    publication of the range (minutes for the demo's first 40,000 reports)."""
    if connection.vendor != "sqlite":
        return ""
    name = next(index.name for index in Event._meta.indexes if index.fields == ["event_id"])
    return f"INDEXED BY {connection.ops.quote_name(name)}"


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
        observed_since=first_event_at(since, until),
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


def refresh_flow_cache(range_keys: Iterable[str], now: datetime, budget_seconds: float = WARM_BUDGET_SECONDS,
                       stop: Callable[[], bool] | None = None) -> dict[str, float]:
    """Recompute the flow data of live ranges (a periodic task keeps the long ones warm
    so no page waits for a week of events); returns seconds spent per range refreshed.

    The work ends within ``budget_seconds`` or soon after ``stop()`` turns true: the
    ranges not refreshed by then are left to the next run (or to a page)."""
    budget = TimeBudget(budget_seconds, stop)
    spent = {}
    for key in range_keys:
        started = time.monotonic()
        time_range = parse_time_range({"range": key}, now)
        try:
            budget.check()
            with bounded_reads(budget):
                data = flow_data(time_range.since, time_range.until, True)
        except BudgetExhausted as stopped:
            log.warning("flow cache: %s not refreshed: %s", key, stopped)
            break
        cache.set(f"{FLOW_CACHE}:{range_cache_suffix(time_range)}", (time_range.since, time_range.until, data),
                  max(60, int(3 * live_max_age_seconds(time_range.seconds))))
        spent[key] = time.monotonic() - started
    return spent


class BudgetExhausted(Exception):
    """Database work ended early: out of time, or asked to stop (a worker shutting down)."""


class TimeBudget:
    """A deadline for database work that holds in any Celery pool (the threads pool
    ignores a task's time limits, and no signal interrupts a running statement)."""

    def __init__(self, seconds: float, stop: Callable[[], bool] | None = None):
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.stop = stop or (lambda: False)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def over(self) -> bool:
        return self.stop() or self.remaining() <= 0

    def check(self) -> None:
        if self.stop():
            raise BudgetExhausted("asked to stop")
        if self.remaining() <= 0:
            raise BudgetExhausted(f"over its {self.seconds:g} s budget")


@contextmanager
def bounded_reads(budget: TimeBudget) -> Iterator[None]:
    """Statements run inside, which only read, end when ``budget`` does, raising
    :class:`BudgetExhausted`.

    SQLite checks every few thousand steps of a statement (so a stop request ends it at
    once); PostgreSQL gives each statement the time left as its ``statement_timeout``
    and checks ``stop()`` before each one, in a transaction rolled back at the end (which
    also undoes the timeout)."""
    connection.ensure_connection()
    try:
        if connection.vendor == "sqlite":
            raw = connection.connection
            raw.set_progress_handler(lambda: int(budget.over()), SQLITE_PROGRESS_STEPS)
            try:
                yield
            finally:
                raw.set_progress_handler(None, 0)
        elif connection.vendor == "postgresql":
            def deadline(execute: Callable, sql: str, params: Any, many: bool, context: Mapping[str, Any]) -> Any:
                budget.check()
                milliseconds = max(1, int(budget.remaining() * 1000))
                context["cursor"].cursor.execute("SELECT set_config('statement_timeout', %s, true)",
                                                 [f"{milliseconds}ms"])
                return execute(sql, params, many, context)

            # set_config(..., true) lasts until the end of the transaction.
            with transaction.atomic(), connection.execute_wrapper(deadline):
                yield
                transaction.set_rollback(True)
        else:
            yield
    except OperationalError as error:  # "interrupted" (SQLite), "canceling statement" (PostgreSQL)
        if budget.over():
            raise BudgetExhausted(f"over its {budget.seconds:g} s budget" if not budget.stop()
                                  else "asked to stop") from error
        raise


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
    minutes = rate_bucket_seconds(since, until) == 60
    bucket: Any = (TruncMinute if minutes else TruncHour)("timestamp")
    if connection.vendor == "sqlite":
        # Its Trunc calls back into Python for every row; the stored text
        # 'YYYY-MM-DD HH:MM:SS' (UTC, like the buckets) cut short is the same bucket.
        bucket = Substr("timestamp", 1, 16 if minutes else 13)
    rows = (
        Event.objects.filter(_in_range(since, until), where)
        .annotate(bucket=bucket).values("bucket", "stage").annotate(events=Count("id"))
        .order_by("bucket")
    )
    series: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for row in rows:
        start = row["bucket"]
        if isinstance(start, str):
            start = datetime.fromisoformat(start + (":00" if minutes else ":00:00")).replace(tzinfo=UTC)
        series[row["stage"]].append((start, row["events"]))
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


def regroup(rows: Iterable[Mapping[str, Any]], by: tuple[str, ...], sums: tuple[str, ...] = (),
            earliest: tuple[str, ...] = (), latest: tuple[str, ...] = (),
            order: Callable[[tuple[Any, ...]], Any] | None = None) -> list[dict[str, Any]]:
    """The rows of a finer GROUP BY summed up to the columns ``by``: ``sums`` added,
    ``earliest`` the lowest, ``latest`` the highest; in the order of ``by`` (or ``order``
    of its values). One scan of the events can then serve several tables of a page."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[column] for column in by)
        into = groups.get(key)
        if into is None:
            groups[key] = {column: row[column] for column in (*by, *sums, *earliest, *latest)}
            continue
        for column in sums:
            into[column] += row[column]
        for column in earliest:
            into[column] = min(into[column], row[column])
        for column in latest:
            into[column] = max(into[column], row[column])
    return [groups[key] for key in sorted(groups, key=order)]


def receipts_by_stage(rows: Iterable[Mapping[str, Any]], by: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows grouped by ``stage`` (and more) with ``events`` and ``last_at``, as one row
    per ``by`` with a count per stage (see :func:`_stage_counts`) and the latest report."""
    per_stage = [{**row, **{stage: row["events"] if row["stage"] == stage else 0 for stage in Stage.values}}
                 for row in rows]
    return regroup(per_stage, by, sums=tuple(Stage.values), latest=("last_at",))


def service_stats(name: str, since: datetime, until: datetime, at_present: bool) -> ServiceStats:
    base = Event.objects.filter(_in_range(since, until), service=name)
    by_stage = list(base.values("stage", "topic", "type", "consumer_group")
                    .annotate(events=Count("id"), last_at=Max("timestamp")).order_by())
    publishes = regroup((r for r in by_stage if r["stage"] == Stage.PUBLISHED), ("topic", "type"),
                        sums=("events",), latest=("last_at",))
    consumes = receipts_by_stage((r for r in by_stage if r["stage"] != Stage.PUBLISHED), ("topic", "consumer_group"))
    span = max((until - rate_start(since, first_event_at(since, until))).total_seconds(), 1e-9)
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
    receipts: dict[str, int] = defaultdict(int)
    for row in consumes:
        receipts[row["topic"]] += row["consumed"] + row["processed"]
    return ServiceStats(
        name=name,
        known=Service.objects.filter(name=name).exists() or Event.objects.filter(service=name).exists(),
        publishes=publishes,
        consumes=consumes,
        groups=consumer_groups(group_names),
        lags=group_lags(group_names, topics, since, until, at_present),
        p95=p95_latencies(since, until, service=name, receipts_by_topic=receipts),
        recent_failures=list(base.filter(stage__in=FAILURE_STAGES).order_by("-timestamp")[:20]),
        alerts=open_alerts(group_names, (), since),
        findings=list(Finding.objects.filter(Q(service=name) | Q(consumer_group__in=group_names))[:20]),
        series=rate_series(since, until, Q(service=name)),
    )


@dataclass(frozen=True)
class SchemaConsumer:
    """A group (the service when a report names none) and the schema versions of one
    event type it reported handling."""

    name: str
    versions: tuple[int, ...]


@dataclass(frozen=True)
class SchemaVersionRow:
    """One published (producer, version) of an event type, and per consuming group
    whether it reported handling that version (in the order of the table's consumers)."""

    producer: str
    version: int
    events: int
    handled: tuple[bool, ...]

    @property
    def drift(self) -> bool:
        return not all(self.handled)


@dataclass(frozen=True)
class SchemaTable:
    """Producer version x consumer version for one event type."""

    event_type: str
    consumers: tuple[SchemaConsumer, ...]
    rows: tuple[SchemaVersionRow, ...]

    @property
    def drift(self) -> bool:
        return any(row.drift for row in self.rows)


def schema_tables(rows: Iterable[Mapping[str, Any]]) -> list[SchemaTable]:
    """Per event type, each published (producer, schema version) against each group that
    reported handling (consumed/processed) the type with a version: handled, or never
    reported. The rule of :func:`monitor.events.detectors.detect_schema_drift` over one
    range: a group is a column once it reports a version; reports without one say nothing.
    ``rows`` are GROUP BY rows with ``stage``, ``type``, ``service``, ``consumer_group``,
    ``schema_version`` and ``events``."""
    published: dict[str, dict[tuple[str, int], int]] = defaultdict(lambda: defaultdict(int))
    handled: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for row in rows:
        version = row["schema_version"]
        if version is None:
            continue
        if row["stage"] == Stage.PUBLISHED:
            published[row["type"]][(row["service"], version)] += row["events"]
        elif row["stage"] in CONSUMER_STAGES:
            # The schema-drift detector's rule: a group that reported a version at any
            # consumer stage, even failing on it, knows that version (failures are their own finding).
            handled[row["type"]][row["consumer_group"] or row["service"]].add(version)
    tables = []
    for event_type in sorted(published):
        consumers = tuple(SchemaConsumer(name, tuple(sorted(versions)))
                          for name, versions in sorted(handled[event_type].items()))
        tables.append(SchemaTable(event_type, consumers, tuple(
            SchemaVersionRow(producer, version, events, tuple(version in c.versions for c in consumers))
            for (producer, version), events in sorted(published[event_type].items(), key=lambda i: (i[0][1], i[0][0]))
        )))
    return tables


@dataclass
class TopicStats:
    name: str
    known: bool
    producers: list[dict[str, Any]]
    consumers: list[dict[str, Any]]
    lags: dict[tuple[str, str], GroupLag]
    types: list[dict[str, Any]]
    schema: list[SchemaTable]
    skew: PartitionSkew
    keys: list[KeyShare]
    keyed_events: int
    findings: list[Finding]
    alerts: list[Alert]
    lag_pages: list[tuple[str, str]]  # (cluster, topic) known to the poller
    series: dict[str, list[tuple[datetime, int]]]


def topic_stats(name: str, since: datetime, until: datetime, at_present: bool) -> TopicStats:
    base = Event.objects.filter(_in_range(since, until), topic=name)
    is_published = Q(stage=Stage.PUBLISHED)
    # One scan for producers, consumers, types, schema versions, partitions and keyed reports (the
    # partition only of publications, so receipts do not multiply the groups).
    by_stage = list(
        base.values("stage", "service", "consumer_group", "type", "schema_version",
                    published_partition=Case(When(is_published, then=F("partition"))))
        .annotate(events=Count("id"), keyed=Count("id", filter=is_published & ~Q(key="")),
                  first_at=Min("timestamp"), last_at=Max("timestamp"))
        .order_by()
    )
    publications = [row for row in by_stage if row["stage"] == Stage.PUBLISHED]
    producers = regroup(publications, ("service",), sums=("events",), latest=("last_at",))
    consumers = receipts_by_stage((r for r in by_stage if r["stage"] != Stage.PUBLISHED), ("service", "consumer_group"))
    for row in consumers:
        row["deliveries"] = ConsumeAggregate(name, row["service"], row["consumer_group"], row["consumed"],
                                             row["processed"], row["failed"], row["dead_lettered"]).deliveries
    types = regroup(by_stage, ("type", "schema_version"), sums=("events",), earliest=("first_at",),
                    latest=("last_at",), order=lambda key: (key[0], key[1] is None, key[1] or 0))
    partitions: dict[int, int] = defaultdict(int)
    for row in publications:
        if row["published_partition"] is not None:
            partitions[row["published_partition"]] += row["events"]
    keyed_events = sum(row["keyed"] for row in publications)
    top_keys = list(
        base.filter(is_published).exclude(key="").values_list("key").annotate(events=Count("id"))
        .order_by("-events", "key")[:5]
    ) if keyed_events else []
    groups = {row["consumer_group"] for row in consumers if row["consumer_group"]}
    return TopicStats(
        name=name,
        known=Event.objects.filter(topic=name).exists() or Topic.objects.filter(name=name).exists(),
        producers=producers,
        consumers=consumers,
        lags=group_lags(groups, [name], since, until, at_present),
        types=types,
        schema=schema_tables(by_stage),
        skew=partition_skew(dict(partitions)),
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
        f"flow:topic:v2:{_name_key(name)}", time_range,
        lambda: topic_stats(name, time_range.since, time_range.until, time_range.is_live), outcome,
    )[2]
