"""The latest poll of each cluster: its group list cached (Redis through the Django
cache) for fast reads, falling back to the database when the cache is cold or
unavailable; one group's latest poll read from its row, which holds it.

``get_cluster_snapshot(name)``: ``{cluster, status, last_poll_at, last_success_at,
last_error, groups: [GROUP_SUMMARY]}``. ``get_group_snapshot(cluster, group)``:
GROUP_SUMMARY plus ``partitions`` (the contract's fields, plus ``time_lag_reason``) and
``topic_lags``. Times are aware datetimes; serialise them at the edge.

A group's detail is not cached: its row (``partition_state``) and one frame of topic
totals answer it in a few queries, while caching every group's detail made each cycle
serialise and send the partitions of every group, to be read back a few at a time.
"""
from __future__ import annotations

import logging
from typing import Any

from django.core.cache import cache

from monitor.lag import members as group_members
from monitor.lag.record import CycleResult
from monitor.lag import samples
from monitor.models import Cluster, ConsumerGroup

log = logging.getLogger(__name__)

TTL_SECONDS = 3600


def _cluster_key(cluster_name: str) -> str:
    return f"lag:snapshot:cluster:{cluster_name}"


def group_summary(group: ConsumerGroup) -> dict[str, Any]:
    return {
        "group": group.name,
        "state": group.state,
        "members": group.members,
        "protocol": group.protocol,
        "member_details": group.member_details,
        "member_count": len(group.member_details) if group.member_details is not None else group.members,
        "status": group.status,
        "status_reason": group.status_reason,
        "total_lag": group.total_lag,
        "max_time_lag_seconds": group.max_time_lag_seconds,
        "topics": list(group.topics or []),
        "lost_messages": group.lost_messages,
        "catch_up_seconds": group.catch_up_seconds,
        "catch_up_never": group.catch_up_never,
        "retention_risk_seconds": group.retention_risk_seconds,
        "retention_risk_method": group.retention_risk_method,
        "partial_partitions": group.partial_partitions,
        "stalled_partitions": group.stalled_partitions,
        "first_seen_at": group.first_seen_at,
        "last_seen_at": group.last_seen_at,
        "last_sample_at": group.last_sample_at,
        "gone_at": group.gone_at,
        "unread_since": group.unread_since,
    }


def _cluster_summary(cluster: Cluster, groups: list[ConsumerGroup]) -> dict[str, Any]:
    return {
        "cluster": cluster.name,
        "status": cluster.status,
        "last_poll_at": cluster.last_poll_at,
        "last_success_at": cluster.last_success_at,
        "last_error": cluster.last_error,
        # Members stay in each group's own entry: the cluster's would grow with every member.
        "groups": [{k: v for k, v in group_summary(g).items() if k != "member_details"}
                   for g in sorted(groups, key=lambda g: g.name)],
    }


def _with_owners(body: dict[str, Any]) -> dict[str, Any]:
    """Per partition, the member owning it: ``owner`` (member id), ``owner_client_id``
    and ``owner_host``; all None when unassigned or when the broker did not tell."""
    owners = group_members.owners(body.get("member_details"))
    for partition in body["partitions"]:
        member = owners.get((partition["topic"], partition["partition"]))
        partition["owner"] = member.get("member_id") if member else None
        partition["owner_client_id"] = member.get("client_id") if member else None
        partition["owner_host"] = member.get("host") if member else None
    return body


def store_cycle(result: CycleResult) -> None:
    """Cache a successful poll's group list. A cache outage only costs the fast path."""
    cluster = result.cluster
    try:
        if result.whole_cluster:
            # The cycle holds every group row as it just wrote them: no need to read them back.
            cache.set(_cluster_key(cluster.name), _cluster_summary(cluster, result.all_groups), timeout=TTL_SECONDS)
        else:
            # A shard holds its own groups only: the list is read again when asked for.
            cache.delete(_cluster_key(cluster.name))
    except Exception:  # noqa: BLE001
        log.warning("could not cache the lag snapshot of %s", cluster.name, exc_info=True)


def groups_changed(cluster: Cluster) -> None:
    """Groups changed outside a successful cycle (a failed shard's, now unknown): the
    cached list is dropped, to be read again from the rows."""
    try:
        cache.delete(_cluster_key(cluster.name))
    except Exception:  # noqa: BLE001
        log.warning("could not drop the cached lag snapshot of %s", cluster.name, exc_info=True)


def store_cluster_status(cluster: Cluster) -> None:
    """After a failed poll: groups keep their last snapshot, the cluster shows its state."""
    try:
        cached = cache.get(_cluster_key(cluster.name))
        if cached is not None:
            cached.update(status=cluster.status, last_poll_at=cluster.last_poll_at, last_error=cluster.last_error)
            cache.set(_cluster_key(cluster.name), cached, timeout=TTL_SECONDS)
    except Exception:  # noqa: BLE001
        log.warning("could not update the cached status of %s", cluster.name, exc_info=True)


def _cached(key: str) -> dict[str, Any] | None:
    try:
        return cache.get(key)
    except Exception:  # noqa: BLE001
        log.warning("lag snapshot cache unavailable; reading the database", exc_info=True)
        return None


def get_cluster_snapshot(cluster_name: str) -> dict[str, Any] | None:
    """The cluster's status and every group's latest summary; None for an unknown cluster."""
    cached = _cached(_cluster_key(cluster_name))
    if cached is not None:
        return cached
    cluster = Cluster.objects.filter(name=cluster_name).first()
    if cluster is None:
        return None
    return _cluster_summary(cluster, list(ConsumerGroup.objects.filter(cluster=cluster)))


def get_group_snapshot(cluster_name: str, group: str) -> dict[str, Any] | None:
    """One group's latest poll with its partitions; None when unknown."""
    row = ConsumerGroup.objects.filter(cluster__name=cluster_name, name=group).first()
    return None if row is None else group_detail(row)


def group_detail(row: ConsumerGroup) -> dict[str, Any]:
    """A group's latest poll with its partitions, from its row (and one frame of topic totals)."""
    body = group_summary(row)
    parts = samples.latest_partitions([row]).get(row.id, [])
    body["partitions"] = [
        {
            "topic": s.topic, "partition": s.partition, "committed_offset": s.committed_offset,
            "log_start_offset": s.log_start_offset, "log_end_offset": s.log_end_offset, "lag": s.lag,
            "time_lag_seconds": s.time_lag_seconds, "time_lag_method": s.time_lag_method,
            "time_lag_reason": s.time_lag_reason, "stuck_since": s.stuck_since, "stalled": s.stalled,
        }
        for s in parts
    ]
    topics = samples.latest_topic_points([row]).get(row.id, []) if parts else []
    body["topic_lags"] = [
        {"topic": t.topic, "lag": t.lag, "time_lag_seconds": t.time_lag_seconds, "partitions": t.partitions,
         "unknown_partitions": t.unknown_partitions, "partial_partitions": t.partial_partitions}
        for t in topics
    ]
    return _with_owners(body)
