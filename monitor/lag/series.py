"""Read side of lag charts: per-topic and per-partition lag series, downsampled in the
database (bucket maxima) for long ranges and in Python for short ones, so a chart
never carries more than ``points`` points per series and a spike survives.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db.models import ExpressionWrapper, FloatField, Func, Max, QuerySet
from django.db.models import Value as SqlValue
from django.db.models.functions import Floor

from monitor.choices import SeriesMetric
from monitor.models import Cluster, ConsumerGroup, PartitionLagSample, TopicLagSample

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


@dataclass(frozen=True)
class NamedSeries:
    name: str
    points: list[Point]


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




def _raw_retention() -> timedelta:
    return timedelta(hours=settings.MONITOR_RAW_RETENTION_HOURS)


class EpochSeconds(Func):
    """Seconds since 1970 of a datetime column (PostgreSQL; SQLite below)."""

    template = "EXTRACT(EPOCH FROM %(expressions)s)"
    output_field = FloatField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
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
        series = _grouped(list(rollups.values_list(key, "polled_at", metric)))
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

