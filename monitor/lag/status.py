"""Group status from a time window of polled samples, judged per partition and per group.

The first rule that matches wins; every status comes with a one-line reason.

| status    | when                                                                 | detected after |
| --------- | -------------------------------------------------------------------- | -------------- |
| unknown   | no partition of the group has a known lag                            | next poll      |
| data_loss | a committed offset is below its partition's log start now            | next poll      |
| rewind    | a committed offset went backwards within the window (compared with the highest offset the window saw) | next poll |
| stopped   | every lagging partition without progress for MONITOR_STOPPED_AFTER_SECONDS and the broker reports no live members | stopped-after |
| stalled   | every lagging partition without progress for the window (after stopped-after: members live, or membership unknown); or some partitions stuck for the window while others move (named) | one window |
| growing   | >= 3 comparable polls, lag trend up by more than the noise of the commit sawtooth | one window |
| empty     | lag > 0, the broker reports no active members and the committed offsets did not move (>= 2 polls) | next poll |
| idle      | lag 0 and the log end did not move over the window (>= 2 polls)      | one window     |
| ok        | otherwise                                                            | next poll      |

Per partition (Burrow-like, but over polls): a partition is *stuck* from the first poll
that saw its current committed offset while it lagged, until the offset moves or the
lag reaches 0; a poll whose lag is unknown neither moves nor resets it (unknown lag is
never progress). A partition stuck for the whole window is *stalled*.

Totals are compared only with *comparable* polls: the same number of counted partitions
and the same number of partial ones (see :func:`monitor.lag.compute.group_totals`), so a
partition becoming unknown is never read as a drop or a rise. Growth must beat the
sawtooth of a healthy consumer: between two commits the polled lag rises by up to
produce rate x commit interval, so a rise below that (or below 10 messages and 5 %) is
noise. The window holds at least three polls whatever the poll interval
(:func:`effective_window`). Pure: no database, no clock.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple
from datetime import datetime, timedelta

from monitor.choices import GroupStatus
from monitor import humanize
from monitor.lag.changes import PreviousOffsets
from monitor.lag.compute import PartitionLag, TopicPartitionKey


class GroupPoint(NamedTuple):
    """The group at one poll: totals over its partitions (a named tuple: a cycle reads
    back every group's polls of the status window)."""

    polled_at: datetime
    committed_total: int | None
    lag: int | None
    log_end_total: int | None
    counted: int = 0
    """Partitions the totals sum (those with a known lag)."""
    partial: int = 0
    """Partitions with a commit left out because their lag was unknown in that poll."""

    def comparable_with(self, other: "GroupPoint") -> bool:
        return self.lag is not None and (self.counted, self.partial) == (other.counted, other.partial)


class PartitionState(NamedTuple):
    """One partition at this poll, with how long its committed offset has been stuck."""

    topic: str
    partition: int
    committed_offset: int | None
    lag: int | None
    stuck_since: datetime | None
    owner: str | None = None


def stuck_since(previous_committed: int | None, previous_stuck_since: datetime | None,
                committed: int | None, lag: int | None, now: datetime) -> datetime | None:
    """Start of the stretch in which this partition's committed offset has not moved
    while it lagged; None when it is not stuck. A poll with unknown lag keeps the stretch
    as it was: it shows neither progress nor a caught-up partition."""
    if committed is None:
        return None
    if previous_committed is None or committed != previous_committed:
        return None if lag == 0 else now  # unknown lag may be lagging: the stretch starts
    if lag is None:
        return previous_stuck_since
    if lag == 0:
        return None
    return previous_stuck_since or now


def is_stalled(part: PartitionState, now: datetime, window_seconds: float) -> bool:
    return stuck_before(part.stuck_since, part.lag, now - timedelta(seconds=window_seconds))


def stuck_before(since: datetime | None, lag: int | None, cutoff: datetime) -> bool:
    """Stalled: stuck since ``cutoff`` (now minus the window) or longer, and not caught up."""
    return since is not None and lag != 0 and since <= cutoff


def partition_states(parts: Sequence[PartitionLag], previous: Mapping[TopicPartitionKey, PreviousOffsets] | None,
                     owners: Mapping[TopicPartitionKey, str], now: datetime, window_seconds: float,
                     ) -> tuple[list[PartitionState], list[bool]]:
    """Every partition of a group at this poll (:func:`stuck_since` from its previous
    poll, its owner's label where known) and whether each is stalled (:func:`is_stalled`),
    in one pass: a cycle does this for every partition it polls."""
    cutoff = now - timedelta(seconds=window_seconds)
    previous = previous or {}
    new_state = tuple.__new__  # PartitionState without the keyword handling, as compute does
    states: list[PartitionState] = []
    stalled: list[bool] = []
    for topic, partition, committed, _, _, lag, _, _ in parts:
        key = (topic, partition)
        before = previous.get(key)
        since = stuck_since(before[0], before[2], committed, lag, now) if before \
            else stuck_since(None, None, committed, lag, now)
        states.append(new_state(PartitionState, (topic, partition, committed, lag, since, owners.get(key))))
        stalled.append(stuck_before(since, lag, cutoff))
    return states, stalled


_LIVE_STATES = {"stable", "preparingrebalance", "completingrebalance", "assigning", "reconciling"}
_MEMBERLESS_STATES = {"empty", "dead"}


def members_live(broker_state: str, members: int | None) -> bool | None:
    """What the broker says about membership: True (members), False (empty or dead), None
    (it did not say: e.g. DescribeGroups failed and ListGroups gave no state)."""
    if members is not None and members > 0:
        return True
    state = broker_state.strip().lower()
    if members == 0 or state in _MEMBERLESS_STATES:
        return False
    if state in _LIVE_STATES:
        return True
    return None


def effective_window(window_seconds: float, poll_interval_seconds: float) -> float:
    """The status window, widened so that it always holds at least three polls (two and
    a half intervals: polls drift a little)."""
    return max(float(window_seconds), 2.5 * float(poll_interval_seconds))


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
    partitions: Sequence[PartitionState] = ()
    """Per partition, when known; without them, progress is judged from the totals."""
    members_live: bool | None = None
    """True: the broker reports members; False: an empty or dead group; None: unknown."""
    poll_interval_seconds: float = 0.0
    comparable: Sequence[GroupPoint] | None = None
    """:func:`comparable_window` of the history, when the caller has it already (a cycle
    needs it for its forecasts too): the same list, not computed twice."""


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


def sawtooth_floor(points: Sequence[GroupPoint]) -> float:
    """How much the polled lag of a healthy group can rise by chance: between two commits
    it rises by the produce rate x the commit interval. The commit interval is at most
    the longest stretch the committed total stayed put plus one poll spacing (when the
    offsets move at every poll, commits come at least once per poll)."""
    if len(points) < 2:
        return 0.0
    span = (points[-1].polled_at - points[0].polled_at).total_seconds()
    if span <= 0 or points[0].log_end_total is None or points[-1].log_end_total is None:
        return 0.0
    produce_rate = max(0.0, (points[-1].log_end_total - points[0].log_end_total) / span)
    gaps = [(b.polled_at - a.polled_at).total_seconds() for a, b in zip(points, points[1:])]
    longest_still, stretch_start = 0.0, points[0]
    for point in points[1:]:
        if point.committed_total != stretch_start.committed_total:
            stretch_start = point
        longest_still = max(longest_still, (point.polled_at - stretch_start.polled_at).total_seconds())
    return produce_rate * (longest_still + max(gaps))


def is_growing(points: Sequence[GroupPoint]) -> bool:
    """Lag trending up by more than the noise: the least-squares rise over the window
    beats 10 messages, 5 % of the start and the commit sawtooth, and the lower envelope
    (the lag right after commits, as low as the polls saw it) rose too."""
    if len(points) < 3:
        return False
    lags = [float(p.lag or 0) for p in points]
    half = len(points) // 2
    # The cheap tests first (most groups fail them): the floor is at least the plain one.
    if lags[-1] - lags[0] < max(GROWING_MIN_MESSAGES, GROWING_MIN_FRACTION * lags[0]) \
            or min(lags[half:]) <= min(lags[:half]):
        return False
    span = (points[-1].polled_at - points[0].polled_at).total_seconds()
    rise = lag_slope(points) * span
    floor = max(GROWING_MIN_MESSAGES, GROWING_MIN_FRACTION * lags[0], sawtooth_floor(points))
    return rise >= floor and lags[-1] - lags[0] >= floor


def since_last_progress(history: Sequence[GroupPoint]) -> datetime | None:
    """From the totals alone: start of the current stretch where lag > 0 and the committed
    offsets did not move. Polls that are not comparable with the current one (unknown or
    partial lag) neither break nor extend it."""
    current = history[-1]
    if not current.lag:
        return None
    start = current.polled_at
    for point in reversed(history[:-1]):
        if not point.comparable_with(current):
            continue  # unknown lag is never progress
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


def comparable_window(history: Sequence[GroupPoint], now: datetime, window_seconds: float) -> list[GroupPoint]:
    """The polls of the window whose totals can be compared with the current one."""
    current = history[-1]
    since = now - timedelta(seconds=window_seconds)
    return [p for p in history if p.polled_at >= since and p.comparable_with(current)]


def _partition_name(part: PartitionState) -> str:
    return f"{part.topic}/{part.partition}"


def _stalled_reason(stalled: list[PartitionState], moving: int, now: datetime) -> str:
    worst = max(stalled, key=lambda p: (p.lag or 0, -(p.stuck_since or now).timestamp()))
    owner = f", owner {worst.owner}" if worst.owner else ""
    lag = f"{humanize.count(worst.lag)} messages behind" if worst.lag is not None else "lag unknown"
    stuck_for = humanize.duration((now - worst.stuck_since).total_seconds()) if worst.stuck_since else "?"
    text = (f"{_partition_name(worst)} stuck at offset {humanize.count(worst.committed_offset or 0)} "
            f"for {stuck_for} with {lag}{owner}")
    others = [p for p in stalled if p is not worst]
    if others:
        names = ", ".join(_partition_name(p) for p in others[:3])
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        text += f"; also stuck: {names}{more}"
    if moving:
        text += f"; {moving} other partition{'s' if moving != 1 else ''} progressing"
    return text


def _no_progress_verdict(stuck_for: float, lag: int, inputs: StatusInputs, window: float) -> Verdict | None:
    if stuck_for >= inputs.stopped_after_seconds:
        waiting = f"{humanize.count(lag)} messages wait"
        if inputs.members_live is False:
            return Verdict(GroupStatus.STOPPED,
                           f"no progress for {humanize.duration(stuck_for)} while {waiting}; no active members")
        if inputs.members_live is True:
            return Verdict(GroupStatus.STALLED,
                           f"no progress for {humanize.duration(stuck_for)} while {waiting}; "
                           f"the group still has members")
        return Verdict(GroupStatus.STALLED,
                       f"no progress for {humanize.duration(stuck_for)} while {waiting} (membership unknown)")
    if stuck_for >= window:
        return Verdict(GroupStatus.STALLED,
                       f"no progress in the last {humanize.duration(window)} "
                       f"while {humanize.count(lag)} messages wait")
    return None


def group_status(inputs: StatusInputs) -> Verdict:
    history = list(inputs.history)
    current = history[-1]
    now = inputs.now
    window_seconds = effective_window(inputs.window_seconds, inputs.poll_interval_seconds)
    window = list(inputs.comparable) if inputs.comparable is not None \
        else comparable_window(history, now, window_seconds)
    lag = current.lag

    if lag is None:
        if current.partial:
            return Verdict(GroupStatus.UNKNOWN, f"lag of {current.partial} partition"
                                                f"{'s' if current.partial != 1 else ''} unknown in this poll")
        return Verdict(GroupStatus.UNKNOWN, "no committed offset on any partition")

    if inputs.lost_messages > 0:
        where = f" ({inputs.data_loss_partitions} partition{'s' if inputs.data_loss_partitions != 1 else ''})" \
            if inputs.data_loss_partitions else ""
        return Verdict(GroupStatus.DATA_LOSS,
                       f"{humanize.count(inputs.lost_messages)} messages deleted before they were consumed{where}")

    rewinds = [r for r in inputs.rewinds if (now - r.at).total_seconds() <= window_seconds]
    if rewinds:
        last = max(rewinds, key=lambda r: r.at)
        ago = (now - last.at).total_seconds()
        when = "just now" if ago < 1 else f"{humanize.duration(ago)} ago"
        return Verdict(GroupStatus.REWIND, f"{last.detail}, {when}")

    if inputs.partitions:
        lagging = [p for p in inputs.partitions if p.lag or (p.lag is None and p.stuck_since is not None)]
        stuck_times = [p.stuck_since for p in lagging if p.stuck_since is not None]
        stuck = [p for p in lagging if p.stuck_since is not None]
        if lagging and len(stuck_times) == len(lagging):
            since = max(stuck_times)
            verdict = _no_progress_verdict((now - since).total_seconds(), lag, inputs, window_seconds)
            if verdict is not None:
                return verdict
        stalled = [p for p in stuck if is_stalled(p, now, window_seconds)]
        if stalled:
            moving = sum(1 for p in inputs.partitions
                         if p.committed_offset is not None and not is_stalled(p, now, window_seconds))
            return Verdict(GroupStatus.STALLED, _stalled_reason(stalled, moving, now))
    else:
        stuck_since_total = since_last_progress(history)
        if stuck_since_total is not None:
            verdict = _no_progress_verdict((now - stuck_since_total).total_seconds(), lag, inputs, window_seconds)
            if verdict is not None:
                return verdict

    if is_growing(window):
        span = (window[-1].polled_at - window[0].polled_at).total_seconds()
        return Verdict(GroupStatus.GROWING,
                       f"lag grew from {humanize.count(window[0].lag or 0)} to {humanize.count(window[-1].lag or 0)} "
                       f"messages in the last {humanize.duration(span)}")

    if lag and (inputs.members == 0 or inputs.broker_state.lower() == "empty") and len(window) >= 2 \
            and len({p.committed_total for p in window}) == 1:
        # A consumer with manually assigned partitions is no member yet commits: an empty
        # group is only news when nothing moves.
        return Verdict(GroupStatus.EMPTY, f"no active members; {humanize.count(lag)} messages waiting")

    ends = [p.log_end_total for p in window]
    if lag == 0 and len(window) >= 2 and len(set(ends)) == 1:
        span = (window[-1].polled_at - window[0].polled_at).total_seconds()
        return Verdict(GroupStatus.IDLE, f"caught up; no new messages in the last {humanize.duration(span)}")

    if lag == 0:
        return Verdict(GroupStatus.OK, "caught up")
    rate = consume_rate(window)
    consuming = f", consuming {humanize.rate(rate)}" if rate else ""
    return Verdict(GroupStatus.OK, f"{humanize.count(lag)} messages behind{consuming}")
