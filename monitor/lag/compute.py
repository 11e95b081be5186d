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


def newly_lost(previous: PartitionLag | None, current: PartitionLag) -> int:
    """Messages lost on this partition since the previous poll, counting each once.

    Lost offsets are the range [committed, log start). The part that overlaps the
    previous poll's lost range was already counted then.
    """
    if not current.lost_messages or current.committed_offset is None or current.log_start_offset is None:
        return 0
    low, high = current.committed_offset, current.log_start_offset
    if previous is not None and previous.lost_messages and previous.committed_offset is not None \
            and previous.log_start_offset is not None:
        overlap = max(0, min(high, previous.log_start_offset) - max(low, previous.committed_offset))
        return (high - low) - overlap
    return high - low


@dataclass(frozen=True)
class TopicLag:
    topic: str
    lag: int | None
    time_lag_seconds: float | None
    partitions: int
    unknown_partitions: int
    committed_offset_total: int | None = None
    """Sum of the committed offsets (None when there is none)."""
    log_end_offset_total: int | None = None
    """Sum of the log ends of all the topic's partitions (None when none is known)."""


def sum_known(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def max_known(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def topic_lags(lags: Iterable[PartitionLag], time_lags: Mapping[TopicPartitionKey, float | None]) -> list[TopicLag]:
    """Per-topic totals: lag sums the known partitions, time lag is the worst partition."""
    by_topic: dict[str, list[PartitionLag]] = {}
    for lag in lags:
        by_topic.setdefault(lag.topic, []).append(lag)
    return [
        TopicLag(
            topic=topic,
            lag=sum_known(p.lag for p in parts),
            time_lag_seconds=max_known(time_lags.get(p.key) for p in parts),
            partitions=len(parts),
            unknown_partitions=sum(1 for p in parts if p.lag is None),
            committed_offset_total=sum_known(p.committed_offset for p in parts),
            log_end_offset_total=sum_known(p.log_end_offset for p in parts),
        )
        for topic, parts in sorted(by_topic.items())
    ]


@dataclass(frozen=True)
class GroupTotals:
    """A group's partitions summed up in one pass (a cycle does this for every group)."""

    lag: int | None
    """Sum of the known lags; None when no lag is known."""
    committed_total: int | None
    log_end_total: int | None
    """Sum of the log ends of the partitions with a committed offset."""
    topics: list[str]
    """Topics with a committed offset, sorted."""
    lost_messages: int
    lost_partitions: int
    max_time_lag_seconds: float | None
    topic_lags: list[TopicLag]


def group_totals(lags: Sequence[PartitionLag], time_lags: Sequence[float | None]) -> GroupTotals:
    """Totals of one group: ``time_lags`` holds each partition's time lag, in the order of
    ``lags``. The same numbers as :func:`sum_known`, :func:`max_known` and
    :func:`topic_lags` over the partitions, in one pass."""
    lag_total = committed_total = log_end_total = 0
    lag_known = committed_known = log_end_known = False
    lost_messages = lost_partitions = 0
    worst: float | None = None
    committed_topics: set[str] = set()
    # topic -> [lag sum, any lag known, worst time lag, partitions, unknown partitions,
    #           committed sum, any committed, log end sum, any log end]
    by_topic: dict[str, list] = {}
    for part, seconds in zip(lags, time_lags):
        topic, _, committed, _, log_end, lag, lost, _ = part
        totals = by_topic.get(topic)
        if totals is None:
            totals = by_topic[topic] = [0, False, None, 0, 0, 0, False, 0, False]
        totals[3] += 1
        if lag is None:
            totals[4] += 1
        else:
            lag_total += lag
            lag_known = True
            totals[0] += lag
            totals[1] = True
        if seconds is not None:
            if worst is None or seconds > worst:
                worst = seconds
            if totals[2] is None or seconds > totals[2]:
                totals[2] = seconds
        if log_end is not None:
            totals[7] += log_end
            totals[8] = True
        if committed is not None:
            committed_total += committed
            committed_known = True
            committed_topics.add(topic)
            totals[5] += committed
            totals[6] = True
            if log_end is not None:
                log_end_total += log_end
                log_end_known = True
        if lost:
            lost_messages += lost
            lost_partitions += 1
    return GroupTotals(
        lag=lag_total if lag_known else None,
        committed_total=committed_total if committed_known else None,
        log_end_total=log_end_total if log_end_known else None,
        topics=sorted(committed_topics),
        lost_messages=lost_messages,
        lost_partitions=lost_partitions,
        max_time_lag_seconds=worst,
        topic_lags=[
            TopicLag(topic=topic, lag=lag if lag_found else None, time_lag_seconds=seconds, partitions=partitions,
                     unknown_partitions=unknown, committed_offset_total=committed if committed_found else None,
                     log_end_offset_total=log_end if log_end_found else None)
            for topic, (lag, lag_found, seconds, partitions, unknown, committed, committed_found, log_end,
                        log_end_found) in sorted(by_topic.items())
        ],
    )
