"""Read side of lag monitoring, shared by the dashboard pages and the JSON API.

Pure helpers (``downsample``, ``choose_resolution``, ``redact``, ``OverviewFilter``) take
plain data; the query functions read the tables the poller writes and return plain
dataclasses or model rows. Nothing here writes.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar, TypeVar

from django.conf import settings
from django.db.models import Count, ExpressionWrapper, F, FloatField, Func, Max, Q, QuerySet, Sum
from django.db.models import Value as SqlValue
from django.db.models.functions import Floor

from monitor.choices import ClusterStatus, GroupStatus, SeriesMetric
from monitor.lag import snapshot
from monitor.models import (
    Cluster,
    ConsumerGroup,
    GroupEvent,
    PartitionLagSample,
    PollRun,
    Topic,
    TopicLagSample,
)

Value = int | float | None
Point = tuple[datetime, Value]
K = TypeVar("K")

# Ranges up to this long are drawn from every poll (6 h of 30 s polls: 720 rows per
# topic); longer ones from bucket maxima of at least a minute, computed in the database.
RAW_RANGE_LIMIT = timedelta(hours=6)
ROLLUP_RESOLUTION_SECONDS = 60
DEFAULT_POINTS = 500
MAX_POINTS = 5000

CHART_RANGES: dict[str, timedelta] = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
}
DEFAULT_CHART_RANGE = "1h"
SPARKLINE_WINDOW = timedelta(hours=1)
SPARKLINE_POINTS = 40

# On-call order: what needs a human first.
STATUS_SEVERITY: list[str] = [
    GroupStatus.DATA_LOSS,
    GroupStatus.STOPPED,
    GroupStatus.STALLED,
    GroupStatus.GROWING,
    GroupStatus.REWIND,
    GroupStatus.EMPTY,
    GroupStatus.UNKNOWN,
    GroupStatus.IDLE,
    GroupStatus.OK,
    GroupStatus.GONE,
]
PROBLEM_STATUSES = frozenset(STATUS_SEVERITY[:6])
REDACTED = "••••••"


# --------------------------------------------------------------------------- pure helpers


def downsample(points: Sequence[Point], max_points: int) -> list[Point]:
    """At most ``max_points`` points: the range is cut into equal time buckets and each
    bucket keeps its highest value (a lag spike must survive downsampling). A bucket with
    only unknown (None) values keeps one None, so gaps stay visible."""
    if max_points < 1:
        raise ValueError("max_points must be at least 1")
    if len(points) <= max_points:
        return list(points)
    start, end = points[0][0], points[-1][0]
    span = (end - start).total_seconds()
    chosen: dict[int, Point] = {}
    for index, point in enumerate(points):
        if span > 0:
            bucket = min(int((point[0] - start).total_seconds() / span * max_points), max_points - 1)
        else:
            bucket = index * max_points // len(points)
        best = chosen.get(bucket)
        if best is None or (point[1] is not None and (best[1] is None or point[1] > best[1])):
            chosen[bucket] = point
    return [chosen[bucket] for bucket in sorted(chosen)]


def choose_resolution(since: datetime, until: datetime) -> int:
    """0 (every poll) for ranges up to RAW_RANGE_LIMIT, else the smallest bucket (seconds)
    of the database-side bucketing: a minute, the resolution of the stored rollups."""
    return 0 if until - since <= RAW_RANGE_LIMIT else ROLLUP_RESOLUTION_SECONDS


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced: error messages must never carry a password."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


@dataclass(frozen=True)
class OverviewFilter:
    """The overview's filters and sort order, as carried in the URL query string."""

    cluster: str = ""
    status: str = ""
    text: str = ""
    sort: str = "severity"
    descending: bool = False

    SORTS: ClassVar[tuple[str, ...]] = (
        "severity", "cluster", "group", "status", "total_lag", "max_time_lag_seconds", "members", "last_sample_at",
    )

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> "OverviewFilter":
        """Unknown or malformed values fall back to the defaults: a stale bookmark still opens."""
        status = query.get("status", "")
        sort = query.get("sort", "severity")
        return cls(
            cluster=query.get("cluster", "").strip(),
            status=status if status in GroupStatus.values or status == "problems" else "",
            text=query.get("q", "").strip(),
            sort=sort if sort in cls.SORTS else "severity",
            descending=query.get("dir", "") == "desc",
        )

    def matches(self, group: ConsumerGroup) -> bool:
        if self.cluster and group.cluster.name != self.cluster:
            return False
        if self.status == "problems":
            if group.status not in PROBLEM_STATUSES:
                return False
        elif self.status and group.status != self.status:
            return False
        if self.text:
            needle = self.text.lower()
            haystack = [group.name, group.cluster.name, *[str(t) for t in group.topics or []]]
            if not any(needle in item.lower() for item in haystack):
                return False
        return True

    def sort_rows(self, groups: list[ConsumerGroup]) -> list[ConsumerGroup]:
        if self.sort == "severity":
            rank = {status: i for i, status in enumerate(STATUS_SEVERITY)}
            ordered = sorted(
                groups,
                key=lambda g: (rank.get(g.status, len(rank)), -(g.total_lag or 0), g.cluster.name, g.name),
            )
            return list(reversed(ordered)) if self.descending else ordered
        getters = {
            "cluster": lambda g: (g.cluster.name, g.name),
            "group": lambda g: (g.name, g.cluster.name),
            "status": lambda g: g.status,
            "total_lag": lambda g: g.total_lag,
            "max_time_lag_seconds": lambda g: g.max_time_lag_seconds,
            "members": lambda g: g.members,
            "last_sample_at": lambda g: g.last_sample_at,
        }
        getter = getters[self.sort]
        known = [g for g in groups if getter(g) is not None]
        unknown = [g for g in groups if getter(g) is None]
        known.sort(key=getter, reverse=self.descending)
        return known + unknown  # unknown values last in both directions


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class NamedSeries:
    name: str
    points: list[Point]


@dataclass(frozen=True)
class PartitionRow:
    topic: str
    partition: int
    committed_offset: int | None
    log_start_offset: int | None
    log_end_offset: int | None
    lag: int | None
    time_lag_seconds: float | None
    time_lag_method: str
    time_lag_reason: str
    owner: str | None = None
    """Member id owning the partition; None when unassigned or not told (see ``owner_known``)."""
    owner_client_id: str | None = None
    owner_host: str | None = None
    owner_known: bool = False
    """Whether the broker told the group's members at the last poll."""


@dataclass(frozen=True)
class OverviewRow:
    group: ConsumerGroup
    sparkline: list[Value]


@dataclass(frozen=True)
class TopicReader:
    group: ConsumerGroup
    lag: int | None
    max_time_lag_seconds: float | None
    partitions: int
    unknown_partitions: int


@dataclass(frozen=True)
class ClusterRow:
    cluster: Cluster
    last_error: str
    groups: int
    problem_groups: int
    last_run: PollRun | None


@dataclass(frozen=True)
class ClusterAlarm:
    """A cluster the UI must warn about: ``kind`` is "unreachable" or "stale"."""

    name: str
    kind: str
    since: datetime | None
    error: str = ""


@dataclass
class Overview:
    rows: list[OverviewRow]
    clusters: list[str]
    total_groups: int
    status_counts: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- clusters


def public_error(cluster: Cluster) -> str:
    """The cluster's last error, safe to show: SASL credentials are cut out."""
    return redact(cluster.last_error or "", [cluster.sasl_password])


def find_cluster(name: str) -> Cluster | None:
    return Cluster.objects.filter(name=name).first()


def find_group(cluster: Cluster, name: str) -> ConsumerGroup | None:
    group = ConsumerGroup.objects.filter(cluster=cluster, name=name).first()
    if group is not None:
        group.cluster = cluster  # spare a query on every group.cluster access
    return group


def cluster_rows() -> list[ClusterRow]:
    clusters = list(Cluster.objects.order_by("name"))
    counts = {
        row["cluster_id"]: row
        for row in ConsumerGroup.objects.values("cluster_id").annotate(
            groups=Count("id"), problems=Count("id", filter=Q(status__in=PROBLEM_STATUSES))
        )
    }
    latest_ids = PollRun.objects.values("cluster_id").annotate(latest=Max("id")).values_list("latest", flat=True)
    runs = {run.cluster_id: run for run in PollRun.objects.filter(id__in=list(latest_ids))}
    return [
        ClusterRow(
            cluster=cluster,
            last_error=public_error(cluster),
            groups=counts.get(cluster.id, {}).get("groups", 0),
            problem_groups=counts.get(cluster.id, {}).get("problems", 0),
            last_run=runs.get(cluster.id),
        )
        for cluster in clusters
    ]


def cluster_alarms(now: datetime) -> list[ClusterAlarm]:
    """Unreachable clusters (with since when) and clusters nobody has polled lately."""
    alarms: list[ClusterAlarm] = []
    for cluster in Cluster.objects.filter(enabled=True).order_by("name"):
        if cluster.status == ClusterStatus.UNREACHABLE:
            failures = PollRun.objects.filter(cluster=cluster, ok=False)
            if cluster.last_success_at is not None:
                failures = failures.filter(started_at__gt=cluster.last_success_at)
            first_failure = failures.order_by("started_at").values_list("started_at", flat=True).first()
            since = first_failure or cluster.last_poll_at
            alarms.append(ClusterAlarm(cluster.name, "unreachable", since, public_error(cluster)))
            continue
        overdue_after = timedelta(seconds=max(3 * cluster.poll_interval_seconds, 120))
        reference = cluster.last_poll_at or cluster.created_at
        if reference is not None and now - reference > overdue_after:
            alarms.append(ClusterAlarm(cluster.name, "stale", cluster.last_poll_at))
    return alarms


# --------------------------------------------------------------------------- groups


def overview(filters: OverviewFilter, now: datetime) -> Overview:
    groups = list(ConsumerGroup.objects.select_related("cluster"))
    status_counts: dict[str, int] = defaultdict(int)
    for group in groups:
        status_counts[group.status] += 1
    visible = filters.sort_rows([g for g in groups if filters.matches(g)])
    sparklines = _sparklines([g.id for g in visible], now)
    return Overview(
        rows=[OverviewRow(group=g, sparkline=sparklines.get(g.id, [])) for g in visible],
        clusters=sorted(Cluster.objects.values_list("name", flat=True)),
        total_groups=len(groups),
        status_counts=dict(status_counts),
    )


def _sparklines(group_ids: list[int], now: datetime) -> dict[int, list[Value]]:
    """Total lag over the last hour in SPARKLINE_POINTS time buckets, aggregated in the
    database (per topic the bucket maximum, then summed over topics). Buckets without a
    poll are skipped, so a slow poll interval does not draw a dotted line."""
    if not group_ids:
        return {}
    since = now - SPARKLINE_WINDOW
    width = SPARKLINE_WINDOW.total_seconds() / SPARKLINE_POINTS
    rows = (
        TopicLagSample.objects.filter(group_id__in=group_ids, resolution=0, polled_at__gte=since, polled_at__lte=now)
        .annotate(bucket=time_bucket(since, width))
        .values("group_id", "topic", "bucket")
        .annotate(value=Max("lag"))
        .order_by()
        .values_list("group_id", "bucket", "value")
    )
    totals: dict[int, dict[int, Value]] = defaultdict(dict)
    for group_id, bucket, value in rows:
        index = min(int(bucket), SPARKLINE_POINTS - 1)
        known = totals[group_id].get(index)
        totals[group_id][index] = value if known is None else known + (value or 0)
    return {gid: [buckets[i] for i in sorted(buckets)] for gid, buckets in totals.items()}


def latest_partitions(group: ConsumerGroup) -> list[PartitionRow]:
    """Per-partition lag from the group's latest poll (the poller's snapshot, which falls
    back to the database); empty before the first poll and once the group is gone."""
    detail = snapshot.get_group_snapshot(group.cluster.name, group.name) or {}
    return [
        PartitionRow(
            topic=p["topic"],
            partition=p["partition"],
            committed_offset=p["committed_offset"],
            log_start_offset=p["log_start_offset"],
            log_end_offset=p["log_end_offset"],
            lag=p["lag"],
            time_lag_seconds=p["time_lag_seconds"],
            time_lag_method=p["time_lag_method"],
            time_lag_reason=p.get("time_lag_reason") or "",
            owner=p.get("owner"),
            owner_client_id=p.get("owner_client_id"),
            owner_host=p.get("owner_host"),
            owner_known=detail.get("member_details") is not None,
        )
        for p in detail.get("partitions", [])
    ]


def group_events(group: ConsumerGroup, since: datetime, until: datetime) -> list[GroupEvent]:
    return list(GroupEvent.objects.filter(group=group, at__gte=since, at__lte=until).order_by("at"))


def topic_readers(cluster: Cluster, topic: str) -> list[TopicReader]:
    """Every group whose latest poll covered ``topic``, with its lag on that topic."""
    aggregates = (
        PartitionLagSample.objects.filter(group__cluster=cluster, topic=topic, polled_at=F("group__last_sample_at"))
        .values("group_id")
        .annotate(
            lag_sum=Sum("lag"),
            max_time_lag=Max("time_lag_seconds"),
            partition_count=Count("id"),
            unknown=Count("id", filter=Q(lag__isnull=True)),
        )
    )
    by_group = {row["group_id"]: row for row in aggregates}
    groups = ConsumerGroup.objects.filter(id__in=list(by_group)).order_by("name")
    readers = []
    for group in groups:
        group.cluster = cluster
        row = by_group[group.id]
        readers.append(
            TopicReader(
                group=group,
                # A sum over partitions that are all unknown is unknown, never 0.
                lag=row["lag_sum"] if row["unknown"] < row["partition_count"] else None,
                max_time_lag_seconds=row["max_time_lag"],
                partitions=row["partition_count"],
                unknown_partitions=row["unknown"],
            )
        )
    return readers


def find_topic(cluster: Cluster, name: str) -> Topic | None:
    return Topic.objects.filter(cluster=cluster, name=name).first()


# --------------------------------------------------------------------------- series


def _raw_retention() -> timedelta:
    return timedelta(hours=settings.MONITOR_RAW_RETENTION_HOURS)


class EpochSeconds(Func):
    """Seconds since 1970 of a datetime column (PostgreSQL; SQLite below)."""

    template = "EXTRACT(EPOCH FROM %(expressions)s)"
    output_field = FloatField()

    def as_sqlite(self, compiler, connection, **extra_context):  # type: ignore[no-untyped-def]
        return self.as_sql(
            compiler, connection, template="((julianday(%(expressions)s) - 2440587.5) * 86400.0)", **extra_context
        )


def time_bucket(since: datetime, width_seconds: float) -> Floor:
    """The index of the ``width_seconds`` bucket, counted from ``since``, a row falls in:
    the database groups rows into buckets so only one row per bucket is read back."""
    offset = ExpressionWrapper(EpochSeconds("polled_at") - SqlValue(since.timestamp()), output_field=FloatField())
    return Floor(ExpressionWrapper(offset / SqlValue(float(width_seconds)), output_field=FloatField()))


def _grouped(rows: Sequence[tuple[K, datetime, Value]]) -> dict[K, list[Point]]:
    grouped: dict[K, list[Point]] = defaultdict(list)
    for key, polled_at, value in rows:
        grouped[key].append((polled_at, value))
    return grouped


def _topic_lag_series(
    filters: dict[str, object],
    key: str,
    metric: str,
    since: datetime,
    until: datetime,
    now: datetime,
    points: int,
) -> dict[str, list[Point]]:
    """TopicLagSample values per ``key`` in [since, until], at most ``points`` per key.

    Short ranges read every poll (downsampled here, keeping real poll times). Long ranges
    are bucketed in the database into at most ``points`` buckets of at least a minute,
    each the maximum of the stored 1-minute rollups (written once raw samples age past
    MONITOR_RAW_RETENTION_HOURS) and the raw samples in it; a point's time is its bucket's
    start."""
    base = TopicLagSample.objects.filter(**filters, polled_at__gte=since, polled_at__lte=until)
    if choose_resolution(since, until):
        return _bucketed(base, key, metric, since, until, points)
    series: dict[str, list[Point]] = {}
    tail_starts: dict[str, datetime] = {}
    raw_from = since
    if since < now - _raw_retention():
        # Part of a short range so old that only its rollups are left.
        rollups = base.filter(resolution=ROLLUP_RESOLUTION_SECONDS).order_by(key, "polled_at")
        series = _grouped(rollups.values_list(key, "polled_at", metric))
        bucket = timedelta(seconds=ROLLUP_RESOLUTION_SECONDS)
        tail_starts = {k: pts[-1][0] + bucket for k, pts in series.items()}
        raw_from = min(tail_starts.values()) if tail_starts else since
    raw = base.filter(resolution=0, polled_at__gte=raw_from).order_by(key, "polled_at")
    for k, polled_at, value in raw.values_list(key, "polled_at", metric):
        if k not in tail_starts or polled_at >= tail_starts[k]:
            series.setdefault(k, []).append((polled_at, value))
    return {k: downsample(pts, points) for k, pts in series.items()}


def _bucketed(
    base: QuerySet, key: str, metric: str, since: datetime, until: datetime, points: int
) -> dict[str, list[Point]]:
    span = (until - since).total_seconds()
    width = max(float(ROLLUP_RESOLUTION_SECONDS), math.ceil(span / points))
    buckets = max(1, math.ceil(span / width))  # <= points
    rows = (
        base.annotate(bucket=time_bucket(since, width))
        .values(key, "bucket")
        .annotate(value=Max(metric))
        .order_by(key, "bucket")
        .values_list(key, "bucket", "value")
    )
    merged: dict[str, dict[int, Value]] = defaultdict(dict)
    for k, bucket, value in rows:
        index = min(int(bucket), buckets - 1)  # a sample exactly at `until` joins the last bucket
        known = merged[k].get(index)
        merged[k][index] = value if known is None else (known if value is None else max(known, value))
    return {
        k: [(since + timedelta(seconds=index * width), by_index[index]) for index in sorted(by_index)]
        for k, by_index in merged.items()
    }


def group_lag_series(
    group: ConsumerGroup,
    since: datetime,
    until: datetime,
    now: datetime,
    points: int = DEFAULT_POINTS,
    topic: str | None = None,
    metric: str = SeriesMetric.LAG,
) -> list[NamedSeries]:
    """One series per topic the group read in the range, at most ``points`` points each."""
    filters: dict[str, object] = {"group": group}
    if topic:
        filters["topic"] = topic
    series = _topic_lag_series(filters, "topic", SeriesMetric(metric).value, since, until, now, points)
    return [NamedSeries(name, pts) for name, pts in sorted(series.items())]


def topic_lag_series(
    cluster: Cluster,
    topic: str,
    since: datetime,
    until: datetime,
    now: datetime,
    points: int = DEFAULT_POINTS,
    metric: str = SeriesMetric.LAG,
) -> list[NamedSeries]:
    """One series per group reading ``topic``."""
    filters: dict[str, object] = {"group__cluster": cluster, "topic": topic}
    series = _topic_lag_series(filters, "group__name", SeriesMetric(metric).value, since, until, now, points)
    return [NamedSeries(name, pts) for name, pts in sorted(series.items())]


def partition_lag_series(
    group: ConsumerGroup,
    since: datetime,
    until: datetime,
    points: int = DEFAULT_POINTS,
    metric: str = SeriesMetric.LAG,
) -> dict[str, list[NamedSeries]]:
    """Per-partition series by topic, from raw samples (partitions are not rolled up)."""
    rows = (
        PartitionLagSample.objects.filter(group=group, polled_at__gte=since, polled_at__lte=until)
        .order_by("topic", "partition", "polled_at")
        .values_list("topic", "partition", "polled_at", SeriesMetric(metric).value)
    )
    grouped: dict[tuple[str, int], list[Point]] = defaultdict(list)
    for topic, partition, polled_at, value in rows:
        grouped[(topic, partition)].append((polled_at, value))
    by_topic: dict[str, list[NamedSeries]] = defaultdict(list)
    for (topic, partition), pts in sorted(grouped.items()):
        by_topic[topic].append(NamedSeries(f"partition {partition}", downsample(pts, points)))
    return dict(by_topic)
