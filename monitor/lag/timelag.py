"""Time lag: how long ago the next message a group must read was written.

Two ways to know it. **record**: the timestamp of the record at the committed offset
itself, read with a Fetch (see :mod:`monitor.lag.record_times`): poll time - record
timestamp, right from a group's first poll. **interpolated**: from a partition's history
of (log end offset, polled at) points, find when the log end was at the group's committed
offset and subtract that from now. The record wins when it was read; the history answers
for the rest and whenever the record could not be used:

| case                                              | method         | seconds                  |
| ------------------------------------------------- | -------------- | ------------------------ |
| committed offset >= log end                       | exact          | 0                        |
| no committed offset                               | unknown        | None, "no committed offset" |
| fewer than two points                             | unknown        | None, "no history yet"   |
| committed offset between two points               | interpolated   | linear between them      |
| committed offset older than the oldest point      | extrapolated   | rate over the whole table |
| ... and the log end never moved                   | unknown        | None, "no produce rate"  |
| record at the committed offset read               | record         | poll time - its timestamp |
| record not read: cycle's fetch budget spent       | <above> (budget) | the history's answer   |

Record timestamps at the edges (:func:`record_time_lag`):

- CreateTime is the producer's clock, LogAppendTime the broker's; a record from the
  future (beyond :data:`SKEW_TOLERANCE_SECONDS`) is clock skew: the history answers when
  it can, else 0 s, never negative, and the reason says "clock skew";
- later records older than the one read (timestamps going backwards) flag producer skew;
- a committed offset that is not in the log (compacted away, a transaction marker, an
  aborted record) is answered by the next record a consumer would read;
- a committed offset below the log start (data loss, counted apart) is answered by the
  record at the log start: what the consumer will read next.

Pure: no database, no clock.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple
from datetime import datetime, timedelta

from monitor.choices import TimeLagMethod
from monitor.lag.compute import NO_COMMITTED_OFFSET

PartitionOffset = tuple[str, int, int]
"""(topic, partition, offset)."""

NO_HISTORY_YET = "no history yet"
NO_PRODUCE_RATE = "no produce rate"


class OffsetPoint(NamedTuple):
    polled_at: datetime
    log_end_offset: int
    log_start_offset: int | None = None


@dataclass(frozen=True)
class TimeLag:
    seconds: float | None
    method: TimeLagMethod
    reason: str = ""


# The answers that need no history, made once: a cycle hands them out thousands of times.
CAUGHT_UP = TimeLag(0.0, TimeLagMethod.EXACT)
UNKNOWN_WITHOUT_COMMIT = TimeLag(None, TimeLagMethod.UNKNOWN, NO_COMMITTED_OFFSET)
UNKNOWN_WITHOUT_LOG_END = TimeLag(None, TimeLagMethod.UNKNOWN, "log end offset unavailable")
UNKNOWN_WITHOUT_HISTORY = TimeLag(None, TimeLagMethod.UNKNOWN, NO_HISTORY_YET)


def monotonic_tail(points: Sequence[OffsetPoint]) -> list[OffsetPoint]:
    """The newest run of points whose log end never decreases, oldest first.

    A log end that goes down means the topic was deleted and recreated: the points
    before that describe another log.
    """
    ordered = sorted(points, key=lambda p: p.polled_at)
    start = len(ordered) - 1
    while start > 0 and ordered[start - 1].log_end_offset <= ordered[start].log_end_offset:
        start -= 1
    return ordered[max(start, 0):]


class PartitionHistory:
    """A partition's (log end, polled at) table made ready once for every group reading
    it: only points up to ``now``, the current poll added, the newest monotonic run."""

    def __init__(self, history: Sequence[OffsetPoint], log_end_offset: int | None, now: datetime) -> None:
        points = [p for p in history if p.polled_at <= now]
        if log_end_offset is not None and not any(p.polled_at == now for p in points):
            points.append(OffsetPoint(now, log_end_offset))
        self.points = monotonic_tail(points)
        self.ends = [p.log_end_offset for p in self.points]
        self.now = now
        self._behind: dict[int, TimeLag] = {}

    def behind(self, committed_offset: int) -> TimeLag:
        """Time lag at ``now`` of a committed offset below the log end; groups at the same
        offset share the answer."""
        found = self._behind.get(committed_offset)
        if found is None:
            found = self._behind[committed_offset] = _behind(committed_offset, self, self.now)
        return found


def time_when_log_end_was(offset: int, history: PartitionHistory) -> tuple[datetime, TimeLagMethod] | TimeLag:
    """When the log end stood at ``offset``."""
    points = history.points
    after = bisect.bisect_right(history.ends, offset)  # first point already past the offset
    if after == len(points):
        # Every point is at or below the offset: the next message came after the last one.
        return points[-1].polled_at, TimeLagMethod.INTERPOLATED
    if after > 0:
        before, later = points[after - 1], points[after]
        fraction = (offset - before.log_end_offset) / (later.log_end_offset - before.log_end_offset)
        span = (later.polled_at - before.polled_at).total_seconds()
        return before.polled_at + timedelta(seconds=fraction * span), TimeLagMethod.INTERPOLATED
    oldest, newest = points[0], points[-1]
    span = (newest.polled_at - oldest.polled_at).total_seconds()
    produced = newest.log_end_offset - oldest.log_end_offset
    if span <= 0 or produced <= 0:
        return TimeLag(None, TimeLagMethod.UNKNOWN, NO_PRODUCE_RATE)
    rate = produced / span
    return oldest.polled_at - timedelta(seconds=(oldest.log_end_offset - offset) / rate), TimeLagMethod.EXTRAPOLATED


def time_lag(
    committed_offset: int | None, log_end_offset: int | None, history: Sequence[OffsetPoint] | PartitionHistory,
    now: datetime,
) -> TimeLag:
    """Time lag of one group on one partition.

    ``history`` is the partition's (log end, polled at) table, in any order (or a
    :class:`PartitionHistory` shared by the groups); the current poll's point
    (``log_end_offset`` at ``now``) is added when it is missing.
    """
    if committed_offset is None:
        return UNKNOWN_WITHOUT_COMMIT
    if log_end_offset is None:
        return UNKNOWN_WITHOUT_LOG_END
    if committed_offset >= log_end_offset:
        return CAUGHT_UP
    if not isinstance(history, PartitionHistory):
        history = PartitionHistory(history, log_end_offset, now)
    elif history.now == now:
        return history.behind(committed_offset)
    return _behind(committed_offset, history, now)


def _behind(committed_offset: int, history: PartitionHistory, now: datetime) -> TimeLag:
    if len(history.points) < 2:
        return UNKNOWN_WITHOUT_HISTORY
    found = time_when_log_end_was(committed_offset, history)
    if isinstance(found, TimeLag):
        return found
    at, method = found
    return TimeLag(max(0.0, (now - at).total_seconds()), method)


# -- record timestamps -------------------------------------------------------------

SKEW_TOLERANCE_SECONDS = 1.0
"""Records up to this far in the future (or going back this far) are ordinary clock
differences between hosts, not worth a flag."""

_BUDGET_METHOD = {
    TimeLagMethod.INTERPOLATED: TimeLagMethod.INTERPOLATED_BUDGET,
    TimeLagMethod.EXTRAPOLATED: TimeLagMethod.EXTRAPOLATED_BUDGET,
    TimeLagMethod.UNKNOWN: TimeLagMethod.UNKNOWN_BUDGET,
}
NOT_READ_BUDGET = "record not read this cycle: the fetch budget went to partitions further behind"


@dataclass(frozen=True)
class RecordTime:
    """The record a consumer at ``requested_offset`` reads next, and when it was written."""

    requested_offset: int
    offset: int
    """The record found: later than requested when that offset is not in the log."""
    timestamp: datetime
    log_append_time: bool
    exact: bool = True
    """False: the batch was larger than the byte budget; its first record's timestamp."""
    backwards_seconds: float = 0.0
    """How far later records went back in time (producer clocks disagree)."""


def record_time_lag(record: RecordTime, now: datetime, fallback: TimeLag) -> TimeLag:
    """Time lag from the record a group reads next; ``fallback`` is the history's answer
    (used only when the record's clock is ahead of ours)."""
    seconds = (now - record.timestamp).total_seconds()
    clock = "broker" if record.log_append_time else "producer"
    if seconds < -SKEW_TOLERANCE_SECONDS:
        skew = f"{clock} clock skew: record at offset {record.offset:,} is {-seconds:.1f} s in the future"
        if fallback.seconds is not None:
            return TimeLag(fallback.seconds, fallback.method, f"{skew}; {fallback.method} from the log-end history")
        return TimeLag(0.0, TimeLagMethod.RECORD, f"{skew}; shown as 0 s (at least)")
    notes = []
    if record.offset != record.requested_offset:
        notes.append(f"offset {record.requested_offset:,} not in the log (compacted, transaction marker or "
                     f"aborted): next record {record.offset:,}")
    if not record.exact:
        notes.append("batch larger than the byte budget: timestamp of its first record")
    if record.backwards_seconds > SKEW_TOLERANCE_SECONDS:
        notes.append(f"producer clock skew: timestamps go back {record.backwards_seconds:.1f} s after "
                     f"offset {record.offset:,}")
    return TimeLag(max(0.0, seconds), TimeLagMethod.RECORD, "; ".join(notes))


def over_budget(fallback: TimeLag) -> TimeLag:
    """The history's answer for a partition whose record the budget left unread."""
    method = _BUDGET_METHOD.get(fallback.method, fallback.method)
    return TimeLag(fallback.seconds, method, fallback.reason or NOT_READ_BUDGET)


def choose_reads(candidates: Iterable[tuple[str, int, int, int]], max_partitions: int
                 ) -> tuple[list[PartitionOffset], list[PartitionOffset]]:
    """Which (topic, partition, offset) records to read this cycle, from candidates
    (topic, partition, offset, lag in messages): the partitions lagging most first, at
    most ``max_partitions`` of them, every wanted offset of a chosen partition (one
    Fetch reads from the lowest; the others are answered when the bytes reach them).
    Returns (to read, left for the budget)."""
    by_partition: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for topic, partition, offset, lag in candidates:
        by_partition.setdefault((topic, partition), []).append((offset, lag))
    ranked = sorted(by_partition.items(), key=lambda item: (-max(lag for _, lag in item[1]), item[0]))
    chosen: list[PartitionOffset] = []
    left: list[PartitionOffset] = []
    for rank, ((topic, partition), offsets) in enumerate(ranked):
        target = chosen if rank < max_partitions else left
        target.extend((topic, partition, offset) for offset, _ in sorted(set(offsets)))
    return chosen, left
