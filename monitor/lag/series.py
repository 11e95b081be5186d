"""Read side of lag charts: per-topic and per-partition lag series, read through the
sample store (monitor.lag.samples) and downsampled in Python: bucket maxima for long
ranges, every poll downsampled for short ones, so a chart
never carries more than ``points`` points per series and a spike survives.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db.models import FloatField, Func

from monitor.choices import SeriesMetric
from monitor.lag import samples
from monitor.lag.samples import TopicPoint
from monitor.models import Cluster, ConsumerGroup

Value = int | float | None
Point = tuple[datetime, Value]
N = TypeVar("N", int, float)

# Ranges up to this long are drawn from every poll (6 h of 30 s polls: 720 rows per
# topic); longer ones from bucket maxima of at least a minute (rollups and raw polls merged).
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
    of the long-range bucketing: a minute, the resolution of the stored rollups."""
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


def bucket_index(polled_at: datetime, since: datetime, width_seconds: float) -> int:
    """The index of the ``width_seconds`` bucket, counted from ``since``, ``polled_at`` falls in."""
    return math.floor((polled_at.timestamp() - since.timestamp()) / width_seconds)


def max_known(known: N | None, value: N | None) -> N | None:
    """The larger of two values, an unknown (None) one losing to a known one."""
    if known is None:
        return value
    return known if value is None else max(known, value)


def _topic_lag_series(
    group_ids: Collection[int],
    topic: str | None,
    key: Callable[[TopicPoint], str],
    metric: str,
    since: datetime,
    until: datetime,
    now: datetime,
    points: int,
) -> dict[str, list[Point]]:
    """Topic totals of ``group_ids`` (of ``topic`` when given) per ``key`` in [since,
    until], at most ``points`` per key.

    Short ranges read every poll (downsampled here, keeping real poll times). Long ranges
    are cut into at most ``points`` buckets of at least a minute, each the maximum of the
    stored 1-minute rollups (written once raw samples age past
    MONITOR_RAW_RETENTION_HOURS) and the raw samples in it; a point's time is its bucket's
    start."""
    topics = None if topic is None else [topic]
    if choose_resolution(since, until):
        rows = samples.topic_points(group_ids, since, until, resolution=None, topics=topics)
        return _bucketed(rows, key, metric, since, until, points)
    old = since < now - _raw_retention()
    # Part of a short range so old that only its rollups are left: read those too.
    rows = samples.topic_points(group_ids, since, until, resolution=None if old else 0, topics=topics)
    by_key: dict[str, list[TopicPoint]] = defaultdict(list)
    for row in rows:
        by_key[key(row)].append(row)
    for key_rows in by_key.values():
        key_rows.sort(key=lambda row: row.polled_at)  # stable; a name's rows may span groups
    series: dict[str, list[Point]] = {}
    tail_starts: dict[str, datetime] = {}
    raw_from = since
    if old:
        for k, key_rows in by_key.items():
            rollups = [(row.polled_at, getattr(row, metric)) for row in key_rows
                       if row.resolution == ROLLUP_RESOLUTION_SECONDS]
            if rollups:
                series[k] = rollups
                tail_starts[k] = rollups[-1][0] + timedelta(seconds=ROLLUP_RESOLUTION_SECONDS)
        raw_from = min(tail_starts.values()) if tail_starts else since
    for k, key_rows in by_key.items():
        for row in key_rows:
            if row.resolution == 0 and row.polled_at >= raw_from and (
                    k not in tail_starts or row.polled_at >= tail_starts[k]):
                series.setdefault(k, []).append((row.polled_at, getattr(row, metric)))
    return {k: downsample(pts, points) for k, pts in series.items()}


def _bucketed(
    rows: Iterable[TopicPoint], key: Callable[[TopicPoint], str], metric: str, since: datetime, until: datetime,
    points: int,
) -> dict[str, list[Point]]:
    span = (until - since).total_seconds()
    width = max(float(ROLLUP_RESOLUTION_SECONDS), math.ceil(span / points))
    buckets = max(1, math.ceil(span / width))  # <= points
    merged: dict[str, dict[int, Value]] = defaultdict(dict)
    for row in rows:
        index = min(bucket_index(row.polled_at, since, width), buckets - 1)  # a sample at `until` joins the last
        by_index = merged[key(row)]
        by_index[index] = max_known(by_index.get(index), getattr(row, metric))
    return {
        k: [(since + timedelta(seconds=index * width), by_index[index]) for index in sorted(by_index)]
        for k, by_index in merged.items()
    }


def _by_topic(row: TopicPoint) -> str:
    return row.topic


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
    series = _topic_lag_series([group.id], topic or None, _by_topic, SeriesMetric(metric).value, since, until, now,
                               points)
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
    names = dict(ConsumerGroup.objects.filter(cluster=cluster).values_list("id", "name"))
    series = _topic_lag_series(names, topic, lambda row: names[row.group_id], SeriesMetric(metric).value, since,
                               until, now, points)
    return [NamedSeries(name, pts) for name, pts in sorted(series.items())]


def partition_lag_series(
    group: ConsumerGroup,
    since: datetime,
    until: datetime,
    points: int = DEFAULT_POINTS,
    metric: str = SeriesMetric.LAG,
) -> dict[str, list[NamedSeries]]:
    """Per-partition series by topic, from raw samples (partitions are not rolled up)."""
    field = SeriesMetric(metric).value
    grouped: dict[tuple[str, int], list[Point]] = defaultdict(list)
    for row in samples.partition_points(group.id, since, until):
        grouped[(row.topic, row.partition)].append((row.polled_at, getattr(row, field)))
    by_topic: dict[str, list[NamedSeries]] = defaultdict(list)
    for (topic, partition), pts in sorted(grouped.items()):
        by_topic[topic].append(NamedSeries(f"partition {partition}", downsample(pts, points)))
    return dict(by_topic)

