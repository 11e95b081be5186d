"""Builders for the rows the lag poller writes, so read-side and alert tests state exactly
what they need, computed by the poller's own lag maths (``monitor.lag.compute``)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from monitor.choices import GroupStatus, TimeLagMethod
from monitor.lag.compute import PartitionLag, group_totals, partition_lag
from monitor.lag import samples
from monitor.models import Cluster, ConsumerGroup


@dataclass(frozen=True)
class Part:
    """One partition of one poll: offsets, lag and time lag.

    ``lag`` is what the poller computes from the offsets (``monitor.lag.compute``); it is
    stated only so a test reads well, and :func:`record_poll` refuses a lag the poller
    would never write."""

    topic: str
    partition: int
    committed: int | None
    log_end: int | None
    lag: int | None
    time_lag: float | None = None
    method: str = TimeLagMethod.INTERPOLATED
    log_start: int | None = 0
    reason: str = ""
    stalled: bool = False


def make_group(cluster: Cluster, name: str, **fields: object) -> ConsumerGroup:
    now = timezone.now()
    defaults: dict[str, object] = {
        "state": "Stable",
        "members": 1,
        "status": GroupStatus.OK,
        "first_seen_at": now - timedelta(days=1),
        "last_seen_at": now,
    }
    defaults.update(fields)
    return ConsumerGroup.objects.create(cluster=cluster, name=name, **defaults)


def _computed(part: Part) -> PartitionLag:
    computed = partition_lag(part.topic, part.partition, part.committed, part.log_start, part.log_end)
    if computed.lag != part.lag:
        raise ValueError(f"{part}: the poller computes lag {computed.lag} from these offsets, not {part.lag}")
    return computed


def record_poll(group: ConsumerGroup, polled_at: datetime, parts: list[Part], latest: bool = True) -> ConsumerGroup:
    """The one builder of a group's poll: the rows the poller writes, computed by the
    poller's own lag maths (``partition_lag`` per partition, ``group_totals`` for the
    per-topic aggregates and the group's totals; unknown partitions are left out of the
    sums, never counted as 0). ``latest`` moves the group's snapshot (last_sample_at,
    totals, topics) to this poll, as the poller does."""
    lags = [_computed(part) for part in parts]
    totals = group_totals(lags, [part.time_lag for part in parts])
    partition_rows = [
        (lag.topic, lag.partition, lag.committed_offset, lag.log_start_offset, lag.log_end_offset, lag.lag,
         part.time_lag, part.method, part.reason, None, part.stalled)
        for lag, part in zip(lags, parts)
    ]
    samples.store_poll(
        group.cluster_id, polled_at,
        totals=[(group.id, t.topic, t.lag, t.time_lag_seconds, t.partitions, t.unknown_partitions,
                 t.partial_partitions, t.committed_offset_total, t.log_end_offset_total) for t in totals.topic_lags],
        partitions=[(group.id,) + row for row in partition_rows],
    )
    if latest:
        group.last_sample_at = polled_at
        group.total_lag = totals.lag
        group.max_time_lag_seconds = totals.max_time_lag_seconds
        group.topics = totals.topics
        group.partition_state = samples.pack_state(
            [samples.PartitionState(*row, row[2], polled_at) for row in partition_rows])
        group.save(update_fields=["last_sample_at", "total_lag", "max_time_lag_seconds", "topics", "partition_state"])
    return group


def lag_snapshot(cluster: Cluster, group: str, at: datetime, topics: dict[str, dict[int, int | None]],
                 status: str = GroupStatus.OK, time_lag: dict[str, float | None] | None = None,
                 **group_fields: object) -> ConsumerGroup:
    """A group's latest poll at ``at``, stated as per topic, per partition lag (None = no
    committed offset): created or moved on through :func:`record_poll`. ``status`` and
    ``group_fields`` set what the poller derives from history (status, forecasts ...)."""
    defaults: dict[str, object] = {
        "status": status, "state": "Stable", "first_seen_at": at - timedelta(hours=1), "last_seen_at": at,
        **group_fields,
    }
    consumer_group, _ = ConsumerGroup.objects.update_or_create(cluster=cluster, name=group, defaults=defaults)
    seconds = time_lag or {}
    parts = [
        Part(topic, partition, None if lag is None else 0, lag if lag is not None else 0, lag,
             None if lag is None else seconds.get(topic),
             TimeLagMethod.UNKNOWN if lag is None else TimeLagMethod.INTERPOLATED,
             reason="no committed offset" if lag is None else "")
        for topic, partitions in topics.items() for partition, lag in partitions.items()
    ]
    return record_poll(consumer_group, at, parts)


def topic_samples(
    group: ConsumerGroup, topic: str, start: datetime, count: int, step: timedelta, resolution: int = 0,
    lag: int | None = 10,
) -> None:
    """``count`` topic totals from ``start`` every ``step`` (lag = index + ``lag``): polled
    (resolution 0) or rollups of ``resolution`` seconds."""
    for i in range(count):
        row = (group.id, topic, None if lag is None else lag + i, None if lag is None else float(i), 1, 0, 0,
               None, None)
        if resolution:
            samples.store_rollup(group.cluster_id, start + i * step, [row], resolution)
        else:
            samples.store_poll(group.cluster_id, start + i * step, totals=[row])
