"""What a poll cycle reads back from the database: the previous poll of each group,
the group totals over the status window, offset resets in the window, and the
per-partition log-end history that time lag is interpolated from."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime

from django.db import connection
from django.db.models import F, Sum

from monitor.choices import GroupEventKind
from monitor.lag.compute import PartitionLag, TopicPartitionKey
from monitor.lag.status import GroupPoint, Rewind
from monitor.lag.timelag import OffsetPoint
from monitor.models import ConsumerGroup, GroupEvent, LogOffsetSample, PartitionLagSample


def previous_partitions(groups: Iterable[ConsumerGroup]) -> dict[int, dict[TopicPartitionKey, PartitionLag]]:
    """Each group's partitions as its latest poll saw them (offsets and what was lost;
    the rest of the comparison needs nothing else)."""
    ids = [g.id for g in groups if g.last_sample_at is not None]
    result: dict[int, dict[TopicPartitionKey, PartitionLag]] = defaultdict(dict)
    if not ids:
        return result
    rows = PartitionLagSample.objects.filter(group_id__in=ids, polled_at=F("group__last_sample_at")).values_list(
        "group_id", "topic", "partition", "committed_offset", "log_start_offset", "log_end_offset", "lag"
    )
    for group_id, topic, partition, committed, start, end, lag in rows:
        lost = start - committed if committed is not None and start is not None and committed < start else 0
        result[group_id][(topic, partition)] = PartitionLag(topic, partition, committed, start, end, lag, lost)
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

    far: list[tuple[str, int, int]] = []
    for key, offsets in needed.items():
        oldest_recent = min(points[key].values(), key=lambda p: p.polled_at).log_end_offset if points[key] else None
        for offset in sorted(offsets):
            if oldest_recent is not None and oldest_recent <= offset:
                break  # this and every later offset are inside the recent points
            far.append((key[0], key[1], offset))
    for point_key, point in _anchors(cluster_id, far):
        points[point_key][point.polled_at] = point
    return {key: sorted(by_time.values(), key=lambda p: p.polled_at) for key, by_time in points.items()}


ANCHOR_BATCH = 300


def _anchors(cluster_id: int, far: list[tuple[str, int, int]]) -> list[tuple[TopicPartitionKey, OffsetPoint]]:
    """For each (topic, partition, offset): the last point at or below the offset and
    the first point above it, or, when nothing is at or below it, the partition's
    oldest point (to extrapolate from). One query of index seeks per batch, then one
    to read the points found."""
    if not far:
        return []
    qn = connection.ops.quote_name
    table = qn(LogOffsetSample._meta.db_table)
    end, at = f"s.{qn('log_end_offset')}", f"s.{qn('polled_at')}"

    def seek(source: str, condition: str, order: str) -> str:
        return (f"(SELECT s.{qn('id')} FROM {table} s WHERE s.{qn('cluster_id')} = %s "
                f"AND s.{qn('topic')} = {source}.topic AND s.{qn('partition')} = {source}.part "
                f"AND {condition} ORDER BY {order} LIMIT 1)")

    # PostgreSQL would inline the inner query and run its seek again inside the CASE.
    fence = " OFFSET 0" if connection.vendor == "postgresql" else ""
    sql_template = (
        f"SELECT n.topic, n.part, n.below, CASE WHEN n.below IS NULL "
        f"THEN {seek('n', '1 = 1', f'{at} ASC')} "
        f"ELSE {seek('n', f'{end} > n.wanted', f'{end} ASC, {at} ASC')} END "
        f"FROM (SELECT v.topic, v.part, v.wanted, {seek('v', f'{end} <= v.wanted', f'{end} DESC, {at} DESC')} AS below "
        f"FROM (SELECT column1 AS topic, column2 AS part, column3 AS wanted FROM (VALUES {{values}}) AS wanted_offsets) AS v"
        f"{fence}) AS n"
    )
    ids_by_partition: dict[int, TopicPartitionKey] = {}
    for start in range(0, len(far), ANCHOR_BATCH):
        batch = far[start:start + ANCHOR_BATCH]
        sql = sql_template.format(values=", ".join(["(%s, %s, %s)"] * len(batch)))
        # Parameters in text order: the two seeks of the CASE, the inner seek, the values.
        params = [cluster_id, cluster_id, cluster_id] + [value for row in batch for value in row]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            for topic, partition, below, other in cursor.fetchall():
                for found in (below, other):
                    if found is not None:
                        ids_by_partition[found] = (topic, partition)
    ids = list(ids_by_partition)
    anchors = []
    for start in range(0, len(ids), 900):
        rows = LogOffsetSample.objects.filter(id__in=ids[start:start + 900]).values_list(
            "id", "polled_at", "log_start_offset", "log_end_offset")
        for row_id, polled_at, log_start, log_end in rows:
            anchors.append((ids_by_partition[row_id], OffsetPoint(polled_at, log_end, log_start)))
    return anchors
