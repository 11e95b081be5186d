"""Builders for the rows the lag poller writes, so read-side and alert tests state exactly
what they need, computed by the poller's own lag maths (``monitor.lag.compute``)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from monitor.choices import GroupStatus, TimeLagMethod
from monitor.lag.compute import PartitionLag, group_totals, partition_lag
from monitor.models import Cluster, ConsumerGroup, PartitionLagSample, TopicLagSample


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
    PartitionLagSample.objects.bulk_create(
        PartitionLagSample(
            group=group,
            topic=lag.topic,
            partition=lag.partition,
            polled_at=polled_at,
            committed_offset=lag.committed_offset,
            log_start_offset=lag.log_start_offset,
            log_end_offset=lag.log_end_offset,
            lag=lag.lag,
            time_lag_seconds=part.time_lag,
            time_lag_method=part.method,
            time_lag_reason=part.reason,
        )
        for lag, part in zip(lags, parts)
    )
    TopicLagSample.objects.bulk_create(
        TopicLagSample(
            group=group,
            topic=topic.topic,
            resolution=0,
            polled_at=polled_at,
            lag=topic.lag,
            time_lag_seconds=topic.time_lag_seconds,
            partitions=topic.partitions,
            unknown_partitions=topic.unknown_partitions,
            committed_offset_total=topic.committed_offset_total,
            log_end_offset_total=topic.log_end_offset_total,
        )
        for topic in totals.topic_lags
    )
    if latest:
        group.last_sample_at = polled_at
        group.total_lag = totals.lag
        group.max_time_lag_seconds = totals.max_time_lag_seconds
        group.topics = totals.topics
        group.save(update_fields=["last_sample_at", "total_lag", "max_time_lag_seconds", "topics"])
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
    """``count`` TopicLagSample rows from ``start`` every ``step`` (lag = index + ``lag``)."""
    TopicLagSample.objects.bulk_create(
        TopicLagSample(
            group=group,
            topic=topic,
            resolution=resolution,
            polled_at=start + i * step,
            lag=None if lag is None else lag + i,
            time_lag_seconds=None if lag is None else float(i),
            partitions=1,
        )
        for i in range(count)
    )
