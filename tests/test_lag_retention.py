"""Rolling up and pruning lag history, against real PostgreSQL: rollups take over before
polled frames go, and on PostgreSQL whole days of frames are dropped, not deleted row by row."""
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest

from monitor import timepartitions
from monitor.choices import GroupEventKind
from monitor.lag import samples
from monitor.lag.retention import rollup_and_prune
from monitor.models import ConsumerGroup, GroupEvent, LagFrame, LagRollup, PollRun

NOW = datetime(2024, 5, 10, 12, 0, 30, tzinfo=dt_timezone.utc)
EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


@pytest.fixture
def retention(settings):
    settings.MONITOR_RAW_RETENTION_HOURS = 48
    settings.MONITOR_ROLLUP_RETENTION_DAYS = 30


@pytest.fixture
def group(cluster):
    return ConsumerGroup.objects.create(cluster=cluster, name="billing", first_seen_at=NOW, last_seen_at=NOW)


def poll(group, at, lag, log_end=None):
    samples.store_poll(group.cluster_id, at,
                       totals=[(group.id, "orders", lag, None if lag is None else lag / 100, 3, 0, 0, None, None)],
                       log_offsets=[] if log_end is None else [("orders", 0, 0, log_end)])


def test_polled_totals_past_retention_live_on_as_five_minute_maxima(retention, group):
    old = datetime(2024, 5, 8, 10, 0, 0, tzinfo=dt_timezone.utc)  # 50 h before NOW
    for step, lag in enumerate([100, 250, None, 40]):
        poll(group, old + timedelta(seconds=30 * step + 5), lag)
    poll(group, NOW - timedelta(hours=1), 7)

    result = rollup_and_prune(NOW)

    kept = samples.topic_points([group.id], EPOCH, NOW, resolution=None)
    assert [(p.polled_at, p.lag, p.resolution) for p in kept][0] == (old, 250, samples.ROLLUP_SECONDS)
    assert kept[-1].polled_at == NOW - timedelta(hours=1) and kept[-1].lag == 7
    assert not LagFrame.objects.filter(polled_at__lt=NOW - timedelta(hours=48)).exists()
    assert result.rollup_frames > 0


def test_rolling_up_again_writes_nothing_new(retention, group):
    poll(group, NOW - timedelta(minutes=30), 5)
    first = rollup_and_prune(NOW)
    count = LagRollup.objects.count()

    second = rollup_and_prune(NOW)

    assert first.rollup_frames == count > 0 and second.rollup_frames == 0 and LagRollup.objects.count() == count


def test_postgresql_drops_whole_days_of_frames_instead_of_deleting_rows(retention, group):
    old_day = datetime(2024, 5, 5, tzinfo=dt_timezone.utc)
    table = LagFrame._meta.db_table
    assert timepartitions.is_partitioned(table)
    timepartitions.ensure_partitions(table, old_day, days_ahead=0)
    poll(group, old_day + timedelta(hours=3), 1, log_end=10)
    poll(group, NOW - timedelta(minutes=5), 2, log_end=20)
    assert timepartitions.partition_name(table, old_day.date()) in timepartitions.partitions(table)

    result = rollup_and_prune(NOW)

    assert timepartitions.partition_name(table, old_day.date()) in result.dropped_partitions
    assert timepartitions.partition_name(table, old_day.date()) not in timepartitions.partitions(table)
    # What the dropped day held lives on in its rollups; the time-lag history too.
    assert samples.log_points(group.cluster_id, EPOCH)[("orders", 0)][0].log_end_offset == 10


def test_rollups_past_their_retention_go(retention, group):
    samples.store_rollup(group.cluster_id, NOW - timedelta(days=31), [(group.id, "orders", 1, None, 1, 0, 0, None, None)])
    samples.store_rollup(group.cluster_id, NOW - timedelta(days=29), [(group.id, "orders", 2, None, 1, 0, 0, None, None)])

    rollup_and_prune(NOW)

    assert [p.lag for p in samples.topic_points([group.id], EPOCH, NOW, resolution=samples.ROLLUP_SECONDS)] == [2]


def test_poll_runs_follow_the_raw_retention_and_group_events_the_rollups(retention, cluster, group):
    PollRun.objects.create(cluster=cluster, started_at=NOW - timedelta(hours=49), duration_seconds=1)
    PollRun.objects.create(cluster=cluster, started_at=NOW - timedelta(hours=1), duration_seconds=1)
    for days in (31, 29):
        GroupEvent.objects.create(cluster=cluster, group=group, kind=GroupEventKind.GROUP_CREATED,
                                  at=NOW - timedelta(days=days))

    rollup_and_prune(NOW)

    assert PollRun.objects.count() == 1 and GroupEvent.objects.count() == 1
