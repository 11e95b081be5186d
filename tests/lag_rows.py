"""Builders for the rows the lag poller writes, so read-side tests state exactly what they need."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from monitor.choices import GroupStatus, TimeLagMethod
from monitor.models import Cluster, ConsumerGroup, PartitionLagSample, TopicLagSample


@dataclass(frozen=True)
class Part:
    """One partition of one poll: offsets, lag (None = unknown) and time lag."""

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


def record_poll(group: ConsumerGroup, polled_at: datetime, parts: list[Part], latest: bool = True) -> None:
    """Write one poll's partition rows and per-topic aggregates; ``latest`` moves the group's
    snapshot (last_sample_at, totals, topics) to this poll, as the poller does."""
    PartitionLagSample.objects.bulk_create(
        PartitionLagSample(
            group=group,
            topic=p.topic,
            partition=p.partition,
            polled_at=polled_at,
            committed_offset=p.committed,
            log_start_offset=p.log_start,
            log_end_offset=p.log_end,
            lag=p.lag,
            time_lag_seconds=p.time_lag,
            time_lag_method=p.method,
            time_lag_reason=p.reason,
        )
        for p in parts
    )
    topics = sorted({p.topic for p in parts})
    aggregates = []
    for topic in topics:
        mine = [p for p in parts if p.topic == topic]
        known = [p.lag for p in mine if p.lag is not None]
        times = [p.time_lag for p in mine if p.time_lag is not None]
        aggregates.append(
            TopicLagSample(
                group=group,
                topic=topic,
                resolution=0,
                polled_at=polled_at,
                lag=sum(known) if known else None,
                time_lag_seconds=max(times) if times else None,
                partitions=len(mine),
                unknown_partitions=len(mine) - len(known),
            )
        )
    TopicLagSample.objects.bulk_create(aggregates)
    if latest:
        known = [p.lag for p in parts if p.lag is not None]
        times = [p.time_lag for p in parts if p.time_lag is not None]
        group.last_sample_at = polled_at
        group.total_lag = sum(known) if known else None
        group.max_time_lag_seconds = max(times) if times else None
        group.topics = topics
        group.save(update_fields=["last_sample_at", "total_lag", "max_time_lag_seconds", "topics"])


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
