"""Lag maths: per-partition lag from offsets, and per-topic / per-group totals.

Pure functions of plain data. The rules a user sees:

- no committed offset: lag is unknown (``None``), never 0;
- committed offset ahead of the log end (e.g. a topic recreated under the group):
  lag 0, with a note;
- committed offset below the log start (retention deleted unread messages): the lag
  counts only the messages still readable (log end - log start) and the deleted ones
  are counted apart as lost (log start - committed).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import NamedTuple

NO_COMMITTED_OFFSET = "no committed offset"

TopicPartitionKey = tuple[str, int]


class PartitionLag(NamedTuple):
    """A named tuple: a cycle makes one per group and partition, tens of thousands."""

    topic: str
    partition: int
    committed_offset: int | None
    log_start_offset: int | None
    log_end_offset: int | None
    lag: int | None
    lost_messages: int = 0
    note: str = ""

    @property
    def key(self) -> TopicPartitionKey:
        return (self.topic, self.partition)


def partition_lag(
    topic: str,
    partition: int,
    committed_offset: int | None,
    log_start_offset: int | None,
    log_end_offset: int | None,
    log_error: str = "",
) -> PartitionLag:
    """Lag of one group on one partition. ``log_end_offset`` is None when the broker
    did not answer for this partition (``log_error`` says why)."""
    base = (topic, partition, committed_offset, log_start_offset, log_end_offset)
    if committed_offset is None:
        return PartitionLag(*base, lag=None, note=NO_COMMITTED_OFFSET)
    if log_end_offset is None:
        return PartitionLag(*base, lag=None, note=f"log offsets unavailable: {log_error or 'no answer'}")
    if committed_offset > log_end_offset:
        return PartitionLag(
            *base, lag=0,
            note=f"committed offset {committed_offset:,} is ahead of log end {log_end_offset:,}; lag shown as 0",
        )
    if log_start_offset is not None and committed_offset < log_start_offset:
        lost = log_start_offset - committed_offset
        return PartitionLag(
            *base, lag=log_end_offset - log_start_offset, lost_messages=lost,
            note=f"{lost:,} messages deleted before they were consumed "
                 f"(committed {committed_offset:,} < log start {log_start_offset:,})",
        )
    return PartitionLag(*base, lag=log_end_offset - committed_offset)


def group_partition_lags(
    committed: Mapping[TopicPartitionKey, int],
    partition_counts: Mapping[str, int],
    log_offsets: Mapping[TopicPartitionKey, tuple[int | None, int]],
    log_errors: Mapping[TopicPartitionKey, str],
) -> list[PartitionLag]:
    """Every partition of every topic the group has committed on: the partitions it has
    not committed on yet are reported with an unknown lag rather than left out."""
    committed_by_topic: dict[str, list[int]] = {}
    for topic, partition in committed:
        committed_by_topic.setdefault(topic, []).append(partition)
    lags: list[PartitionLag] = []
    append = lags.append
    # In (topic, partition) order, as covered_partitions() sorted.
    for topic in sorted(committed_by_topic):
        count = partition_counts.get(topic, 0)
        ordered: Iterable[int] = range(count)
        if not all(0 <= p < count for p in committed_by_topic[topic]):  # commits the metadata does not know
            ordered = sorted(set(ordered).union(committed_by_topic[topic]))
        for partition in ordered:
            key = (topic, partition)
            offset = committed.get(key)
            start, end = log_offsets.get(key, _NO_LOG_OFFSETS)
            if offset is not None and end is not None and offset <= end and (start is None or offset >= start):
                # The common case, built without the keyword handling of PartitionLag(...).
                append(_new_tuple(PartitionLag, (topic, partition, offset, start, end, end - offset, 0, "")))
            else:
                append(partition_lag(topic, partition, offset, start, end, log_errors.get(key, "")))
    return lags


_NO_LOG_OFFSETS: tuple[None, None] = (None, None)
_new_tuple = tuple.__new__


def covered_partitions(
    committed: Mapping[TopicPartitionKey, int], partition_counts: Mapping[str, int],
) -> set[TopicPartitionKey]:
    keys = set(committed)
    for topic in {t for t, _ in committed}:
        keys.update(zip(repeat(topic), range(partition_counts.get(topic, 0))))
    return keys


def covered_partitions_of_groups(
    committed_by_group: Mapping[str, Mapping[TopicPartitionKey, int]], partition_counts: Mapping[str, int],
) -> set[TopicPartitionKey]:
    """The union of :func:`covered_partitions` over many groups, in one pass."""
    keys: set[TopicPartitionKey] = set()
    for committed in committed_by_group.values():
        keys.update(committed)
    for topic in {t for t, _ in keys}:
        keys.update(zip(repeat(topic), range(partition_counts.get(topic, 0))))
    return keys


def newly_lost(counted_to: int | None, current: PartitionLag) -> tuple[int, int | None]:
    """Messages lost on this partition not counted before, and the new mark to keep.

    Lost offsets are the range [committed, log start). ``counted_to`` is the log start up
    to which losses of this partition were already counted (kept with the group, not with
    the raw samples, so that a polling gap longer than their retention counts nothing
    twice). A log start below the mark means the topic was recreated: the mark restarts.
    """
    if counted_to is not None and current.log_start_offset is not None and current.log_start_offset < counted_to:
        counted_to = None
    if not current.lost_messages or current.committed_offset is None or current.log_start_offset is None:
        return 0, counted_to
    low = current.committed_offset if counted_to is None else max(current.committed_offset, counted_to)
    high = current.log_start_offset
    return max(0, high - low), high


@dataclass(frozen=True)
class TopicLag:
    topic: str
    lag: int | None
    time_lag_seconds: float | None
    partitions: int
    unknown_partitions: int
    committed_offset_total: int | None = None
    """Sum of the committed offsets of the counted partitions (None when none is counted)."""
    log_end_offset_total: int | None = None
    """Sum of the log ends of the counted partitions (None when none is counted)."""
    partial_partitions: int = 0
    """Unknown partitions that have a commit (their log offsets could not be read): the
    totals leave them out, so they are partial."""


def sum_known(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def max_known(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def is_partial_partition(part: PartitionLag) -> bool:
    """A partition the group committed on whose lag is unknown in this poll (its log
    offsets could not be read): it makes every total over it partial."""
    return part.lag is None and part.committed_offset is not None


def topic_lags(lags: Iterable[PartitionLag], time_lags: Mapping[TopicPartitionKey, float | None]) -> list[TopicLag]:
    """Per-topic totals, by the one definition of :func:`group_totals`."""
    lags = list(lags)
    return group_totals(lags, [time_lags.get(p.key) for p in lags]).topic_lags


@dataclass(frozen=True)
class GroupTotals:
    """A group's partitions summed up in one pass (a cycle does this for every group).

    The one definition of every total, for the current poll and for stored polls alike
    (the stored per-topic rows sum to these): lag, committed offsets and log ends are
    summed over the same partitions, the *counted* ones, those whose lag is known. A
    partition without a commit is not read by the group and counts nowhere; a partition
    with a commit but unknown lag (log offsets not readable this poll) makes the totals
    *partial* (``partial_partitions``), and a partial total is never compared with a full
    one (status window, rates, alerts).
    """

    lag: int | None
    """Sum of the known lags; None when no lag is known."""
    committed_total: int | None
    log_end_total: int | None
    """Sum of the log ends of the counted partitions."""
    topics: list[str]
    """Topics with a committed offset, sorted."""
    lost_messages: int
    lost_partitions: int
    max_time_lag_seconds: float | None
    topic_lags: list[TopicLag]
    counted_partitions: int = 0
    partial_partitions: int = 0


def group_totals(lags: Sequence[PartitionLag], time_lags: Sequence[float | None]) -> GroupTotals:
    """Totals of one group: ``time_lags`` holds each partition's time lag, in the order of
    ``lags``."""
    lag_total = committed_total = log_end_total = 0
    counted = partial = 0
    lost_messages = lost_partitions = 0
    worst: float | None = None
    committed_topics: set[str] = set()
    # topic -> [lag sum, counted, worst time lag, partitions, unknown, committed sum, log end sum, partial]
    by_topic: dict[str, list] = {}
    for part, seconds in zip(lags, time_lags):
        topic, _, committed, _, log_end, lag, lost, _ = part
        totals = by_topic.get(topic)
        if totals is None:
            totals = by_topic[topic] = [0, 0, None, 0, 0, 0, 0, 0]
        totals[3] += 1
        if committed is not None:
            committed_topics.add(topic)
        if lag is None or committed is None or log_end is None:  # a known lag has both offsets
            totals[4] += 1
            if committed is not None:
                totals[7] += 1
                partial += 1
        else:
            counted += 1
            lag_total += lag
            totals[0] += lag
            totals[1] += 1
            # A known lag has a commit and a log end.
            committed_total += committed
            totals[5] += committed
            log_end_total += log_end
            totals[6] += log_end
        if seconds is not None:
            if worst is None or seconds > worst:
                worst = seconds
            if totals[2] is None or seconds > totals[2]:
                totals[2] = seconds
        if lost:
            lost_messages += lost
            lost_partitions += 1
    return GroupTotals(
        lag=lag_total if counted else None,
        committed_total=committed_total if counted else None,
        log_end_total=log_end_total if counted else None,
        topics=sorted(committed_topics),
        lost_messages=lost_messages,
        lost_partitions=lost_partitions,
        max_time_lag_seconds=worst,
        topic_lags=[
            TopicLag(topic=topic, lag=lag if found else None, time_lag_seconds=seconds, partitions=partitions,
                     unknown_partitions=unknown, committed_offset_total=committed if found else None,
                     log_end_offset_total=log_end if found else None, partial_partitions=partial_here)
            for topic, (lag, found, seconds, partitions, unknown, committed, log_end, partial_here)
            in sorted(by_topic.items())
        ],
        counted_partitions=counted,
        partial_partitions=partial,
    )
