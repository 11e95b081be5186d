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

from django.conf import settings

from monitor.choices import GroupEventKind
from monitor.lag import samples
from monitor.lag.changes import PreviousOffsets
from monitor.lag.compute import TopicPartitionKey
from monitor.lag.samples import StateRow
from monitor.lag.status import GroupPoint, Rewind, effective_window
from monitor.lag.timelag import OffsetPoint
from monitor.models import Cluster, ConsumerGroup, GroupEvent, Topic

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
    states: dict[int, dict[TopicPartitionKey, StateRow]] = field(default_factory=dict)
    """Each group's latest poll as stored (with the window's highest committed offsets)."""
    previous_at: dict[int, datetime] = field(default_factory=dict)
    """When each group's latest poll was."""

    def read_groups_too(self, groups: list[ConsumerGroup]) -> None:
        """Add the history of groups left out of the first read (gone groups that are
        listed again): a few more queries, only in the cycle where that happens."""
        groups = [g for g in groups if g.id not in self.read_group_ids]
        if not groups:
            return
        ids = [g.id for g in groups]
        self._read_states(groups)
        self.group_points.update(group_points(groups[0].cluster_id, ids, self.points_since, None))
        self.rewinds.update(rewinds(ids, self.window_start))
        self.read_group_ids.update(ids)

    def _read_states(self, groups: Iterable[ConsumerGroup]) -> None:
        moment = samples.moment
        for group in groups:
            rows = samples.group_state_rows(group)
            if not rows:
                continue
            by_key = {(r[0], r[1]): r for r in rows}
            self.states[group.id] = by_key
            self.previous[group.id] = {key: (r[2], r[3], None if r[9] is None else moment(r[9]))
                                       for key, r in by_key.items()}
            self.previous_at[group.id] = group.last_sample_at  # type: ignore[assignment]

    def group_points_between(self, group_id: int, since: datetime, until: datetime) -> list[GroupPoint]:
        """The group's polls with ``since <= polled_at < until``."""
        return [p for p in self.group_points.get(group_id, ()) if since <= p.polled_at < until]

    def rewinds_after(self, group_id: int, since: datetime) -> list[Rewind]:
        """The group's offset resets at or after ``since``."""
        return [r for r in self.rewinds.get(group_id, ()) if r.at >= since]

    def offset_points_after(self, since: datetime) -> dict[TopicPartitionKey, list[OffsetPoint]]:
        """Every partition's log-end points at or after ``since``."""
        return {key: [p for p in points if p.polled_at >= since] for key, points in self.offset_points.items()}


_ID_BATCH = 10_000


def read_stored(cluster: Cluster, as_of: datetime, owns: Callable[[str], bool] | None = None) -> StoredHistory:
    """Groups, topics and the history of the groups the cluster still lists, as of a
    time at or before the poll: a fixed number of queries whatever the cluster's size.
    With ``owns`` (one shard of a sharded cycle), the rows and history of the groups it
    owns only: the other shards' rows are not read at all (only their names, to choose)."""
    rows = ConsumerGroup.objects.filter(cluster=cluster)
    if owns is None:
        groups = {g.name: g for g in rows}
    else:
        owned = [group_id for group_id, name in rows.values_list("id", "name") if owns(name)]
        groups = {g.name: g for start in range(0, len(owned), _ID_BATCH)
                  for g in ConsumerGroup.objects.filter(id__in=owned[start:start + _ID_BATCH])}
    live = [g for g in groups.values() if g.gone_at is None]  # a shard's rows are its own already
    ids = [g.id for g in live]
    points_since = as_of - timedelta(seconds=status_history_seconds(cluster))
    window_start = as_of - timedelta(seconds=status_window_seconds(cluster))
    stored = StoredHistory(
        points_since=points_since,
        window_start=window_start,
        groups=groups,
        topics={t.name: t for t in Topic.objects.filter(cluster=cluster)},
        previous={},
        # A shard's frames hold every shard's groups: summed for this cycle only, not kept.
        group_points=group_points(cluster.id, ids, points_since, None, keep=owns is None),
        rewinds=rewinds(ids, window_start),
        offset_points=recent_offset_points(cluster.id, window_start),
        read_group_ids=set(ids),
    )
    stored._read_states(live)
    return stored


def committed_peaks(stored: StoredHistory, partitions: set[tuple[int, str, int]], since: datetime
                    ) -> dict[int, dict[TopicPartitionKey, int]]:
    """Per (group id, topic, partition): the highest committed offset stored since
    ``since``: the window's peak kept with each partition's latest poll, or that poll's
    committed offset (see :func:`next_peak`)."""
    result: dict[int, dict[TopicPartitionKey, int]] = defaultdict(dict)
    since_us = samples.micros(since)
    for group_id, topic, partition in partitions:
        state = stored.states.get(group_id, {}).get((topic, partition))
        if state is None:
            continue
        # The rule of next_peak without a new poll: the stored peak and the latest poll's offset.
        peak, _ = next_peak(state, samples.micros(stored.previous_at.get(group_id)), None, 0,
                            since_us)  # type: ignore[arg-type]
        if peak is not None:
            result[group_id][(topic, partition)] = peak
    return result


def next_peak(before: StateRow | None, before_us: int | None, committed: int | None, now_us: int,
              window_start_us: int) -> tuple[int | None, int | None]:
    """The highest committed offset of a partition within the status window, after this
    poll, and when it was seen (microseconds since 1970): the previous peak while it is
    inside the window, the previous poll's offset, and this poll's, whichever is highest
    (the later of equals). Exact while the peak stays in the window; once it leaves, the
    next highest offset of the window is known only from the polls after it."""
    best: tuple[int, int] | None = None if committed is None else (committed, now_us)
    if before is not None:
        peak, peak_us = before[11], before[12]
        if peak is not None and peak_us is not None and peak_us >= window_start_us:
            if best is None or (peak, peak_us) > best:
                best = (peak, peak_us)
        previous = before[2]
        if previous is not None and before_us is not None and before_us >= window_start_us:
            if best is None or (previous, before_us) > best:
                best = (previous, before_us)
    return (None, None) if best is None else best


def group_points(cluster_id: int, group_ids: list[int], since: datetime, until: datetime | None,
                 keep: bool = True) -> dict[int, list[GroupPoint]]:
    """Per group and poll: committed offsets, lag and log end summed over its partitions,
    from the per-topic totals of each poll (``keep``: see :func:`samples.poll_totals`)."""
    if not group_ids:
        return {}
    return {group_id: [_new_tuple(GroupPoint, point) for point in points]
            for group_id, points in samples.poll_totals(cluster_id, group_ids, since, until, keep).items()}


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
    return samples.log_points(cluster_id, since)


def offset_points(
    cluster_id: int, needed: Mapping[TopicPartitionKey, set[int]], partitions: Iterable[TopicPartitionKey],
    recent: Mapping[TopicPartitionKey, list[OffsetPoint]],
) -> dict[TopicPartitionKey, list[OffsetPoint]]:
    """Log-end history per partition, oldest first: the ``recent`` points (every point
    since the window start, from :func:`recent_offset_points`), plus, for each committed
    offset in ``needed`` that is older than those, the stored points just around it (or
    the oldest point, to extrapolate from).

    The anchors come from :func:`samples.log_anchors`: the log end only grows, so the last
    point at or below an offset and the first point above it bracket it in time.
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
    for point_key, point in samples.log_anchors(cluster_id, far):
        points.setdefault(point_key, {})[point.polled_at] = point
    return {key: sorted(by_time.values(), key=lambda p: p.polled_at) for key, by_time in points.items()}

