"""Group members and partition owners, as plain data (pure: no database, no broker).

The adapter reads membership (DescribeGroups for classic groups, ConsumerGroupDescribe
for KIP-848 groups); this module turns it into what is stored on the group row and
cached with the snapshot, and answers "who owns this partition" for pages, the API,
status reasons and alert messages. ``None`` members means the broker did not tell:
owners are then unknown (null), never "nobody".
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from monitor.kafka.adapter import GroupMembership, TopicPartitionKey


class MemberRow(TypedDict):
    member_id: str
    client_id: str
    host: str
    partitions: list[list[Any]] | None
    """None: the broker did not say what this member owns."""


def stored_members(membership: GroupMembership | None) -> list[MemberRow] | None:
    """What the group row keeps (JSON): None when the broker did not tell."""
    if membership is None or not membership.known:
        return None
    return [
        MemberRow(member_id=m.member_id, client_id=m.client_id, host=m.host,
                  partitions=None if m.partitions is None else [[topic, partition] for topic, partition in m.partitions])
        for m in sorted(membership.members, key=lambda m: (m.client_id, m.member_id))
    ]


def member_count(membership: GroupMembership | None) -> int | None:
    return len(membership.members) if membership is not None and membership.known else None


def owners(members: Iterable[Mapping[str, Any]] | None) -> dict[TopicPartitionKey, Mapping[str, Any]]:
    """The member owning each assigned partition."""
    found: dict[TopicPartitionKey, Mapping[str, Any]] = {}
    for member in members or ():
        for topic, partition in member.get("partitions") or ():
            found[(str(topic), int(partition))] = member
    return found


def assignments_known(members: Iterable[Mapping[str, Any]] | None) -> bool:
    """Whether the broker said who owns what: members told, each with its assignment."""
    return members is not None and all(m.get("partitions") is not None for m in members)


def api_members(members: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """CONTRACT shape: ``[{member_id, client_id, host, partitions: [{topic, partition}]}]``."""
    return [
        {"member_id": m.get("member_id", ""), "client_id": m.get("client_id", ""), "host": m.get("host", ""),
         "partitions": [{"topic": t, "partition": p} for t, p in m.get("partitions") or ()],
         "partitions_known": m.get("partitions") is not None}
        for m in members or ()
    ]


def owner_label(member: Mapping[str, Any] | None) -> str:
    """``billing-7f9c on 10.2.3.4``: the client id (or member id) and the host."""
    if not member:
        return ""
    who = member.get("client_id") or member.get("member_id") or "?"
    host = member.get("host")
    return f"{who} on {host}" if host else str(who)


def owner_note(members: Iterable[Mapping[str, Any]] | None, lagging: Iterable[TopicPartitionKey],
               limit: int = 3) -> str:
    """``orders/7 owned by billing-7f9c on 10.2.3.4`` for the first few lagging partitions
    whose owner is known; empty when none is (the caller keeps its reason as it was)."""
    by_partition = owners(members)
    parts = []
    for topic, partition in lagging:
        member = by_partition.get((topic, partition))
        if member is not None:
            parts.append(f"partition {partition} of {topic} owned by {owner_label(member)}")
        if len(parts) >= limit:
            break
    return "; ".join(parts)
