"""The latest poll of each cluster, cached (Redis through the Django cache) for fast
reads; readers fall back to the database when the cache is cold or unavailable.

``get_cluster_snapshot(name)``: ``{cluster, status, last_poll_at, last_success_at,
last_error, groups: [GROUP_SUMMARY]}``. ``get_group_snapshot(cluster, group)``:
GROUP_SUMMARY plus ``partitions`` (the contract's fields, plus ``time_lag_reason``) and
``topic_lags``. Times are aware datetimes; serialise them at the edge.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.core.cache import cache

from monitor.lag import members as group_members
from monitor.lag.record import PARTITION_ROW_FIELDS, CycleResult, GroupResult
from monitor.lag import samples
from monitor.models import Cluster, ConsumerGroup

log = logging.getLogger(__name__)

TTL_SECONDS = 3600


def _cluster_key(cluster_name: str) -> str:
    return f"lag:snapshot:cluster:{cluster_name}"


def _group_key(cluster_name: str, group: str) -> str:
    # Group names may hold any character; the cache key must not. v3: partitions with stuck_since and stalled.
    return f"lag:snapshot:v3:group:{cluster_name}:{hashlib.sha1(group.encode()).hexdigest()}"


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


def _group_detail(result: GroupResult) -> dict[str, Any]:
    """What is cached for a group: its partitions as plain rows (a cycle caches tens of
    thousands; a reader expands the few it reads, see :func:`_expanded`)."""
    body = group_summary(result.group)
    body["partition_rows"] = result.partition_rows
    body["topic_lags"] = [
        {"topic": t.topic, "lag": t.lag, "time_lag_seconds": t.time_lag_seconds, "partitions": t.partitions,
         "unknown_partitions": t.unknown_partitions, "partial_partitions": t.partial_partitions}
        for t in result.topics
    ]
    return body


def _expanded(cached: dict[str, Any]) -> dict[str, Any]:
    body = {key: value for key, value in cached.items() if key not in ("partition_rows", "topic_lags")}
    body["partitions"] = [dict(zip(PARTITION_ROW_FIELDS, row)) for row in cached["partition_rows"]]
    body["topic_lags"] = cached["topic_lags"]
    return _with_owners(body)


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
    """Cache a successful poll. A cache outage only costs the fast path."""
    cluster = result.cluster
    values = {_group_key(cluster.name, r.group.name): _group_detail(r) for r in result.groups}
    for group in result.gone:
        values[_group_key(cluster.name, group.name)] = {**group_summary(group), "partition_rows": [], "topic_lags": []}
    if result.whole_cluster:
        # The cycle holds every group row as it just wrote them: no need to read them back.
        values[_cluster_key(cluster.name)] = _cluster_summary(cluster, result.all_groups)
    try:
        cache.set_many(values, timeout=TTL_SECONDS)
        if not result.whole_cluster:
            # A shard holds its own groups only: the summary is read again when asked for.
            cache.delete(_cluster_key(cluster.name))
    except Exception:  # noqa: BLE001
        log.warning("could not cache the lag snapshot of %s", cluster.name, exc_info=True)


def store_groups(cluster: Cluster, groups: list[ConsumerGroup]) -> None:
    """Cache groups whose state changed outside a successful cycle (a failed shard's
    groups, now unknown): their partition detail is not known any more."""
    values = {_group_key(cluster.name, g.name): {**group_summary(g), "partition_rows": [], "topic_lags": []}
              for g in groups}
    try:
        cache.set_many(values, timeout=TTL_SECONDS)
    except Exception:  # noqa: BLE001
        log.warning("could not cache the lag snapshot of %s", cluster.name, exc_info=True)


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
    cached = _cached(_group_key(cluster_name, group))
    if cached is not None:
        return _expanded(cached)
    row = ConsumerGroup.objects.filter(cluster__name=cluster_name, name=group).first()
    if row is None:
        return None
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
