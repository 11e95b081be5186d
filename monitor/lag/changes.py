"""What changed in a group between two polls: the lifecycle events marked on charts.

Pure: compares the previous poll's partitions with the current ones.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from monitor.choices import GroupEventKind
from monitor.lag import humanize
from monitor.lag.compute import PartitionLag, TopicPartitionKey


@dataclass(frozen=True)
class GroupChange:
    kind: GroupEventKind
    topic: str = ""
    partition: int | None = None
    detail: str = ""


def group_changes(
    current: Iterable[PartitionLag],
    previous: Mapping[TopicPartitionKey, PartitionLag] | None,
    previous_topics: Iterable[str],
    previous_partition_counts: Mapping[str, int],
    partition_counts: Mapping[str, int],
    *,
    new_group: bool = False,
    reappeared: bool = False,
) -> list[GroupChange]:
    """``previous`` is None when there is no earlier poll of this group to compare with."""
    current = list(current)
    changes: list[GroupChange] = []
    if new_group or reappeared:
        changes.append(GroupChange(GroupEventKind.GROUP_CREATED,
                                   detail="reappeared" if reappeared else "first seen"))
    topics_now = {p.topic for p in current if p.committed_offset is not None}
    topics_before = set(previous_topics)
    if not (new_group or reappeared):
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
        if previous:
            before = previous.get((part.topic, part.partition))
            committed = part.committed_offset
            if before is not None and committed is not None and before.committed_offset is not None \
                    and committed < before.committed_offset:
                back = before.committed_offset - committed
                changes.append(GroupChange(
                    GroupEventKind.OFFSET_RESET, topic=part.topic, partition=part.partition,
                    detail=f"{part.topic}/{part.partition}: committed offset went back from "
                           f"{humanize.count(before.committed_offset)} to {humanize.count(committed)} "
                           f"({humanize.count(back)} messages to read again)",
                ))
        else:
            before = None
        if part.lost_messages and (before is None or not before.lost_messages):
            changes.append(GroupChange(
                GroupEventKind.DATA_LOSS, topic=part.topic, partition=part.partition,
                detail=f"{part.topic}/{part.partition}: {part.note}",
            ))
    return changes
