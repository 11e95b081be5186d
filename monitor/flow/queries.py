"""Read side of the flow graph: edge aggregates, publish-to-consume latency, the lag
of consuming groups and failed examples, cached per time range.

Every query is an aggregate the database does (GROUP BY with filtered counts, one
percentile per edge) bounded by the time range, so a page costs a handful of queries
whatever the number of events. The rules applied to the results live in the pure
module :mod:`monitor.flow.graph`.
"""
from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, Q, Window
from django.db.models.functions import RowNumber

from monitor.choices import FAILURE_STAGES, RECEIPT_STAGES, STATUS_SEVERITY_RANK, FlowEdgeKind, GroupStatus, Stage
from monitor.flow import rollups
from monitor.flow.graph import (
    ConsumeAggregate,
    FlowGraph,
    GroupLag,
    PublishAggregate,
    Tolerances,
    build_flow_graph,
)
from monitor.lag import samples as lag_samples
from monitor.lag.series import max_known
from monitor.models import ConsumerGroup, Event
from monitor.pathways import histogram
from monitor.readcache import (
    BudgetExhausted,
    CacheOutcome,
    TimeBudget,
    bounded_reads,
    cached_for_range,
    live_max_age_seconds,
    range_cache_suffix,
)
from monitor.timerange import TimeRange, parse_time_range

log = logging.getLogger(__name__)

# A consumer far behind receives events published long before the range starts.
PUBLISH_LOOKBACK = timedelta(days=1)
TRACE_EVENT_LIMIT = 5_000
EXAMPLES_PER_EDGE = 3
HASH_BUCKETS = 1024
P95 = 0.95
LATENCY_SAMPLE_PER_TOPIC = 5_000  # receipts measured per topic; p95 of 5,000 is stable to a few %
ANALYTIC_WORK_MEM = "32MB"
WARM_RANGES = ("24h", "7d")  # the ranges too long to compute while a page waits
WARM_BUDGET_SECONDS = 90.0  # the warm-up task's soft time limit is 100 s
SQLITE_PROGRESS_STEPS = 10_000  # virtual machine steps between deadline checks: well under 1 ms
FLOW_CACHE = "flow:data:v4"


def in_range(since: datetime, until: datetime) -> Q:
    return Q(timestamp__gte=since, timestamp__lt=until)


def stage_counts() -> dict[str, Count]:
    return {
        "published": Count("id", filter=Q(stage=Stage.PUBLISHED)),
        "consumed": Count("id", filter=Q(stage=Stage.CONSUMED)),
        "processed": Count("id", filter=Q(stage=Stage.PROCESSED)),
        "failed": Count("id", filter=Q(stage=Stage.FAILED)),
        "dead_lettered": Count("id", filter=Q(stage=Stage.DEAD_LETTERED)),
    }



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
    return Event.objects.filter(in_range(since, until)).aggregate(first=Min("timestamp"))["first"]


def edge_aggregates(since: datetime, until: datetime,
                    extra: Q | None = None) -> tuple[list[PublishAggregate], list[ConsumeAggregate]]:
    """One GROUP BY (service, topic, consumer_group) with a count per stage."""
    rows = (
        Event.objects.filter(in_range(since, until), extra or Q()).exclude(topic="")
        .values_list("service", "topic", "consumer_group").annotate(**stage_counts()).order_by()
    )
    return classify(StageCounts(*row) for row in rows)


@dataclass(frozen=True)
class StageCounts:
    service: str
    topic: str
    consumer_group: str
    published: int
    consumed: int
    processed: int
    failed: int
    dead_lettered: int


def classify(rows: Iterable[StageCounts]) -> tuple[list[PublishAggregate], list[ConsumeAggregate]]:
    """Publish and consume edges from the counts per (service, topic, consumer_group).

    Failures reported without a consumer group go to the consume edge when that row also
    consumed, else to the publish edge when it published (a failed publication)."""
    publishes: list[PublishAggregate] = []
    consumes: list[ConsumeAggregate] = []
    for row in rows:
        receives = row.consumed + row.processed
        failures_to_publisher = not row.consumer_group and not receives and row.published > 0
        if row.published and not row.consumer_group:
            publishes.append(PublishAggregate(
                service=row.service, topic=row.topic, published=row.published,
                failed=row.failed if failures_to_publisher else 0,
                dead_lettered=row.dead_lettered if failures_to_publisher else 0,
            ))
        if not failures_to_publisher and (receives or row.failed or row.dead_lettered):
            consumes.append(ConsumeAggregate(
                topic=row.topic, service=row.service, consumer_group=row.consumer_group,
                consumed=row.consumed, processed=row.processed, failed=row.failed,
                dead_lettered=row.dead_lettered,
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
    old_sqlite = connection.vendor == "sqlite" and connection.Database.sqlite_version_info < (3, 35)  # type: ignore[attr-defined]
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
    unread: set[tuple[str, str]] = set()  # a group on some cluster whose offsets were not read: the sum is unknown
    statuses: dict[tuple[str, str], str] = {}
    clusters: dict[tuple[str, str], set[str]] = defaultdict(set)

    def add(key: tuple[str, str], lag: int | None, status: str | None, cluster: str) -> None:
        if lag is not None:
            lag_sum[key] = (lag_sum.get(key) or 0) + lag
        else:
            lag_sum.setdefault(key, None)
        if status is not None and STATUS_SEVERITY_RANK.get(status, 0) >= STATUS_SEVERITY_RANK.get(statuses.get(key) or "", -1):
            statuses[key] = status
        clusters[key].add(cluster)

    wanted = set(topic_names)
    if at_present:
        live = list(ConsumerGroup.objects.filter(name__in=names, gone_at=None).select_related("cluster")
                    .defer("member_details"))
        latest = lag_samples.latest_topic_points(live)
        for group in live:
            points = [point for point in latest.get(group.id, []) if point.topic in wanted]
            for point in points:
                add((group.name, point.topic), point.lag, group.status, group.cluster.name)
                if group.unread_since is not None:  # its latest detail is not current
                    unread.add((group.name, point.topic))
            if not points:
                for topic in topic_names:
                    if _group_reads(group, topic):
                        add((group.name, topic), group.total_lag, group.status, group.cluster.name)
    else:
        named = {group_id: (name, cluster) for group_id, name, cluster in
                 ConsumerGroup.objects.filter(name__in=names).values_list("id", "name", "cluster__name")}
        highest: dict[tuple[int, str], int | None] = {}
        for point in lag_samples.topic_points(named, since, until, resolution=None, topics=topic_names,
                                              until_inclusive=False):
            key = (point.group_id, point.topic)
            highest[key] = max_known(highest.get(key), point.lag)
        for (group_id, topic), lag in highest.items():
            name, cluster = named[group_id]
            add((name, topic), lag, None, cluster)
    return {
        key: GroupLag(lag=None if key in unread else lag, status=statuses.get(key, GroupStatus.UNKNOWN),
                      clusters=tuple(sorted(clusters[key])))
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
        Event.objects.filter(in_range(since, until), extra or Q(), stage__in=FAILURE_STAGES)
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


EXAMPLE_SPANS = (timedelta(hours=1), timedelta(days=1))


def latest_failed_examples(since: datetime, until: datetime,
                           failing: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], list[str]]:
    """:func:`failed_examples` of the range, looked for in its last hour, then its last
    day, before all of it: the latest traces that failed on an edge are the same in any
    suffix of the range holding at least ``EXAMPLES_PER_EDGE`` of them, and a week's
    failures are not all read when the last hour already names enough of each failing
    (service, topic, consumer_group)."""
    failing = set(failing)
    for span in EXAMPLE_SPANS:
        start = until - span
        if start <= since:
            break
        found = failed_examples(start, until)
        if all(len(found.get(edge, ())) >= EXAMPLES_PER_EDGE for edge in failing):
            return found
    return failed_examples(since, until)


def polled_group_names(names: Iterable[str]) -> set[str]:
    """The consumer group names the poller knows, of ``names``: the only ones with a lag.

    One array parameter on PostgreSQL: with 10,000 reported groups, compiling and
    sending ``IN`` lists of 10,000 parameters cost more than the lookups themselves."""
    wanted = sorted(set(filter(None, names)))
    if not wanted or connection.vendor != "postgresql":
        return set(wanted)
    table = connection.ops.quote_name(ConsumerGroup._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT name FROM {table} WHERE name = ANY(%s)", [wanted])
        return {name for (name,) in cursor.fetchall()}


def flow_data(since: datetime, until: datetime, at_present: bool, rollup: bool = True) -> FlowData:
    """The numbers of the range. PostgreSQL reads whole minutes from the per-minute edge
    rollup and the rest from raw events (``rollup=False``: everything from raw events, the
    same figures); p95 comes from summed histogram buckets (within about 5 %). Other
    databases aggregate raw events and measure an exact p95."""
    if rollups.supported():
        rows = rollups.edge_rows(since, until, rollups.rolled_up_until() if rollup else None)
        publishes, consumes = classify(
            StageCounts(r.service, r.topic, r.consumer_group, r.published, r.consumed, r.processed, r.failed,
                        r.dead_lettered) for r in rows)
        p95 = {(r.topic, r.service, r.consumer_group): value for r in rows
               if (value := histogram.percentile(r.latency_buckets, P95)) is not None}
        examples = latest_failed_examples(
            since, until, ((r.service, r.topic, r.consumer_group) for r in rows if r.failed or r.dead_lettered))
    else:
        publishes, consumes = edge_aggregates(since, until)
        p95 = p95_latencies(since, until)
        examples = failed_examples(since, until)
    polled = polled_group_names(c.consumer_group for c in consumes)
    lagging = [c for c in consumes if c.consumer_group in polled]
    return FlowData(
        since=since,
        until=until,
        publishes=publishes,
        consumes=consumes,
        p95=p95,
        lags=group_lags((c.consumer_group for c in lagging), (c.topic for c in lagging), since, until, at_present),
        examples=examples,
        observed_since=first_event_at(since, until),
    )


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



def flow_graph(time_range: TimeRange, tolerances: Tolerances, outcome: CacheOutcome | None = None) -> FlowGraph:
    data = cached_flow_data(time_range, outcome)
    graph = build_flow_graph(data.publishes, data.consumes, data.span_seconds, data.p95, data.lags, tolerances)
    graph.since, graph.until = data.since, data.until
    for edge in graph.edges:
        group = edge.consumer_group if edge.kind == FlowEdgeKind.CONSUME else ""
        if found := data.examples.get((edge.service, edge.topic, group)):
            edge.examples = list(found)
    return graph


