"""Rolling up and pruning lag history (runs every few minutes from Celery beat).

| data (see monitor.lag.samples)                  | kept                           | then                       |
| ----------------------------------------------- | ------------------------------ | -------------------------- |
| polled frames (LagFrame): topic totals and log offsets of every poll, partition detail every MONITOR_PARTITION_DETAIL_SECONDS | MONITOR_RAW_RETENTION_HOURS | dropped (rolled up before) |
| rollups (LagRollup): topic totals per ROLLUP_SECONDS (each value the bucket's maximum) and log offsets (each partition's last point of the bucket) | MONITOR_ROLLUP_RETENTION_DAYS | dropped |
| a group's latest partitions (on its row)        | until the next poll            | replaced                   |
| PollRun                                         | MONITOR_RAW_RETENTION_HOURS    | deleted                    |
| GroupEvent                                      | MONITOR_ROLLUP_RETENTION_DAYS  | deleted                    |

Rollups are made as soon as a bucket is over (continuing from the newest rollup), so
the polled frames can go whole. On PostgreSQL both frame tables are partitioned by day
and retention drops whole days (:mod:`monitor.timepartitions`); the frames of the day
the cut-off falls in are deleted (a few rows a poll, not a row a sample). SQLite deletes
the same frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings

from monitor import timepartitions
from monitor.lag import samples
from monitor.models import Cluster, GroupEvent, LagFrame, LagRollup, PollRun

ROLLUP_DELAY = timedelta(seconds=60)
"""How long after a bucket's end it is rolled up: a poll that started inside it has
stored its frames by then."""


@dataclass(frozen=True)
class RetentionResult:
    rollup_frames: int
    dropped_partitions: list[str]
    deleted_frames: int
    deleted_rollups: int
    deleted_poll_runs: int
    deleted_group_events: int


def rollup_and_prune(now: datetime) -> RetentionResult:
    raw_cutoff = now - timedelta(hours=settings.MONITOR_RAW_RETENTION_HOURS)
    rollup_cutoff = now - timedelta(days=settings.MONITOR_ROLLUP_RETENTION_DAYS)
    rolled = sum(samples.roll_up(cluster_id, now - ROLLUP_DELAY)
                 for cluster_id in Cluster.objects.values_list("id", flat=True))
    dropped = timepartitions.drop_partitions_before(LagFrame._meta.db_table, raw_cutoff) \
        + timepartitions.drop_partitions_before(LagRollup._meta.db_table, rollup_cutoff)
    deleted_frames, _ = LagFrame.objects.filter(polled_at__lt=raw_cutoff).delete()
    deleted_rollups, _ = LagRollup.objects.filter(polled_at__lt=rollup_cutoff).delete()
    deleted_runs, _ = PollRun.objects.filter(started_at__lt=raw_cutoff).delete()
    deleted_events, _ = GroupEvent.objects.filter(at__lt=rollup_cutoff).delete()
    return RetentionResult(rolled, dropped, deleted_frames, deleted_rollups, deleted_runs, deleted_events)
