"""What a poll cycle reads back from the database: the previous poll of each group,
the group totals over the status window, offset resets in the window, and the
per-partition log-end history that time lag is interpolated from.

Everything but the log-end points around old committed offsets can be read before the
cycle knows what Kafka says (:func:`read_stored`), so the poller reads it while the
Kafka requests are in flight.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import connection, models
from django.db.models import F, Q, Sum
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast

from monitor.choices import GroupEventKind
from monitor.lag.changes import PreviousOffsets
from monitor.lag.compute import TopicPartitionKey
from monitor.lag.status import GroupPoint, Rewind, effective_window
from monitor.lag.timelag import OffsetPoint
from monitor.models import (
    Cluster, ConsumerGroup, GroupEvent, LogOffsetSample, PartitionLagSample, Topic, TopicLagSample,
)

_new_tuple = tuple.__new__


def status_history_seconds(cluster: Cluster) -> float:
    """How far back a group's polls matter to its status (window, stopped-after, and
    two intervals of slack)."""
    return max(status_window_seconds(cluster), settings.MONITOR_STOPPED_AFTER_SECONDS) \
        + 2 * cluster.poll_interval_seconds


def status_window_seconds(cluster: Cluster) -> float:
    """The status window of this cluster's groups: at least three polls long."""
    return effective_window(settings.MONITOR_STATUS_WINDOW_SECONDS, cluster.poll_interval_seconds)


@dataclass
class StoredHistory:
    """The cluster as the database knows it before this poll.

    Read with bounds taken from a time at or before the poll (``points_since``,
    ``window_start``); :meth:`group_points_between`, :meth:`rewinds_after` and
    :meth:`offset_points_after` narrow them to the poll's own bounds.
    """

    points_since: datetime
    window_start: datetime
    groups: dict[str, ConsumerGroup]
    topics: dict[str, Topic]
    previous: dict[int, dict[TopicPartitionKey, PreviousOffsets]]
    """Each group's latest poll, for the groups in ``read_group_ids``."""
    group_points: dict[int, list[GroupPoint]]
    rewinds: dict[int, list[Rewind]]
    offset_points: dict[TopicPartitionKey, list[OffsetPoint]]
    """Log-end points since ``window_start``, oldest first."""
    read_group_ids: set[int] = field(default_factory=set)

    def read_groups_too(self, groups: list[ConsumerGroup]) -> None:
        """Add the history of groups left out of the first read (gone groups that are
        listed again): a few more queries, only in the cycle where that happens."""
        groups = [g for g in groups if g.id not in self.read_group_ids]
        if not groups:
            return
        ids = [g.id for g in groups]
        self.previous.update(previous_partitions(groups))
        self.group_points.update(group_points(ids, self.points_since, None))
        self.rewinds.update(rewinds(ids, self.window_start))
        self.read_group_ids.update(ids)

    def group_points_between(self, group_id: int, since: datetime, until: datetime) -> list[GroupPoint]:
        """The group's polls with ``since <= polled_at < until``."""
        return [p for p in self.group_points.get(group_id, ()) if since <= p.polled_at < until]

    def rewinds_after(self, group_id: int, since: datetime) -> list[Rewind]:
        """The group's offset resets at or after ``since``."""
        return [r for r in self.rewinds.get(group_id, ()) if r.at >= since]

    def offset_points_after(self, since: datetime) -> dict[TopicPartitionKey, list[OffsetPoint]]:
        """Every partition's log-end points at or after ``since``."""
        return {key: [p for p in points if p.polled_at >= since] for key, points in self.offset_points.items()}


def read_stored(cluster: Cluster, as_of: datetime, owns: Callable[[str], bool] | None = None) -> StoredHistory:
    """Groups, topics and the history of the groups the cluster still lists, as of a
    time at or before the poll: a fixed number of queries whatever the cluster's size.
    With ``owns`` (one shard of a sharded cycle), the history of the groups it owns only."""
    groups = {g.name: g for g in ConsumerGroup.objects.filter(cluster=cluster)}
    live = [g for g in groups.values() if g.gone_at is None and (owns is None or owns(g.name))]
    ids = [g.id for g in live]
    points_since = as_of - timedelta(seconds=status_history_seconds(cluster))
    window_start = as_of - timedelta(seconds=status_window_seconds(cluster))
    return StoredHistory(
        points_since=points_since,
        window_start=window_start,
        groups=groups,
        topics={t.name: t for t in Topic.objects.filter(cluster=cluster)},
        previous=previous_partitions(live),
        group_points=group_points(ids, points_since, None),
        rewinds=rewinds(ids, window_start),
        offset_points=recent_offset_points(cluster.id, window_start),
        read_group_ids=set(ids),
    )


def previous_partitions(groups: Iterable[ConsumerGroup]) -> dict[int, dict[TopicPartitionKey, PreviousOffsets]]:
    """Each group's partitions as its latest poll saw them: the committed offset, the
    log start (what an offset reset or a new loss is judged by) and since when the
    committed offset has been stuck."""
    by_poll: dict[datetime, list[int]] = defaultdict(list)
    for group in groups:
        if group.last_sample_at is not None:
            by_poll[group.last_sample_at].append(group.id)
    result: dict[int, dict[TopicPartitionKey, PreviousOffsets]] = defaultdict(dict)
    if not by_poll:
        return result
    # One (group, polled_at) index seek per group: the groups of a cluster share their
    # last poll, so this is one condition, not one per group.
    latest = Q()
    for polled_at, ids in by_poll.items():
        latest |= Q(group_id__in=ids, polled_at=polled_at)
    rows = _rows(PartitionLagSample.objects.filter(latest).values_list(
        "group_id", "topic", "partition", "committed_offset", "log_start_offset", "stuck_since"))
    for group_id, topic, partition, committed, start, stuck in rows:
        result[group_id][(topic, partition)] = (committed, start, stuck)
    return result


def committed_peaks(partitions: set[tuple[int, str, int]], since: datetime
                    ) -> dict[int, dict[TopicPartitionKey, int]]:
    """Per (group id, topic, partition): the highest committed offset stored since ``since``."""
    result: dict[int, dict[TopicPartitionKey, int]] = defaultdict(dict)
    if not partitions:
        return result
    rows = (PartitionLagSample.objects
            .filter(group_id__in={g for g, _, _ in partitions}, topic__in={t for _, t, _ in partitions},
                    polled_at__gte=since)
            .values("group_id", "topic", "partition").annotate(peak=models.Max("committed_offset"))
            .values_list("group_id", "topic", "partition", "peak"))
    for group_id, topic, partition, peak in rows:
        if (group_id, topic, partition) in partitions and peak is not None:
            result[group_id][(topic, partition)] = peak
    return result


def group_points(group_ids: list[int], since: datetime, until: datetime | None) -> dict[int, list[GroupPoint]]:
    """Per group and poll: committed offsets, lag and log end summed over its partitions,
    read from the per-topic totals of each poll (a tenth to a hundredth of the rows of
    the partition samples they sum up)."""
    result: dict[int, list[GroupPoint]] = defaultdict(list)
    if not group_ids:
        return result
    polls = TopicLagSample.objects.filter(group_id__in=group_ids, resolution=0, polled_at__gte=since)
    if until is not None:
        polls = polls.filter(polled_at__lt=until)
    rows = _rows(
        polls.values("group_id", "polled_at")
        .annotate(at=_instant(TopicLagSample), committed_total=_total("committed_offset_total"),
                  lag_total=_total("lag"), log_end_total=_total("log_end_offset_total"),
                  counted=_total(F("partitions") - F("unknown_partitions")), partial=_total("partial_partitions"))
        .order_by("group_id", "polled_at")
        .values_list("group_id", "at", "committed_total", "lag_total", "log_end_total", "counted", "partial")
    )
    instants = _Instants()
    for group_id, at, committed_total, lag_total, log_end_total, counted, partial in rows:
        result[group_id].append(_new_tuple(GroupPoint, (instants[at], committed_total, lag_total, log_end_total,
                                                        counted or 0, partial or 0)))
    return result


def _total(column: str | models.Expression) -> Cast:
    # A sum of bigints is a numeric in PostgreSQL; as a bigint it is read as a plain int.
    return Cast(Sum(column), models.BigIntegerField())


def rewinds(group_ids: list[int], since: datetime) -> dict[int, list[Rewind]]:
    result: dict[int, list[Rewind]] = defaultdict(list)
    if not group_ids:
        return result
    rows = GroupEvent.objects.filter(
        group_id__in=group_ids, kind=GroupEventKind.OFFSET_RESET, at__gte=since
    ).order_by("at", "id").values_list("group_id", "at", "detail")  # resets of one poll in the order they were found
    for group_id, at, detail in rows:
        result[group_id].append(Rewind(at=at, detail=detail))
    return result


def recent_offset_points(cluster_id: int, since: datetime) -> dict[TopicPartitionKey, list[OffsetPoint]]:
    """Every log-end point of the cluster since ``since``, per partition, oldest first."""
    points: dict[TopicPartitionKey, list[OffsetPoint]] = defaultdict(list)
    rows = _rows(
        LogOffsetSample.objects.filter(cluster_id=cluster_id, polled_at__gte=since)
        .annotate(at=_instant(LogOffsetSample))
        .order_by("topic", "partition", "polled_at")  # the index's order
        .values_list("topic", "partition", "at", "log_end_offset", "log_start_offset")
    )
    instants = _Instants()
    for topic, partition, at, end, start in rows:
        points[(topic, partition)].append(_new_tuple(OffsetPoint, (instants[at], end, start)))
    return dict(points)


def _instant(model: type[models.Model]) -> RawSQL | F:
    """A model's ``polled_at`` for reading back many rows: on PostgreSQL as integer
    microseconds since 1970, since parsing thousands of timestamps (most of them the same
    few polls) costs more than the rest of the read; :class:`_Instants` turns them back."""
    if connection.vendor != "postgresql":
        return F("polled_at")
    column = f"{connection.ops.quote_name(model._meta.db_table)}.{connection.ops.quote_name('polled_at')}"
    return RawSQL(f"(EXTRACT(EPOCH FROM {column}) * 1000000)::bigint", (), output_field=models.BigIntegerField())


def _rows(queryset: models.QuerySet) -> list[tuple]:
    """A ``values_list`` query's rows as the driver returns them, for columns that need no
    conversion (numbers, text, :func:`_instant`): Django's per-row handling costs more
    than the read itself for the thousands of rows a cycle reads back."""
    if connection.vendor != "postgresql":
        return list(queryset)
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


class _Instants(dict):
    """Integer microseconds since 1970 -> aware datetime, each distinct value converted
    once (datetimes, from other databases, pass through)."""

    def __missing__(self, at: int | datetime) -> datetime:
        value = self[at] = at if isinstance(at, datetime) else _EPOCH + timedelta(microseconds=at)
        return value


_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


def offset_points(
    cluster_id: int, needed: Mapping[TopicPartitionKey, set[int]], partitions: Iterable[TopicPartitionKey],
    recent: Mapping[TopicPartitionKey, list[OffsetPoint]],
) -> dict[TopicPartitionKey, list[OffsetPoint]]:
    """Log-end history per partition, oldest first: the ``recent`` points (every point
    since the window start, from :func:`recent_offset_points`), plus, for each committed
    offset in ``needed`` that is older than those, the stored points just around it (or
    the oldest point, to extrapolate from).

    The anchors are index seeks on (partition, log end): the log end only grows, so the
    last point at or below an offset and the first point above it bracket it in time.
    """
    wanted = set(partitions) | set(needed)
    points: dict[TopicPartitionKey, dict[datetime, OffsetPoint]] = {}
    for key in wanted:
        found = recent.get(key)
        if found:
            points[key] = {p.polled_at: p for p in found}

    far: list[tuple[str, int, int]] = []
    for key, offsets in needed.items():
        by_time = points.get(key)
        oldest_recent = min(by_time.values(), key=lambda p: p.polled_at).log_end_offset if by_time else None
        for offset in sorted(offsets):
            if oldest_recent is not None and oldest_recent <= offset:
                break  # this and every later offset are inside the recent points
            far.append((key[0], key[1], offset))
    if not far:
        return {key: list(by_time.values()) for key, by_time in points.items()}
    for point_key, point in _anchors(cluster_id, far):
        points.setdefault(point_key, {})[point.polled_at] = point
    return {key: sorted(by_time.values(), key=lambda p: p.polled_at) for key, by_time in points.items()}


ANCHOR_BATCH = 300


def _anchors(cluster_id: int, far: list[tuple[str, int, int]]) -> list[tuple[TopicPartitionKey, OffsetPoint]]:
    """For each (topic, partition, offset): the last point at or below the offset and
    the first point above it, or, when nothing is at or below it, the partition's
    oldest point (to extrapolate from). On PostgreSQL one query of index seeks however
    many offsets; elsewhere one per batch, then one to read the points found."""
    if not far:
        return []
    if connection.vendor == "postgresql":
        return _anchors_postgresql(cluster_id, far)
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


def _anchors_postgresql(cluster_id: int, far: list[tuple[str, int, int]]) -> list[tuple[TopicPartitionKey, OffsetPoint]]:
    qn = connection.ops.quote_name
    table = qn(LogOffsetSample._meta.db_table)
    start, end, at = (f"s.{qn(column)}" for column in ("log_start_offset", "log_end_offset", "polled_at"))

    def seek(name: str, condition: str, order: str) -> str:
        return (f"LEFT JOIN LATERAL (SELECT (EXTRACT(EPOCH FROM {at}) * 1000000)::bigint AS at, {start} AS start, "
                f"{end} AS end_offset FROM {table} s WHERE s.{qn('cluster_id')} = %(cluster)s "
                f"AND s.{qn('topic')} = w.topic AND s.{qn('partition')} = w.part AND {condition} "
                f"ORDER BY {order} LIMIT 1) AS {name} ON true")

    sql = (
        "SELECT w.topic, w.part, below.at, below.start, below.end_offset, above.at, above.start, above.end_offset, "
        "oldest.at, oldest.start, oldest.end_offset "
        "FROM unnest(%(topics)s::text[], %(parts)s::integer[], %(offsets)s::bigint[]) AS w(topic, part, wanted) "
        + seek("below", f"{end} <= w.wanted", f"{end} DESC, {at} DESC") + " "
        + seek("above", f"below.at IS NOT NULL AND {end} > w.wanted", f"{end} ASC, {at} ASC") + " "
        + seek("oldest", "below.at IS NULL", f"{at} ASC")
    )
    params = {"cluster": cluster_id, "topics": [t for t, _, _ in far], "parts": [p for _, p, _ in far],
              "offsets": [o for _, _, o in far]}
    instants = _Instants()
    anchors = []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)  # type: ignore[arg-type]
        for topic, partition, *found in cursor.fetchall():
            for point_at, log_start, log_end in (found[0:3], found[3:6], found[6:9]):
                if point_at is not None:
                    anchors.append(((topic, partition), _new_tuple(OffsetPoint, (instants[point_at], log_end, log_start))))
    return anchors
