"""What changed in a group between two polls: the lifecycle events marked on charts.

Pure: compares the previous poll's partitions with the current ones.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from monitor.choices import GroupEventKind
from monitor import humanize
from monitor.lag.compute import PartitionLag, TopicPartitionKey


PreviousOffsets = tuple[int | None, int | None, datetime | None]
"""A partition at the group's previous poll: (committed offset, log start offset, stuck since)."""


def previous_lag(key: TopicPartitionKey, offsets: PreviousOffsets | None) -> PartitionLag | None:
    """The previous poll of a partition as far as its offsets tell (what was lost then)."""
    if offsets is None:
        return None
    committed, start = offsets[0], offsets[1]
    lost = start - committed if committed is not None and start is not None and committed < start else 0
    return PartitionLag(key[0], key[1], committed, start, None, None, lost)


def rewind_detail(topic: str, partition: int, highest: int, committed: int, window: str = "") -> str:
    """What an offset reset says: the drop from the highest committed offset seen (in the
    window, when ``window`` names it), not merely from the previous poll."""
    since = f" (the highest in the last {window})" if window else ""
    return (f"{topic}/{partition}: committed offset went back from {humanize.count(highest)}{since} to "
            f"{humanize.count(committed)} ({humanize.count(highest - committed)} messages to read again)")


@dataclass(frozen=True)
class GroupChange:
    kind: GroupEventKind
    topic: str = ""
    partition: int | None = None
    detail: str = ""


def group_changes(
    current: Iterable[PartitionLag],
    previous: Mapping[TopicPartitionKey, PreviousOffsets] | None,
    previous_topics: Iterable[str],
    previous_partition_counts: Mapping[str, int],
    partition_counts: Mapping[str, int],
    *,
    new_group: bool = False,
    reappeared: bool = False,
    first_read: bool = False,
) -> list[GroupChange]:
    """``previous`` is None when there is no earlier poll of this group to compare with.
    ``first_read``: the group's row was made when it was listed unread (its appearance is
    recorded already); this first read of its offsets has no topics to compare with."""
    current = list(current)
    changes: list[GroupChange] = []
    if new_group or reappeared:
        changes.append(GroupChange(GroupEventKind.GROUP_CREATED,
                                   detail="reappeared" if reappeared else "first seen"))
    topics_now = {p.topic for p in current if p.committed_offset is not None}
    topics_before = set(previous_topics)
    if not (new_group or reappeared or first_read):
        for topic in sorted(topics_now - topics_before):
            changes.append(GroupChange(GroupEventKind.TOPIC_ADDED, topic=topic, detail=f"started reading {topic}"))
        for topic in sorted(topics_before - topics_now):
            changes.append(GroupChange(GroupEventKind.TOPIC_DROPPED, topic=topic,
                                       detail=f"no committed offsets on {topic} any more"))
        for topic in sorted(topics_now & topics_before):
            before, now = previous_partition_counts.get(topic, 0), partition_counts.get(topic, 0)
            if 0 < before < now:
                changes.append(GroupChange(GroupEventKind.PARTITIONS_ADDED, topic=topic,
                                           detail=f"{topic}: {before} -> {now} partitions"))
    previous = previous or {}
    for part in current:
        before_committed: int | None = None
        before_start: int | None = None
        if previous:
            offsets_before = previous.get((part.topic, part.partition))
            if offsets_before is not None:
                before_committed, before_start = offsets_before[0], offsets_before[1]
            committed = part.committed_offset
            if before_committed is not None and committed is not None and committed < before_committed:
                changes.append(GroupChange(
                    GroupEventKind.OFFSET_RESET, topic=part.topic, partition=part.partition,
                    detail=rewind_detail(part.topic, part.partition, before_committed, committed),
                ))
        if part.lost_messages and not (before_committed is not None and before_start is not None
                                       and before_committed < before_start):
            changes.append(GroupChange(
                GroupEventKind.DATA_LOSS, topic=part.topic, partition=part.partition,
                detail=f"{part.topic}/{part.partition}: {part.note}",
            ))
    return changes
