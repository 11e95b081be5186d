"""What a poll cycle reads back from the database: the previous poll of each group,
the group totals over the status window, offset resets in the window, and the
per-partition log-end history that time lag is interpolated from."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime

from django.db.models import F, Sum

from monitor.choices import GroupEventKind
from monitor.lag.compute import PartitionLag, TopicPartitionKey, partition_lag
from monitor.lag.status import GroupPoint, Rewind
from monitor.lag.timelag import OffsetPoint
from monitor.models import ConsumerGroup, GroupEvent, LogOffsetSample, PartitionLagSample


def previous_partitions(groups: Iterable[ConsumerGroup]) -> dict[int, dict[TopicPartitionKey, PartitionLag]]:
    """Each group's partitions as its latest poll saw them."""
    ids = [g.id for g in groups if g.last_sample_at is not None]
    result: dict[int, dict[TopicPartitionKey, PartitionLag]] = defaultdict(dict)
    if not ids:
        return result
    rows = PartitionLagSample.objects.filter(group_id__in=ids, polled_at=F("group__last_sample_at")).values_list(
        "group_id", "topic", "partition", "committed_offset", "log_start_offset", "log_end_offset"
    )
    for group_id, topic, partition, committed, start, end in rows:
        result[group_id][(topic, partition)] = partition_lag(topic, partition, committed, start, end)
    return result


def group_points(group_ids: list[int], since: datetime, until: datetime) -> dict[int, list[GroupPoint]]:
    """Per group and poll: committed offsets, lag and log end summed over its partitions."""
    result: dict[int, list[GroupPoint]] = defaultdict(list)
    if not group_ids:
        return result
    rows = (
        PartitionLagSample.objects.filter(group_id__in=group_ids, polled_at__gte=since, polled_at__lt=until)
        .values("group_id", "polled_at")
        .annotate(committed_total=Sum("committed_offset"), lag_total=Sum("lag"), log_end_total=Sum("log_end_offset"))
        .order_by("group_id", "polled_at")
    )
    for row in rows:
        result[row["group_id"]].append(GroupPoint(
            polled_at=row["polled_at"], committed_total=row["committed_total"],
            lag=row["lag_total"], log_end_total=row["log_end_total"],
        ))
    return result


def rewinds(group_ids: list[int], since: datetime) -> dict[int, list[Rewind]]:
    result: dict[int, list[Rewind]] = defaultdict(list)
    if not group_ids:
        return result
    rows = GroupEvent.objects.filter(
        group_id__in=group_ids, kind=GroupEventKind.OFFSET_RESET, at__gte=since
    ).values_list("group_id", "at", "detail")
    for group_id, at, detail in rows:
        result[group_id].append(Rewind(at=at, detail=detail))
    return result


def offset_points(
    cluster_id: int, needed: Mapping[TopicPartitionKey, set[int]], partitions: Iterable[TopicPartitionKey],
    since: datetime,
) -> dict[TopicPartitionKey, list[OffsetPoint]]:
    """Log-end history per partition, oldest first: every point since ``since``, plus,
    for each committed offset in ``needed`` that is older than those, the stored points
    just around it (or the oldest point, to extrapolate from).

    The anchors are index seeks on (partition, log end): the log end only grows, so the
    last point at or below an offset and the first point above it bracket it in time.
    """
    wanted = set(partitions) | set(needed)
    points: dict[TopicPartitionKey, dict[datetime, OffsetPoint]] = defaultdict(dict)
    if not wanted:
        return {}
    recent = (
        LogOffsetSample.objects.filter(cluster_id=cluster_id, topic__in={t for t, _ in wanted}, polled_at__gte=since)
        .values_list("topic", "partition", "polled_at", "log_start_offset", "log_end_offset")
    )
    for topic, partition, polled_at, start, end in recent:
        if (topic, partition) in wanted:
            points[(topic, partition)][polled_at] = OffsetPoint(polled_at, end, start)

    for key, offsets in needed.items():
        oldest_recent = min(points[key].values(), key=lambda p: p.polled_at).log_end_offset if points[key] else None
        for offset in sorted(offsets):
            if oldest_recent is not None and oldest_recent <= offset:
                break  # this and every later offset are inside the recent points
            for point in _anchors(cluster_id, key, offset):
                points[key][point.polled_at] = point
    return {key: sorted(by_time.values(), key=lambda p: p.polled_at) for key, by_time in points.items()}


def _anchors(cluster_id: int, key: TopicPartitionKey, offset: int) -> list[OffsetPoint]:
    fields = ("polled_at", "log_start_offset", "log_end_offset")
    table = LogOffsetSample.objects.filter(cluster_id=cluster_id, topic=key[0], partition=key[1])
    below = table.filter(log_end_offset__lte=offset).order_by("-log_end_offset", "-polled_at").values_list(*fields).first()
    if below is None:
        oldest = table.order_by("polled_at").values_list(*fields).first()
        return [OffsetPoint(oldest[0], oldest[2], oldest[1])] if oldest else []
    above = table.filter(log_end_offset__gt=offset).order_by("log_end_offset", "polled_at").values_list(*fields).first()
    return [OffsetPoint(row[0], row[2], row[1]) for row in (below, above) if row is not None]
