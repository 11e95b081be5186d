"""The lag sample store: the only module that knows how a poll's samples are laid out in
the database. Everything else (poller history, charts, pages, the API, /metrics, alert
metrics, throughput, the flow graph) reads samples through these functions.

Three kinds of samples, all per poll of a cluster:

- topic totals: one group on one topic (lag, time lag, partition counts, summed offsets),
  at every poll and as rollups (one point per ROLLUP_SECONDS, each value the bucket's
  maximum, the summed offsets its last);
- partition detail: one group on one partition (offsets, lag, time lag and its method,
  stuck since, stalled), every MONITOR_PARTITION_DETAIL_SECONDS, and each group's latest
  poll on its own row (``ConsumerGroup.partition_state``);
- log offsets: log start and end of one partition (the history time lag is interpolated
  from), at every poll and as rollups (the last point of each bucket).

How (the sizes are measured by bench/scale.py): the samples of one poll are packed as
columns into frames (:mod:`monitor.lag.frames`), one frame per kind and bucket of groups
(see :func:`width_for`: up to 64, so one group's series reads 1/64 of a big cluster's frames),
stored in :class:`~monitor.models.LagFrame` (polled) and :class:`~monitor.models.LagRollup`
(rolled up), both partitioned by day on PostgreSQL. A group's latest partitions are packed
with :mod:`marshal` (written and read only by this module, from values it made itself).
"""
from __future__ import annotations

import marshal
import threading
import time
from array import array
from collections import OrderedDict, defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from functools import lru_cache
from typing import Any, NamedTuple, cast

from django.conf import settings
from django.db.models import Max, Min, Q, QuerySet

from monitor.lag import frames
from monitor.lag.bulk import insert_rows
from monitor.lag.compute import TopicPartitionKey
from monitor.lag.timelag import OffsetPoint
from monitor.models import ConsumerGroup, FrameKind, LagFrame, LagRollup

BUCKETS = 64
"""The most buckets a poll's frames of one kind are split into."""
GROUPS_PER_FRAME = 128
"""Fewer buckets while a bucket would hold fewer groups than this (a frame's fixed costs)."""
WIDTHS = (1, 2, 4, 8, 16, 32, 64)
ROLLUP_SECONDS = 300
"""The resolution of rollups (topic totals and log offsets older than the polled frames)."""


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


class PartitionState(NamedTuple):
    """One partition of a group's latest poll as stored for the next poll and the pages."""

    topic: str
    partition: int
    committed_offset: int | None
    log_start_offset: int | None
    log_end_offset: int | None
    lag: int | None
    time_lag_seconds: float | None
    time_lag_method: str
    time_lag_reason: str
    stuck_since: datetime | None
    stalled: bool
    peak_committed: int | None
    """The highest committed offset seen within the status window (what a rewind is measured from)."""
    peak_at: datetime | None


def width_for(groups: int) -> int:
    """How many buckets a poll of ``groups`` groups is split into: a power of two, at most
    :data:`BUCKETS`, each bucket holding at least :data:`GROUPS_PER_FRAME` groups."""
    width = 1
    while width < BUCKETS and groups >= GROUPS_PER_FRAME * width * 2:
        width *= 2
    return width


def bucket_of(group_id: int, width: int = BUCKETS) -> int:
    """The stored bucket of a group in a poll split into ``width`` buckets: ``width + group
    id modulo width`` (1 .. 127), so a bucket number also says how the poll was split."""
    return width + group_id % width


def buckets_of(group_ids: Collection[int]) -> list[int] | None:
    """Every bucket a frame holding one of ``group_ids`` can have (whatever the split of its
    poll); None when that is every bucket anyway."""
    if len(group_ids) >= BUCKETS:
        return None
    return sorted({bucket_of(g, width) for g in group_ids for width in WIDTHS})


# -- a group's latest poll ----------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
_STATE_VERSION = 1


def micros(value: datetime | None) -> int | None:
    """A datetime as integer microseconds since 1970 (None stays None)."""
    if value is None:
        return None
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@lru_cache(maxsize=4096)
def moment(us: int | None) -> datetime | None:
    """Integer microseconds since 1970 as a datetime (None stays None)."""
    # Cached: the peaks and stuck times of a cluster's partitions share a few poll times.
    return None if us is None else _EPOCH + timedelta(microseconds=us)


StateRow = tuple[str, int, int | None, int | None, int | None, int | None, float | None, str, str, int | None, bool,
                 int | None, int | None]
"""One partition of a group's latest poll as stored: the fields of :class:`PartitionState`
with its two times as integer microseconds since 1970 (what the poller reads and writes
for every partition at every poll, without building objects)."""


def pack_state_rows(rows: Iterable[StateRow]) -> bytes:
    """A group's latest partitions -> the bytes stored on its row. Plain types only:
    marshal takes no subclasses (e.g. a TextChoices method)."""
    return marshal.dumps((_STATE_VERSION, tuple(rows)))


def unpack_state_rows(payload: bytes | memoryview | None) -> tuple[StateRow, ...]:
    if not payload:
        return ()
    version, rows = marshal.loads(bytes(payload))
    return rows if version == _STATE_VERSION else ()


def pack_state(partitions: Sequence[PartitionState]) -> bytes:
    """:func:`pack_state_rows` from :class:`PartitionState` values."""
    return pack_state_rows(
        (str(p.topic), int(p.partition), p.committed_offset, p.log_start_offset, p.log_end_offset, p.lag,
         None if p.time_lag_seconds is None else float(p.time_lag_seconds), str(p.time_lag_method),
         str(p.time_lag_reason), micros(p.stuck_since), bool(p.stalled), p.peak_committed, micros(p.peak_at))
        for p in partitions)


def group_state_rows(group: ConsumerGroup, include_gone: bool = False) -> tuple[StateRow, ...]:
    """:func:`group_state` as stored rows."""
    if (group.gone_at is not None and not include_gone) or group.last_sample_at is None:
        return ()
    return unpack_state_rows(group.partition_state)


def group_state(group: ConsumerGroup, include_gone: bool = False) -> list[PartitionState]:
    """The partitions of the group's latest poll (empty for none yet, and for a gone group
    unless ``include_gone``: its last poll)."""
    return [PartitionState(t, p, c, s, e, lag, tl, m, r, moment(stuck), stalled, peak, moment(peak_at))
            for t, p, c, s, e, lag, tl, m, r, stuck, stalled, peak, peak_at in group_state_rows(group, include_gone)]


def latest_partitions(groups: Iterable[ConsumerGroup], topic: str | None = None, *,
                      include_gone: bool = False) -> dict[int, list[PartitionPoint]]:
    """Per group id: the partitions of the group's latest poll (groups with a poll, not
    gone unless ``include_gone``: a gone group's last poll), ordered by topic and
    partition; only ``topic``'s when given."""
    result: dict[int, list[PartitionPoint]] = {}
    for group in groups:
        state = group_state(group, include_gone)
        if not state:
            continue
        at = group.last_sample_at
        points = [PartitionPoint(group.id, s.topic, s.partition, at, s.committed_offset,  # type: ignore[arg-type]
                                 s.log_start_offset, s.log_end_offset, s.lag, s.time_lag_seconds, s.time_lag_method,
                                 s.time_lag_reason, s.stuck_since, s.stalled)
                  for s in state if topic is None or s.topic == topic]
        if points:
            result[group.id] = sorted(points, key=lambda p: (p.topic, p.partition))
    return result


def latest_topic_points(groups: Iterable[ConsumerGroup], *, include_gone: bool = False) -> dict[int, list[TopicPoint]]:
    """Per group id: its topic totals at its latest poll (groups not gone unless
    ``include_gone``: a gone group's last poll), ordered by topic."""
    wanted: dict[int, ConsumerGroup] = {g.id: g for g in groups
                                        if g.last_sample_at is not None and (include_gone or g.gone_at is None)}
    if not wanted:
        return {}
    unknown_cluster = [g.id for g in wanted.values() if g.cluster_id is None]
    cluster_of = _clusters_of(unknown_cluster) if unknown_cluster else {}
    latest = {g.id: (g.cluster_id if g.cluster_id is not None else cluster_of.get(g.id), g.last_sample_at)
              for g in wanted.values()}
    result: dict[int, list[TopicPoint]] = defaultdict(list)
    for polled_at, row in _latest_totals(latest):  # type: ignore[arg-type]
        result[row[0]].append(TopicPoint(row[0], row[1], polled_at, *row[2:]))
    return {gid: sorted(points, key=lambda p: p.topic) for gid, points in result.items()}


def _latest_totals(latest: dict[int, tuple[int, datetime]]) -> Iterator[tuple[datetime, tuple[Any, ...]]]:
    """The topic totals rows of each group's latest poll (group id -> (cluster id, polled
    at)), with their poll's time: one read of the frames of those polls and buckets."""
    polls: dict[tuple[int, datetime], set[int]] = defaultdict(set)
    for group_id, poll in latest.items():
        polls[poll].add(group_id)
    condition = Q()
    for (cluster_id, polled_at), ids in polls.items():
        buckets = buckets_of(ids)
        condition |= Q(cluster_id=cluster_id, polled_at=polled_at) if buckets is None else \
            Q(cluster_id=cluster_id, polled_at=polled_at, bucket__in=buckets)
    for polled_at, payload in LagFrame.objects.filter(condition, kind=FrameKind.TOTALS).values_list(
            "polled_at", "payload").iterator(chunk_size=100):
        for row in frames.decode(frames.TOTALS, payload):
            group_poll = latest.get(row[0])
            if group_poll is not None and group_poll[1] == polled_at:
                yield polled_at, row


PartitionLag = tuple[int, str, int, int | None, float | None]
"""A partition in a wide read (/metrics): (group id, topic, partition, lag, time lag seconds)."""
TopicLag = tuple[int, str, int | None, float | None, int]
"""A topic total in a wide read (/metrics): (group id, topic, lag, time lag seconds,
partial partitions)."""


def latest_partition_lags(cluster_ids: Collection[int]) -> Iterator[PartitionLag]:
    """The partitions of the latest poll of every group (not gone) of ``cluster_ids``, as
    plain tuples ordered by group id, topic and partition: the wide read of /metrics
    (100,000 group-partitions at a time), streamed."""
    for group_id, payload in _live_groups(cluster_ids).values_list("id", "partition_state").iterator(chunk_size=5000):
        for row in sorted(unpack_state_rows(payload), key=lambda r: (r[0], r[1])):
            yield (group_id, row[0], row[1], row[5], row[6])


def latest_topic_lags(cluster_ids: Collection[int]) -> Iterator[TopicLag]:
    """The topic totals of the latest poll of every group (not gone) of ``cluster_ids``,
    as plain tuples ordered by group id and topic (the wide read of /metrics)."""
    latest = {group_id: (cluster_id, cast(datetime, at))  # a poll: _live_groups have one
              for group_id, cluster_id, at in _live_groups(cluster_ids).values_list(
                  "id", "cluster_id", "last_sample_at").iterator(chunk_size=10_000)}
    found = [(row[0], row[1], row[2], row[3], row[6]) for _, row in _latest_totals(latest)] if latest else []
    found.sort(key=lambda r: (r[0], r[1]))
    yield from found


def _live_groups(cluster_ids: Collection[int]) -> QuerySet[ConsumerGroup]:
    """The groups of ``cluster_ids`` not gone and with a poll, by id."""
    return ConsumerGroup.objects.filter(cluster_id__in=list(cluster_ids), gone_at__isnull=True,
                                        last_sample_at__isnull=False).order_by("id")


# -- series -------------------------------------------------------------------------------

def _clusters_of(group_ids: Collection[int]) -> dict[int, int]:
    return dict(ConsumerGroup.objects.filter(id__in=list(group_ids)).values_list("id", "cluster_id"))


def _raw_from(model: type[LagFrame] | type[LagRollup], cluster_id: int, kind: int) -> datetime | None:
    """The oldest polled frame of the cluster still stored (rollups are read before it)."""
    return model.objects.filter(cluster_id=cluster_id, kind=kind).aggregate(oldest=Min("polled_at"))["oldest"]


def _frame_rows(model: type[LagFrame] | type[LagRollup], cluster_id: int, kind: int, buckets: Collection[int] | None,
                since: datetime | None, until: datetime | None, until_inclusive: bool) -> QuerySet[Any]:
    """The frames of a kind of ``buckets`` (None: all) with ``since <= polled_at < until``
    (``<=`` when ``until_inclusive``)."""
    rows = model.objects.filter(cluster_id=cluster_id, kind=kind)
    if buckets is not None:
        rows = rows.filter(bucket__in=sorted(buckets))
    if since is not None:
        rows = rows.filter(polled_at__gte=since)
    if until is not None:
        rows = rows.filter(polled_at__lte=until) if until_inclusive else rows.filter(polled_at__lt=until)
    return rows


def _frames(model: type[LagFrame] | type[LagRollup], cluster_id: int, kind: int, buckets: Collection[int] | None,
            since: datetime | None, until: datetime | None, until_inclusive: bool) -> Iterator[tuple[datetime, bytes]]:
    rows = _frame_rows(model, cluster_id, kind, buckets, since, until, until_inclusive)
    yield from rows.order_by("polled_at").values_list("polled_at", "payload").iterator(chunk_size=200)


def topic_points(group_ids: Collection[int], since: datetime, until: datetime | None = None, *,
                 resolution: int | None = 0, topics: Collection[str] | None = None,
                 until_inclusive: bool = True) -> list[TopicPoint]:
    """Topic totals of ``group_ids`` with ``since <= polled_at <= until`` (``< until``
    when not ``until_inclusive``), ordered by group, time and topic. ``resolution``: 0 the
    polled points, :data:`ROLLUP_SECONDS` the rollups, None both (rollups only before the
    oldest polled point still stored, so no time is counted twice)."""
    if not group_ids:
        return []
    wanted = set(group_ids)
    topic_set = set(topics) if topics is not None else None
    by_cluster: dict[int, set[int]] = defaultdict(set)
    known = _clusters_of(wanted)
    wanted = set(known)  # a deleted group's samples are never read again
    for group_id, cluster_id in known.items():
        by_cluster[cluster_id].add(group_id)
    clusters = {cluster_id: buckets_of(ids) for cluster_id, ids in by_cluster.items()}
    found: list[TopicPoint] = []

    def read(model: Any, cluster_id: int, buckets: list[int] | None, start: datetime | None, end: datetime | None,
             inclusive: bool, res: int) -> None:
        for polled_at, payload in _frames(model, cluster_id, FrameKind.TOTALS, buckets, start, end, inclusive):
            for row in frames.decode(frames.TOTALS, payload):
                if row[0] in wanted and (topic_set is None or row[1] in topic_set):
                    found.append(TopicPoint(row[0], row[1], polled_at, row[2], row[3], row[4], row[5], row[6],
                                            row[7], row[8], res))

    for cluster_id, buckets in clusters.items():
        if resolution:
            read(LagRollup, cluster_id, buckets, since, until, until_inclusive, ROLLUP_SECONDS)
            continue
        raw_from: datetime | None = since
        if resolution is None:
            oldest = _raw_from(LagFrame, cluster_id, FrameKind.TOTALS)
            if oldest is None:
                read(LagRollup, cluster_id, buckets, since, until, until_inclusive, ROLLUP_SECONDS)
                continue
            # Rollups that start before the oldest polled frame (the last of them may
            # also cover the first polled frames: a maximum over the same polls).
            if oldest > since:
                read(LagRollup, cluster_id, buckets, since, oldest, False, ROLLUP_SECONDS)
            raw_from = max(since, oldest)
        read(LagFrame, cluster_id, buckets, raw_from, until, until_inclusive, 0)
    found.sort(key=lambda p: (p.group_id, p.polled_at, p.topic))
    return found


PollSums = tuple[datetime, Any, Any, Any, int, int]
"""One group at one poll, summed over its topics: polled at, committed offsets, lag, log
ends (each None when no topic knows it), partitions counted, partial partitions."""


def poll_totals(cluster_id: int, group_ids: Collection[int], since: datetime, until: datetime | None,
                keep: bool = True) -> dict[int, list[PollSums]]:
    """Per group, its polls with ``since <= polled_at < until``, oldest first.

    The poller asks this every cycle for its whole status history: each frame is read and
    summed once per process (:class:`_FrameSums`), later cycles read only the frames
    written since. Without ``keep`` (one shard of a big cluster: its frames hold every
    shard's groups), frames read are not kept."""
    wanted = set(group_ids)
    result: dict[int, list[PollSums]] = defaultdict(list)
    # The frames' ids and times only: payloads are read for the frames not kept already.
    listed = list(_frame_rows(LagFrame, cluster_id, FrameKind.TOTALS, buckets_of(wanted), since, until, False)
                  .order_by("polled_at", "id").values_list("id", "polled_at"))
    for summed in _TOTAL_SUMS.sums_of(cluster_id, listed, since, keep):
        for group_id, point in summed.items():
            if group_id not in wanted:
                continue
            series = result[group_id]
            if series and series[-1][0] == point[0]:  # the same group in two frames of one poll
                series[-1] = _added(series[-1], point)
            else:
                series.append(point)
    return result


def _added(one: PollSums, other: PollSums) -> PollSums:
    def plus(a: Any, b: Any) -> Any:
        return a if b is None else b if a is None else a + b

    return (one[0], plus(one[1], other[1]), plus(one[2], other[2]), plus(one[3], other[3]),
            one[4] + other[4], one[5] + other[5])


class _FrameSums:
    """Topic-totals frames summed per group, kept between polls in this process: frames
    are only ever inserted and deleted, never changed, so a frame summed once stays right.
    Keyed by id and poll time (an id alone could come back after a sequence is reset).
    Frames older than the oldest a poll of their cluster asked for are dropped (later
    polls ask for later ones), so it holds about one status history per cluster, and a
    cluster this process has not asked about for UNUSED_SECONDS is dropped whole."""

    UNUSED_SECONDS = 3600.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_cluster: dict[int, dict[tuple[int, datetime], _SummedFrame | _SummedPlain]] = {}
        self._used: dict[int, float] = {}

    def sums_of(self, cluster_id: int, listed: list[tuple[int, datetime]], since: datetime, keep: bool = True
                ) -> list["_SummedFrame | _SummedPlain"]:
        """The listed frames (id, polled at), each summed per group, in the order listed;
        those read are kept for the next call when ``keep``."""
        now = time.monotonic()
        with self._lock:
            for other in [c for c, used in self._used.items() if now - used > self.UNUSED_SECONDS]:
                self._by_cluster.pop(other, None)
                del self._used[other]
            self._used[cluster_id] = now
            cached = dict(self._by_cluster.get(cluster_id, {}))
        missing = [frame_id for frame_id, at in listed if (frame_id, at) not in cached]
        read: dict[tuple[int, datetime], _SummedFrame | _SummedPlain] = {}
        for start in range(0, len(missing), 200):
            for frame_id, polled_at, payload in LagFrame.objects.filter(id__in=missing[start:start + 200]) \
                    .values_list("id", "polled_at", "payload"):
                read[(frame_id, polled_at)] = _group_sums(polled_at, payload)
        with self._lock:
            kept = self._by_cluster.setdefault(cluster_id, {})
            if keep:
                kept.update(read)
            for key in [key for key in kept if key[1] < since]:
                del kept[key]
        cached.update(read)
        return [cached[key] for key in listed if key in cached]

    def clear(self) -> None:
        with self._lock:
            self._by_cluster.clear()
            self._used.clear()

    def kept(self, cluster_id: int) -> int:
        """How many frames of the cluster are kept."""
        with self._lock:
            return len(self._by_cluster.get(cluster_id, {}))


def _group_sums(polled_at: datetime, payload: bytes) -> "_SummedFrame | _SummedPlain":
    sums: dict[int, PollSums] = {}
    for group_id, _, lag, _, partitions, unknown, partial, committed, log_end in frames.decode(frames.TOTALS,
                                                                                             payload):
        point = (polled_at, committed, lag, log_end, partitions - unknown, partial)
        known = sums.get(group_id)
        sums[group_id] = point if known is None else _added(known, point)
    try:
        return _SummedFrame.of(polled_at, sums)
    except OverflowError:  # a sum beyond 64 bits: kept as it is
        return _SummedPlain(sums)


_UNKNOWN = -1
"""A sum no topic knows, in :class:`_SummedFrame`'s columns (offsets and lags are never negative)."""


class _SummedFrame:
    """One frame summed per group, as columns of machine integers: a few objects per frame
    instead of one tuple per group (a 10,000-group history kept is ~340,000 of them)."""

    __slots__ = ("polled_at", "columns")

    def __init__(self, polled_at: datetime, columns: tuple[array[int], ...]) -> None:
        self.polled_at, self.columns = polled_at, columns

    @classmethod
    def of(cls, polled_at: datetime, sums: dict[int, PollSums]) -> "_SummedFrame":
        points: list[tuple[Any, ...]] = list(sums.values())

        def column(index: int) -> array[int]:
            return array("q", [_UNKNOWN if p[index] is None else p[index] for p in points])

        return cls(polled_at, (array("q", sums), column(1), column(2), column(3), column(4), column(5)))

    def items(self) -> Iterator[tuple[int, PollSums]]:
        at = self.polled_at
        for group_id, committed, lag, log_end, counted, partial in zip(*self.columns):
            yield group_id, (at, None if committed == _UNKNOWN else committed, None if lag == _UNKNOWN else lag,
                             None if log_end == _UNKNOWN else log_end, counted, partial)


class _SummedPlain:
    __slots__ = ("sums",)

    def __init__(self, sums: dict[int, PollSums]) -> None:
        self.sums = sums

    def items(self) -> Iterator[tuple[int, PollSums]]:
        return iter(self.sums.items())


_TOTAL_SUMS = _FrameSums()


def forget_summed_frames() -> None:
    """Every frame is read again (tests start from nothing)."""
    _TOTAL_SUMS.clear()


def partition_points(group_id: int, since: datetime, until: datetime) -> list[PartitionPoint]:
    """The stored partition detail of one group with ``since <= polled_at <= until``
    (every MONITOR_PARTITION_DETAIL_SECONDS, and its latest poll), ordered by topic,
    partition and time."""
    group = ConsumerGroup.objects.filter(id=group_id).first()
    if group is None:
        return []
    found: list[PartitionPoint] = []
    seen: set[datetime] = set()
    for polled_at, payload in _frames(LagFrame, group.cluster_id, FrameKind.PARTITIONS, buckets_of([group_id]),
                                      since, until, True):
        for row in frames.decode(frames.PARTITIONS, payload):
            if row[0] == group_id:
                found.append(PartitionPoint(row[0], row[1], row[2], polled_at, *row[3:]))
                seen.add(polled_at)
    at = group.last_sample_at
    if at is not None and since <= at <= until and at not in seen:
        for points in latest_partitions([group]).values():
            found.extend(points)
    found.sort(key=lambda p: (p.topic, p.partition, p.polled_at))
    return found


def log_points(cluster_id: int, since: datetime, until: datetime | None = None, *, topic: str | None = None,
               until_inclusive: bool = False) -> dict[TopicPartitionKey, list[OffsetPoint]]:
    """Log-start/-end points per partition of the cluster (of ``topic`` when given) with
    ``since <= polled_at < until`` (``<=`` when ``until_inclusive``), oldest first; rollups
    (one point per ROLLUP_SECONDS) before the oldest polled point still stored."""
    points: dict[TopicPartitionKey, list[OffsetPoint]] = defaultdict(list)
    oldest = _raw_from(LagFrame, cluster_id, FrameKind.LOG_OFFSETS)
    sources: list[tuple[Any, datetime, datetime | None, bool]] = []
    if oldest is None or oldest > since:
        sources.append((LagRollup, since, oldest if oldest is not None else until,
                        False if oldest is not None else until_inclusive))
    if oldest is not None:
        sources.append((LagFrame, max(since, oldest), until, until_inclusive))
    for model, start, end, inclusive in sources:
        for polled_at, payload in _frames(model, cluster_id, FrameKind.LOG_OFFSETS, None, start, end, inclusive):
            for name, partition, log_start, log_end in frames.decode(frames.LOG_OFFSETS, payload):
                if topic is None or name == topic:
                    points[(name, partition)].append(OffsetPoint(polled_at, log_end, log_start))
    for series in points.values():
        series.sort(key=lambda p: p.polled_at)
    return dict(points)


# -- time-lag anchors -------------------------------------------------------------------

_DECODED: OrderedDict[tuple[str, int], dict[TopicPartitionKey, tuple[int | None, int]]] = OrderedDict()
_DECODED_LIMIT = 24
"""Decoded log-offset frames kept between polls (frames never change once written): the
binary searches of the next poll start where this one's did."""


def _log_frame(source: str, frame_id: int) -> dict[TopicPartitionKey, tuple[int | None, int]]:
    key = (source, frame_id)
    found = _DECODED.get(key)
    if found is not None:
        _DECODED.move_to_end(key)
        return found
    model = LagFrame if source == "raw" else LagRollup
    payload = model.objects.filter(id=frame_id).values_list("payload", flat=True).first()
    found = {} if payload is None else {
        (t, p): (start, end) for t, p, start, end in frames.decode(frames.LOG_OFFSETS, payload)}
    _DECODED[key] = found
    while len(_DECODED) > _DECODED_LIMIT:
        _DECODED.popitem(last=False)
    return found


def log_anchors(cluster_id: int, far: Sequence[tuple[str, int, int]]
                ) -> list[tuple[TopicPartitionKey, OffsetPoint]]:
    """For each (topic, partition, offset): the last stored point whose log end is at or
    below the offset and the first one above it, or, when none is at or below it, the
    partition's oldest point (to extrapolate from). The log end only grows, so a binary
    search over the frames in time finds them, decoding a few frames per search (kept
    decoded between polls)."""
    if not far:
        return []
    oldest_raw = _raw_from(LagFrame, cluster_id, FrameKind.LOG_OFFSETS)
    timeline: list[tuple[datetime, str, int]] = []
    rollups = LagRollup.objects.filter(cluster_id=cluster_id, kind=FrameKind.LOG_OFFSETS)
    if oldest_raw is not None:
        rollups = rollups.filter(polled_at__lt=oldest_raw)
    timeline.extend((at, "rollup", fid) for at, fid in rollups.order_by("polled_at").values_list("polled_at", "id"))
    timeline.extend((at, "raw", fid) for at, fid in LagFrame.objects.filter(
        cluster_id=cluster_id, kind=FrameKind.LOG_OFFSETS).order_by("polled_at", "id").values_list("polled_at", "id"))
    if not timeline:
        return []

    def end_at(index: int, key: TopicPartitionKey) -> tuple[int | None, int] | None:
        at, source, fid = timeline[index]
        return _log_frame(source, fid).get(key)

    anchors: list[tuple[TopicPartitionKey, OffsetPoint]] = []
    for topic, partition, offset in far:
        key = (topic, partition)
        # Frames without the partition count as "below" (before it existed or while unread).
        lo, hi = 0, len(timeline)
        while lo < hi:  # the first frame whose log end is above the offset
            mid = (lo + hi) // 2
            point = end_at(mid, key)
            if point is None or point[1] <= offset:
                lo = mid + 1
            else:
                hi = mid
        below = next((i for i in range(lo - 1, max(-1, lo - 9), -1) if end_at(i, key) is not None), None)
        above = next((i for i in range(lo, min(len(timeline), lo + 8)) if end_at(i, key) is not None), None)
        if below is None:
            # Nothing at or below: the oldest point of the partition, to extrapolate from.
            oldest = above
            if oldest is not None:
                start, end = end_at(oldest, key)  # type: ignore[misc]
                anchors.append((key, OffsetPoint(timeline[oldest][0], end, start)))
            continue
        for index in (below, above):
            if index is not None:
                start, end = end_at(index, key)  # type: ignore[misc]
                anchors.append((key, OffsetPoint(timeline[index][0], end, start)))
    return anchors


# -- writing ------------------------------------------------------------------------------

def detail_due(previous_poll: datetime | None, now: datetime) -> bool:
    """Whether this poll stores a group's partition detail: at the first poll, and at the
    first poll of each MONITOR_PARTITION_DETAIL_SECONDS period."""
    return _first_of_period(previous_poll, now, settings.MONITOR_PARTITION_DETAIL_SECONDS * 1000)


def log_start_due(previous_poll: datetime | None, now: datetime, window_seconds: float) -> bool:
    """Whether this poll stores a partition's log start (its log end is stored at every
    poll): at the first poll of each period of MONITOR_PARTITION_DETAIL_SECONDS, or of half
    the status window when that is shorter, so the window always holds two of them for the
    log-start rate (the one reader of past log starts). Random-looking per partition, they
    were a tenth of a cycle's bytes."""
    return _first_of_period(previous_poll, now,
                            min(settings.MONITOR_PARTITION_DETAIL_SECONDS * 1000, int(window_seconds * 500)))


def _first_of_period(previous_poll: datetime | None, now: datetime, every_ms: int) -> bool:
    """Whether ``now`` is the first poll of its period of ``every_ms`` (every poll when
    that is 0, the first poll when there was none before)."""
    if previous_poll is None or every_ms <= 0:
        return True
    return frames.millis(now) // every_ms != frames.millis(previous_poll) // every_ms


def _split(rows: Iterable[Sequence[Any]]) -> list[tuple[int, list[Sequence[Any]]]]:
    """Rows (group id first, sorted) in buckets of their groups (see :func:`width_for`)."""
    rows = list(rows)
    width = width_for(len({row[0] for row in rows}))
    by_bucket: dict[int, list[Sequence[Any]]] = defaultdict(list)
    for row in rows:
        by_bucket[bucket_of(row[0], width)].append(row)
    return sorted(by_bucket.items())


def frames_of_poll(cluster_id: int, polled_at: datetime, totals: Iterable[Sequence[Any]],
                   partitions: Iterable[Sequence[Any]], log_offsets: Iterable[Sequence[Any]]) -> list[LagFrame]:
    """The frames that store one poll: ``totals`` in :data:`frames.TOTALS` order,
    ``partitions`` in :data:`frames.PARTITIONS` order, ``log_offsets`` in
    :data:`frames.LOG_OFFSETS` order (each sorted; none may be empty)."""
    made: list[LagFrame] = []
    for kind, schema, rows in ((FrameKind.TOTALS, frames.TOTALS, totals),
                               (FrameKind.PARTITIONS, frames.PARTITIONS, partitions)):
        made.extend(LagFrame(cluster_id=cluster_id, kind=kind, bucket=bucket, polled_at=polled_at,
                             payload=frames.encode(schema, bucket_rows))
                    for bucket, bucket_rows in _split(rows))
    log_rows = list(log_offsets)
    if log_rows:
        made.append(LagFrame(cluster_id=cluster_id, kind=FrameKind.LOG_OFFSETS, bucket=0, polled_at=polled_at,
                             payload=frames.encode(frames.LOG_OFFSETS, log_rows)))
    return made


_FRAME_COLUMNS = ("cluster_id", "kind", "bucket", "polled_at", "payload")


def save_frames(made: Iterable[LagFrame]) -> None:
    """Insert frames in one statement (PostgreSQL: a binary COPY, no quoting of their bytes)."""
    insert_rows(LagFrame, _FRAME_COLUMNS, ((f.cluster_id, f.kind, f.bucket, f.polled_at, f.payload) for f in made))


def store_poll(cluster_id: int, polled_at: datetime, totals: Iterable[Sequence[Any]] = (),
               partitions: Iterable[Sequence[Any]] = (), log_offsets: Iterable[Sequence[Any]] = ()) -> None:
    """Write one poll's frames (see :func:`frames_of_poll`)."""
    save_frames(frames_of_poll(cluster_id, polled_at, sorted(totals, key=lambda r: (r[0], r[1])),
                               sorted(partitions, key=lambda r: (r[0], r[1], r[2])),
                               sorted(log_offsets, key=lambda r: (r[0], r[1]))))


def store_rollup(cluster_id: int, polled_at: datetime, totals: Iterable[Sequence[Any]],
                 resolution: int = ROLLUP_SECONDS) -> None:
    """Write topic totals of one rollup bucket starting at ``polled_at`` (rows in
    :data:`frames.TOTALS` order)."""
    LagRollup.objects.bulk_create([
        LagRollup(cluster_id=cluster_id, kind=FrameKind.TOTALS, bucket=bucket, polled_at=polled_at,
                  resolution=resolution, payload=frames.encode(frames.TOTALS, rows))
        for bucket, rows in _split(sorted(totals, key=lambda r: (r[0], r[1])))])


# -- rollups ------------------------------------------------------------------------------

def rolled_up_until(cluster_id: int, kind: int) -> datetime | None:
    """The end of the newest rollup bucket of the cluster (None: no rollups yet)."""
    newest = LagRollup.objects.filter(cluster_id=cluster_id, kind=kind).aggregate(at=Max("polled_at"))["at"]
    if newest is None:
        return None
    return _bucket_start(newest) + timedelta(seconds=ROLLUP_SECONDS)


def _bucket_start(at: datetime) -> datetime:
    ms = frames.millis(at)
    return _EPOCH + timedelta(milliseconds=ms - ms % (ROLLUP_SECONDS * 1000))


def roll_up(cluster_id: int, until: datetime) -> int:
    """Rollup frames for every whole ROLLUP_SECONDS bucket before ``until`` not rolled up
    yet (continuing from the newest rollup); returns the frames written. Idempotent: a
    bucket is written once, from the polled frames in it."""
    written = 0
    end = _bucket_start(until)
    for kind in (FrameKind.TOTALS, FrameKind.LOG_OFFSETS):
        start = rolled_up_until(cluster_id, kind)
        if start is None:
            oldest = _raw_from(LagFrame, cluster_id, kind)
            if oldest is None:
                continue
            start = _bucket_start(oldest)
        if start >= end:
            continue
        made: list[LagRollup] = []
        current: datetime | None = None
        pending: list[tuple[datetime, int, bytes]] = []

        def flush() -> None:
            if current is not None and pending:
                made.extend(_rollup_frames(cluster_id, kind, current, pending))

        for fid_at, bucket, payload in (LagFrame.objects.filter(cluster_id=cluster_id, kind=kind, polled_at__gte=start,
                                                                polled_at__lt=end)
                                        .order_by("polled_at").values_list("polled_at", "bucket", "payload")
                                        .iterator(chunk_size=200)):
            slot = _bucket_start(fid_at)
            if slot != current:
                flush()
                current, pending = slot, []
            pending.append((fid_at, bucket, payload))
        flush()
        LagRollup.objects.bulk_create(made, batch_size=500)
        written += len(made)
    return written


def _rollup_frames(cluster_id: int, kind: int, slot: datetime, polled: list[tuple[datetime, int, bytes]]
                   ) -> list[LagRollup]:
    if kind == FrameKind.LOG_OFFSETS:
        # The last point of each partition in the bucket, at the time it was polled: time
        # lag interpolates between real points.
        last: dict[TopicPartitionKey, tuple[datetime, Any, Any]] = {}
        for at, _, payload in polled:
            for topic, partition, start, end in frames.decode(frames.LOG_OFFSETS, payload):
                last[(topic, partition)] = (at, start, end)
        by_time: dict[datetime, list[tuple[Any, ...]]] = defaultdict(list)
        for (topic, partition), (at, start, end) in sorted(last.items()):
            by_time[at].append((topic, partition, start, end))
        return [LagRollup(cluster_id=cluster_id, kind=kind, bucket=0, polled_at=at, resolution=ROLLUP_SECONDS,
                          payload=frames.encode(frames.LOG_OFFSETS, rows)) for at, rows in sorted(by_time.items())]
    rows: dict[tuple[int, str], list[Any]] = {}
    for _, _, payload in polled:  # oldest first: the offsets end as the bucket's last
        for row in frames.decode(frames.TOTALS, payload):
            key = (row[0], row[1])
            known = rows.get(key)
            if known is None:
                rows[key] = list(row)
                continue
            for index in (2, 3, 4, 5, 6):  # lag, time lag, partitions, unknown, partial: the maximum
                value = row[index]
                if value is not None and (known[index] is None or value > known[index]):
                    known[index] = value
            known[7], known[8] = row[7], row[8]
    return [LagRollup(cluster_id=cluster_id, kind=kind, bucket=bucket, polled_at=slot, resolution=ROLLUP_SECONDS,
                      payload=frames.encode(frames.TOTALS, bucket_rows))
            for bucket, bucket_rows in _split(tuple(r) for _, r in sorted(rows.items()))]
