"""Group status from a fixed time window of polled samples (not a window of commits).

The first rule that matches wins; every status comes with a one-line reason.

| status    | when                                                                 | reason, e.g.                                              |
| --------- | -------------------------------------------------------------------- | --------------------------------------------------------- |
| unknown   | no partition of the group has a known lag                            | "no committed offset on any partition"                    |
| data_loss | a committed offset is below its partition's log start now            | "1,200 messages deleted before they were consumed (2 partitions)" |
| rewind    | a committed offset went backwards within the window                  | "orders/3: committed offset went back from 5,000 to 100 (4,900 messages to read again), 4 min ago" |
| stopped   | lag > 0 and no committed-offset progress for MONITOR_STOPPED_AFTER_SECONDS | "no progress for 16 min while 4,500 messages wait"  |
| stalled   | lag > 0 and no committed-offset progress over the whole window       | "no progress in the last 10 min while 4,500 messages wait" |
| growing   | >= 3 polls in the window, least-squares slope of lag > 0, last - first >= max(10, 5% of first) | "lag grew from 120 to 4,500 messages in the last 10 min" |
| empty     | the broker reports no active members                                 | "no active members; 120 messages waiting"                 |
| idle      | lag 0 and the log end did not move over the window (>= 2 polls)      | "caught up; no new messages in the last 10 min"           |
| ok        | otherwise                                                            | "120 messages behind, consuming 40/s" or "caught up"      |

"No progress" is measured from the later of: the last change of the group's committed
offsets, and the moment its lag became positive (a caught-up group that gets one new
message is not "stopped" because it had nothing to do before). The window is
MONITOR_STATUS_WINDOW_SECONDS. Pure: no database, no clock.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple
from datetime import datetime

from monitor.choices import GroupStatus
from monitor import humanize


class GroupPoint(NamedTuple):
    """The group at one poll: totals over its partitions (a named tuple: a cycle reads
    back every group's polls of the status window)."""

    polled_at: datetime
    committed_total: int | None
    lag: int | None
    log_end_total: int | None


@dataclass(frozen=True)
class Rewind:
    """An offset reset the poller saw; ``detail`` names the partition and the offsets."""

    at: datetime
    detail: str


@dataclass(frozen=True)
class StatusInputs:
    now: datetime
    history: Sequence[GroupPoint]
    """Polls oldest first, the current one last; at least the window (and the
    stopped-after period) back when that much history exists."""
    window_seconds: float
    stopped_after_seconds: float
    lost_messages: int = 0
    """Messages below the log start right now (current position, not cumulative)."""
    data_loss_partitions: int = 0
    rewinds: Sequence[Rewind] = ()
    members: int | None = None
    broker_state: str = ""


@dataclass(frozen=True)
class Verdict:
    status: GroupStatus
    reason: str


def lag_slope(points: Sequence[GroupPoint]) -> float:
    """Least-squares slope of lag over time, messages per second."""
    xs = [(p.polled_at - points[0].polled_at).total_seconds() for p in points]
    ys = [float(p.lag or 0) for p in points]
    n = len(points)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    var_x = sum((x - mean_x) ** 2 for x in xs)
    if var_x == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var_x


GROWING_MIN_MESSAGES = 10
GROWING_MIN_FRACTION = 0.05


def grew_beyond_noise(first: int, last: int) -> bool:
    """Lag that wobbles by a message or two between polls of a healthy consumer is not
    "falling behind": growth must reach 10 messages and 5% of where it started."""
    return last - first >= max(GROWING_MIN_MESSAGES, GROWING_MIN_FRACTION * first)


def since_last_progress(history: Sequence[GroupPoint]) -> datetime | None:
    """Start of the current stretch where lag > 0 and the committed offsets did not move."""
    current = history[-1]
    if not current.lag:
        return None
    start = current.polled_at
    for point in reversed(history[:-1]):
        if not point.lag or point.committed_total != current.committed_total:
            break
        start = point.polled_at
    return start


def consume_rate(points: Sequence[GroupPoint]) -> float | None:
    known = [p for p in points if p.committed_total is not None]
    if len(known) < 2:
        return None
    span = (known[-1].polled_at - known[0].polled_at).total_seconds()
    if span <= 0:
        return None
    return max(0.0, (known[-1].committed_total - known[0].committed_total) / span)  # type: ignore[operator]


def group_status(inputs: StatusInputs) -> Verdict:
    history = list(inputs.history)
    current = history[-1]
    now = inputs.now
    window = [p for p in history if (now - p.polled_at).total_seconds() <= inputs.window_seconds]
    lag = current.lag

    if lag is None:
        return Verdict(GroupStatus.UNKNOWN, "no committed offset on any partition")

    if inputs.lost_messages > 0:
        where = f" ({inputs.data_loss_partitions} partition{'s' if inputs.data_loss_partitions != 1 else ''})" \
            if inputs.data_loss_partitions else ""
        return Verdict(GroupStatus.DATA_LOSS,
                       f"{humanize.count(inputs.lost_messages)} messages deleted before they were consumed{where}")

    rewinds = [r for r in inputs.rewinds if (now - r.at).total_seconds() <= inputs.window_seconds]
    if rewinds:
        last = max(rewinds, key=lambda r: r.at)
        ago = (now - last.at).total_seconds()
        when = "just now" if ago < 1 else f"{humanize.duration(ago)} ago"
        return Verdict(GroupStatus.REWIND, f"{last.detail}, {when}")

    stuck_since = since_last_progress(history)
    if stuck_since is not None:
        stuck_for = (now - stuck_since).total_seconds()
        if stuck_for >= inputs.stopped_after_seconds:
            return Verdict(GroupStatus.STOPPED,
                           f"no progress for {humanize.duration(stuck_for)} while {humanize.count(lag)} messages wait")
        if stuck_for >= inputs.window_seconds:
            return Verdict(GroupStatus.STALLED,
                           f"no progress in the last {humanize.duration(inputs.window_seconds)} "
                           f"while {humanize.count(lag)} messages wait")

    known = [p for p in window if p.lag is not None]
    if len(known) >= 3 and grew_beyond_noise(known[0].lag, known[-1].lag) and lag_slope(known) > 0:  # type: ignore[arg-type]
        span = (known[-1].polled_at - known[0].polled_at).total_seconds()
        return Verdict(GroupStatus.GROWING,
                       f"lag grew from {humanize.count(known[0].lag)} to {humanize.count(known[-1].lag)} "
                       f"messages in the last {humanize.duration(span)}")

    if inputs.members == 0 or inputs.broker_state.lower() == "empty":
        waiting = f"; {humanize.count(lag)} messages waiting" if lag else ""
        return Verdict(GroupStatus.EMPTY, f"no active members{waiting}")

    ends = [p.log_end_total for p in window]
    if lag == 0 and len(window) >= 2 and None not in ends and len(set(ends)) == 1:
        span = (window[-1].polled_at - window[0].polled_at).total_seconds()
        return Verdict(GroupStatus.IDLE, f"caught up; no new messages in the last {humanize.duration(span)}")

    if lag == 0:
        return Verdict(GroupStatus.OK, "caught up")
    rate = consume_rate(window)
    consuming = f", consuming {humanize.rate(rate)}" if rate else ""
    return Verdict(GroupStatus.OK, f"{humanize.count(lag)} messages behind{consuming}")
