"""Rolling up and pruning lag history (runs every few minutes from Celery beat).

| data                                  | kept raw                    | then                                              |
| ------------------------------------- | --------------------------- | ------------------------------------------------- |
| TopicLagSample, resolution 0          | MONITOR_RAW_RETENTION_HOURS | rolled up into 1-minute buckets (max lag, max time lag), resolution 60 |
| TopicLagSample, resolution 60         | MONITOR_ROLLUP_RETENTION_DAYS | deleted                                         |
| PartitionLagSample                    | MONITOR_RAW_RETENTION_HOURS | deleted (the topic rollups keep the shape)        |
| LogOffsetSample (time-lag history)    | MONITOR_RAW_RETENTION_HOURS | thinned to one point per partition per minute, after 7 days one per hour; after MONITOR_ROLLUP_RETENTION_DAYS only each partition's newest old point stays (to extrapolate from) |
| PollRun                               | MONITOR_RAW_RETENTION_HOURS | deleted                                           |
| GroupEvent                            | MONITOR_ROLLUP_RETENTION_DAYS | deleted                                         |

Cut-offs are aligned to whole minutes (hours for the hourly tier), so a bucket is never
split between two runs. Thinning looks back THIN_LOOKBACK from each cut-off: a beat
that was down longer leaves some points unthinned until they expire.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max, QuerySet
from django.db.models.functions import TruncHour, TruncMinute

from monitor.models import GroupEvent, LogOffsetSample, PartitionLagSample, PollRun, TopicLagSample

ROLLUP_RESOLUTION_SECONDS = 60
HOURLY_AFTER = timedelta(days=7)
THIN_LOOKBACK = timedelta(hours=6)


@dataclass(frozen=True)
class RetentionResult:
    rolled_up_buckets: int
    deleted_topic_samples: int
    deleted_partition_samples: int
    deleted_log_offsets: int
    deleted_rollups: int
    deleted_poll_runs: int
    deleted_group_events: int


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def rollup_and_prune(now: datetime) -> RetentionResult:
    raw_cutoff = _minute(now - timedelta(hours=settings.MONITOR_RAW_RETENTION_HOURS))
    rollup_cutoff = _minute(now - timedelta(days=settings.MONITOR_ROLLUP_RETENTION_DAYS))

    with transaction.atomic():
        rolled = roll_up_topic_samples(raw_cutoff)
        deleted_topic, _ = TopicLagSample.objects.filter(resolution=0, polled_at__lt=raw_cutoff).delete()
    deleted_partition, _ = PartitionLagSample.objects.filter(polled_at__lt=raw_cutoff).delete()
    deleted_offsets = thin_log_offsets(raw_cutoff - THIN_LOOKBACK, raw_cutoff, TruncMinute)
    hourly_cutoff = _hour(now - HOURLY_AFTER)
    if hourly_cutoff > rollup_cutoff:
        deleted_offsets += thin_log_offsets(hourly_cutoff - THIN_LOOKBACK, hourly_cutoff, TruncHour)
    deleted_offsets += expire_log_offsets(rollup_cutoff)
    deleted_rollups, _ = TopicLagSample.objects.filter(
        resolution=ROLLUP_RESOLUTION_SECONDS, polled_at__lt=rollup_cutoff).delete()
    deleted_runs, _ = PollRun.objects.filter(started_at__lt=raw_cutoff).delete()
    deleted_events, _ = GroupEvent.objects.filter(at__lt=rollup_cutoff).delete()
    return RetentionResult(rolled, deleted_topic, deleted_partition, deleted_offsets, deleted_rollups,
                           deleted_runs, deleted_events)


def roll_up_topic_samples(cutoff: datetime) -> int:
    """Fold raw per-poll topic samples older than ``cutoff`` into 1-minute maxima,
    merging into a bucket that already exists."""
    buckets = list(
        TopicLagSample.objects.filter(resolution=0, polled_at__lt=cutoff)
        .annotate(bucket=TruncMinute("polled_at"))
        .values("group_id", "topic", "bucket")
        .annotate(lag=Max("lag"), time_lag=Max("time_lag_seconds"), partitions=Max("partitions"),
                  unknown=Max("unknown_partitions"))
        .order_by()
    )
    if not buckets:
        return 0
    existing = {
        (row.group_id, row.topic, row.polled_at): row
        for row in TopicLagSample.objects.filter(
            resolution=ROLLUP_RESOLUTION_SECONDS,
            group_id__in={b["group_id"] for b in buckets},
            polled_at__gte=min(b["bucket"] for b in buckets), polled_at__lte=max(b["bucket"] for b in buckets),
        )
    }
    new, merged = [], []
    for b in buckets:
        row = existing.get((b["group_id"], b["topic"], b["bucket"]))
        if row is None:
            new.append(TopicLagSample(
                group_id=b["group_id"], topic=b["topic"], resolution=ROLLUP_RESOLUTION_SECONDS,
                polled_at=b["bucket"], lag=b["lag"], time_lag_seconds=b["time_lag"],
                partitions=b["partitions"] or 0, unknown_partitions=b["unknown"] or 0,
            ))
        else:
            row.lag = _max(row.lag, b["lag"])
            row.time_lag_seconds = _max(row.time_lag_seconds, b["time_lag"])
            row.partitions = max(row.partitions, b["partitions"] or 0)
            row.unknown_partitions = max(row.unknown_partitions, b["unknown"] or 0)
            merged.append(row)
    TopicLagSample.objects.bulk_create(new, batch_size=2000)
    TopicLagSample.objects.bulk_update(merged, ["lag", "time_lag_seconds", "partitions", "unknown_partitions"],
                                       batch_size=2000)
    return len(buckets)


def _max(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _newest_per_bucket(rows: QuerySet, trunc: type | None) -> QuerySet:
    keys = ["cluster_id", "topic", "partition"]
    if trunc is not None:
        rows = rows.annotate(bucket=trunc("polled_at"))
        keys.append("bucket")
    return rows.values(*keys).annotate(keep=Max("id")).values("keep").order_by()


def thin_log_offsets(since: datetime, until: datetime, trunc: type) -> int:
    """Keep the newest point of each partition in each bucket of [since, until)."""
    rows = LogOffsetSample.objects.filter(polled_at__gte=since, polled_at__lt=until)
    deleted, _ = rows.exclude(id__in=_newest_per_bucket(rows, trunc)).delete()
    return deleted


def expire_log_offsets(cutoff: datetime) -> int:
    """Delete points older than ``cutoff`` except each partition's newest one among them."""
    rows = LogOffsetSample.objects.filter(polled_at__lt=cutoff)
    deleted, _ = rows.exclude(id__in=_newest_per_bucket(rows, None)).delete()
    return deleted
