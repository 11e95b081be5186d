"""Time lag: how long ago the next message a group must read was written.

From a partition's history of (log end offset, polled at) points, find when the log
end was at the group's committed offset and subtract that from now:

| case                                              | method         | seconds                  |
| ------------------------------------------------- | -------------- | ------------------------ |
| committed offset >= log end                       | exact          | 0                        |
| no committed offset                               | unknown        | None, "no committed offset" |
| fewer than two points                             | unknown        | None, "no history yet"   |
| committed offset between two points               | interpolated   | linear between them      |
| committed offset older than the oldest point      | extrapolated   | rate over the whole table |
| ... and the log end never moved                   | unknown        | None, "no produce rate"  |

Pure: no database, no clock.
"""
from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple
from datetime import datetime, timedelta

from monitor.choices import TimeLagMethod
from monitor.lag.compute import NO_COMMITTED_OFFSET

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
