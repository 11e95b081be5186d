"""The lag sample store: the only module that knows how a poll's samples are laid out in
the database. Everything else (poller history, charts, pages, the API, /metrics, alert
metrics, throughput, the flow graph) reads samples through these functions.

Three kinds of samples, all per poll of a cluster:

- topic totals: one group on one topic (lag, time lag, partition counts, summed offsets),
  at every poll (resolution 0) and as rollups (resolution = bucket seconds, each value the
  bucket's maximum, the offsets its last);
- partition detail: one group on one partition (offsets, lag, time lag and its method,
  stuck since, stalled);
- log offsets: log start and end of one partition (the history time lag is interpolated from).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator
from datetime import datetime
from typing import Any, NamedTuple

from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import F, Q, QuerySet

from monitor.lag.compute import TopicPartitionKey
from monitor.lag.timelag import OffsetPoint
from monitor.models import ConsumerGroup, LogOffsetSample, PartitionLagSample, TopicLagSample


class TopicPoint(NamedTuple):
    group_id: int
    topic: str
    polled_at: datetime
    lag: int | None
    time_lag_seconds: float | None
    partitions: int
    unknown_partitions: int
    partial_partitions: int
    committed_offset_total: int | None
    log_end_offset_total: int | None
    resolution: int = 0


PartitionLag = tuple[int, str, int, int | None, float | None]
"""A partition in a wide read (/metrics): (group id, topic, partition, lag, time lag seconds)."""
TopicLag = tuple[int, str, int | None, float | None, int]
"""A topic total in a wide read (/metrics): (group id, topic, lag, time lag seconds,
partial partitions)."""


class PartitionPoint(NamedTuple):
    group_id: int
    topic: str
    partition: int
    polled_at: datetime
    committed_offset: int | None
    log_start_offset: int | None
    log_end_offset: int | None
    lag: int | None
    time_lag_seconds: float | None
    time_lag_method: str
    time_lag_reason: str
    stuck_since: datetime | None
    stalled: bool


_TOPIC_FIELDS = ("group_id", "topic", "polled_at", "lag", "time_lag_seconds", "partitions", "unknown_partitions",
                 "partial_partitions", "committed_offset_total", "log_end_offset_total", "resolution")
_PARTITION_FIELDS = ("group_id", "topic", "partition", "polled_at", "committed_offset", "log_start_offset",
                     "log_end_offset", "lag", "time_lag_seconds", "time_lag_method", "time_lag_reason", "stuck_since",
                     "stalled")


def _latest_condition(groups: Iterable[ConsumerGroup], include_gone: bool = False) -> Q | None:
    by_poll: dict[datetime, list[int]] = defaultdict(list)
    for group in groups:
        if group.last_sample_at is not None and (include_gone or group.gone_at is None):
            by_poll[group.last_sample_at].append(group.id)
    if not by_poll:
        return None
    condition = Q()
    for polled_at, ids in by_poll.items():
        condition |= Q(group_id__in=ids, polled_at=polled_at)
    return condition


def latest_partitions(groups: Iterable[ConsumerGroup], topic: str | None = None, *,
                      include_gone: bool = False) -> dict[int, list[PartitionPoint]]:
    """Per group id: the partitions of the group's latest poll (groups with a poll, not
    gone unless ``include_gone``: a gone group's last poll), ordered by topic and
    partition; only ``topic``'s when given."""
    condition = _latest_condition(groups, include_gone)
    result: dict[int, list[PartitionPoint]] = {}
    if condition is None:
        return result
    rows = PartitionLagSample.objects.filter(condition)
    if topic is not None:
        rows = rows.filter(topic=topic)
    for row in rows.order_by("group_id", "topic", "partition").values_list(*_PARTITION_FIELDS):
        result.setdefault(row[0], []).append(PartitionPoint(*row))
    return result


def latest_topic_points(groups: Iterable[ConsumerGroup], *, include_gone: bool = False) -> dict[int, list[TopicPoint]]:
    """Per group id: its topic totals at its latest poll (groups not gone unless
    ``include_gone``: a gone group's last poll), ordered by topic."""
    condition = _latest_condition(groups, include_gone)
    result: dict[int, list[TopicPoint]] = {}
    if condition is None:
        return result
    rows = TopicLagSample.objects.filter(condition, resolution=0).order_by("group_id", "topic")
    for row in rows.values_list(*_TOPIC_FIELDS):
        result.setdefault(row[0], []).append(TopicPoint(*row))
    return result


def _stream(rows: QuerySet[Any, Any]) -> Iterator[Any]:
    """The rows of a values_list query straight from the cursor, in batches: no per-row
    work in Django (its columns need no conversion), a third faster on wide reads."""
    try:
        sql, params = rows.query.sql_with_params()
    except EmptyResultSet:  # e.g. an empty ``__in``
        return
    with connections[rows.db].cursor() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(10_000):
            yield from batch


def latest_partition_lags(cluster_ids: Collection[int]) -> Iterator[PartitionLag]:
    """The partitions of the latest poll of every group (not gone) of ``cluster_ids``, as
    plain tuples ordered by group id, topic and partition: the wide read of /metrics
    (100,000 group-partitions at a time), streamed."""
    rows = PartitionLagSample.objects.filter(
        group__cluster_id__in=list(cluster_ids), group__gone_at__isnull=True, polled_at=F("group__last_sample_at"))
    return _stream(rows.order_by("group_id", "topic", "partition").values_list(
        "group_id", "topic", "partition", "lag", "time_lag_seconds"))


def latest_topic_lags(cluster_ids: Collection[int]) -> Iterator[TopicLag]:
    """The topic totals of the latest poll of every group (not gone) of ``cluster_ids``,
    as plain tuples ordered by group id and topic (the wide read of /metrics), streamed."""
    rows = TopicLagSample.objects.filter(
        group__cluster_id__in=list(cluster_ids), group__gone_at__isnull=True, resolution=0,
        polled_at=F("group__last_sample_at"))
    return _stream(rows.order_by("group_id", "topic").values_list(
        "group_id", "topic", "lag", "time_lag_seconds", "partial_partitions"))


def topic_points(group_ids: Collection[int], since: datetime, until: datetime | None = None, *,
                 resolution: int | None = 0, topics: Collection[str] | None = None,
                 until_inclusive: bool = True) -> list[TopicPoint]:
    """Topic totals of ``group_ids`` with ``since <= polled_at <= until`` (``< until``
    when not ``until_inclusive``), ordered by group, time and topic. ``resolution`` None
    reads every resolution (raw polls and rollups)."""
    if not group_ids:
        return []
    rows = TopicLagSample.objects.filter(group_id__in=list(group_ids), polled_at__gte=since)
    if until is not None:
        rows = rows.filter(polled_at__lte=until) if until_inclusive else rows.filter(polled_at__lt=until)
    if resolution is not None:
        rows = rows.filter(resolution=resolution)
    if topics is not None:
        rows = rows.filter(topic__in=list(topics))
    return [TopicPoint(*row) for row in rows.order_by("group_id", "polled_at", "topic").values_list(*_TOPIC_FIELDS)]


def partition_points(group_id: int, since: datetime, until: datetime) -> list[PartitionPoint]:
    """The stored partition detail of one group with ``since <= polled_at <= until``,
    ordered by topic, partition and time (detail may be stored less often than polls)."""
    rows = (PartitionLagSample.objects.filter(group_id=group_id, polled_at__gte=since, polled_at__lte=until)
            .order_by("topic", "partition", "polled_at").values_list(*_PARTITION_FIELDS))
    return [PartitionPoint(*row) for row in rows]


def log_points(cluster_id: int, since: datetime, until: datetime | None = None, *, topic: str | None = None,
               until_inclusive: bool = False) -> dict[TopicPartitionKey, list[OffsetPoint]]:
    """Log-start/-end points per partition of the cluster (of ``topic`` when given) with
    ``since <= polled_at < until`` (``<=`` when ``until_inclusive``), oldest first."""
    rows = LogOffsetSample.objects.filter(cluster_id=cluster_id, polled_at__gte=since)
    if until is not None:
        rows = rows.filter(polled_at__lte=until) if until_inclusive else rows.filter(polled_at__lt=until)
    if topic is not None:
        rows = rows.filter(topic=topic)
    points: dict[TopicPartitionKey, list[OffsetPoint]] = defaultdict(list)
    for name, partition, at, end, start in rows.order_by("topic", "partition", "polled_at").values_list(
            "topic", "partition", "polled_at", "log_end_offset", "log_start_offset"):
        points[(name, partition)].append(OffsetPoint(at, end, start))
    return dict(points)
