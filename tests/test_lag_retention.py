"""Rolling up and pruning lag history, against real PostgreSQL."""
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest

from monitor.choices import GroupEventKind, TimeLagMethod
from monitor.lag.retention import rollup_and_prune
from monitor.models import GroupEvent, LogOffsetSample, PartitionLagSample, PollRun, TopicLagSample

NOW = datetime(2024, 5, 10, 12, 0, 30, tzinfo=dt_timezone.utc)


@pytest.fixture
def retention(settings):
    settings.MONITOR_RAW_RETENTION_HOURS = 48
    settings.MONITOR_ROLLUP_RETENTION_DAYS = 30


@pytest.fixture
def group(cluster):
    from monitor.models import ConsumerGroup

    return ConsumerGroup.objects.create(cluster=cluster, name="billing", first_seen_at=NOW, last_seen_at=NOW)


def topic_sample(group, at, lag, time_lag=None, resolution=0):
    return TopicLagSample(group=group, topic="orders", resolution=resolution, polled_at=at, lag=lag,
                          time_lag_seconds=time_lag, partitions=3)


def test_raw_topic_samples_past_retention_become_one_minute_maxima(retention, group):
    old = NOW - timedelta(hours=50)
    minute = old.replace(second=0, microsecond=0)
    TopicLagSample.objects.bulk_create([
        topic_sample(group, minute + timedelta(seconds=5), 100, 3.0),
        topic_sample(group, minute + timedelta(seconds=35), 250, 1.5),
        topic_sample(group, minute + timedelta(seconds=65), None, None),
        topic_sample(group, NOW - timedelta(hours=1), 7, 0.5),
    ])

    result = rollup_and_prune(NOW)

    rollups = list(TopicLagSample.objects.filter(resolution=60).order_by("polled_at")
                   .values_list("polled_at", "lag", "time_lag_seconds"))
    assert rollups == [(minute, 250, 3.0), (minute + timedelta(minutes=1), None, None)]
    assert list(TopicLagSample.objects.filter(resolution=0).values_list("lag", flat=True)) == [7]
    assert result.rolled_up_buckets == 2


def test_rolling_up_twice_merges_into_the_existing_bucket(retention, group):
    minute = (NOW - timedelta(hours=50)).replace(second=0, microsecond=0)
    TopicLagSample.objects.bulk_create([topic_sample(group, minute, 90, 2.0, resolution=60),
                                        topic_sample(group, minute + timedelta(seconds=20), 40, 9.0)])

    rollup_and_prune(NOW)

    assert list(TopicLagSample.objects.values_list("resolution", "lag", "time_lag_seconds")) == [(60, 90, 9.0)]


def test_rollups_past_their_retention_are_deleted(retention, group):
    TopicLagSample.objects.bulk_create([
        topic_sample(group, NOW - timedelta(days=31), 5, resolution=60),
        topic_sample(group, NOW - timedelta(days=29), 6, resolution=60),
    ])

    rollup_and_prune(NOW)

    assert list(TopicLagSample.objects.values_list("lag", flat=True)) == [6]


def test_raw_partition_samples_and_poll_runs_past_retention_are_deleted(retention, cluster, group):
    for at in (NOW - timedelta(hours=49), NOW - timedelta(hours=47)):
        PartitionLagSample.objects.create(group=group, topic="orders", partition=0, polled_at=at, lag=1,
                                          time_lag_method=TimeLagMethod.EXACT)
        PollRun.objects.create(cluster=cluster, started_at=at, duration_seconds=0.1)

    rollup_and_prune(NOW)

    assert PartitionLagSample.objects.count() == 1 and PollRun.objects.count() == 1


def test_log_end_history_is_thinned_not_dropped_so_old_time_lag_still_works(retention, cluster):
    def point(at, end, partition=0):
        return LogOffsetSample(cluster=cluster, topic="orders", partition=partition, polled_at=at,
                               log_start_offset=0, log_end_offset=end)

    minute = (NOW - timedelta(hours=49)).replace(second=0, microsecond=0)
    recent = NOW - timedelta(hours=1)
    LogOffsetSample.objects.bulk_create(
        [point(minute + timedelta(seconds=s), 100 + s) for s in (0, 15, 30, 45, 60, 75)]
        + [point(recent + timedelta(seconds=s), 9000 + s) for s in (0, 15, 30)]
    )

    rollup_and_prune(NOW)

    kept = list(LogOffsetSample.objects.order_by("polled_at").values_list("log_end_offset", flat=True))
    assert kept == [145, 175, 9000, 9015, 9030]  # newest per old minute, every recent point


def test_log_end_history_past_rollup_retention_keeps_one_point_per_partition(retention, cluster):
    old = NOW - timedelta(days=40)
    LogOffsetSample.objects.bulk_create([
        LogOffsetSample(cluster=cluster, topic="orders", partition=p, polled_at=old + timedelta(hours=h),
                        log_start_offset=0, log_end_offset=10 * h)
        for p in (0, 1) for h in range(3)
    ])

    rollup_and_prune(NOW)

    assert sorted(LogOffsetSample.objects.values_list("partition", "log_end_offset")) == [(0, 20), (1, 20)]


def test_group_events_are_kept_as_long_as_rollups(retention, cluster, group):
    for days in (31, 29):
        GroupEvent.objects.create(cluster=cluster, group=group, kind=GroupEventKind.OFFSET_RESET,
                                  at=NOW - timedelta(days=days))

    rollup_and_prune(NOW)

    assert GroupEvent.objects.count() == 1
