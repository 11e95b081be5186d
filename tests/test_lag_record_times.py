"""Time lag from the record at the committed offset, through whole poll cycles against a
real broker (tansu) whose messages carry creation times the tests choose."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from monitor.choices import TimeLagMethod
from monitor.kafka.adapter import LogOffsets, Producer, commit_offsets, create_topics
from monitor.lag.poll import poll_cluster
from monitor.lag.record_times import fetch_offset, wanted_offsets
from monitor.lag import samples
from monitor.models import ConsumerGroup


@pytest.fixture
def prefix(cluster, unique):
    name = unique("rts")
    cluster.group_include = f"{name}*"
    cluster.save()
    return name


@pytest.fixture
def producer(kafka_settings):
    made = Producer(kafka_settings)
    yield made
    made.close()


def created_at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def latest_rows(cluster, group_id: str) -> dict[tuple[str, int], samples.PartitionPoint]:
    group = ConsumerGroup.objects.get(cluster=cluster, name=group_id)
    return {(s.topic, s.partition): s for s in samples.latest_partitions([group]).get(group.id, [])}


def test_a_group_first_seen_behind_has_its_time_lag_within_a_second_of_the_truth_on_its_first_poll(
        cluster, prefix, unique, kafka_settings, producer, logged_in_client):
    topic = unique("backlog")
    create_topics(kafka_settings, {topic: 1})
    # A night's backlog at an uneven rate: 60 messages over the last two hours, bunched.
    now_ms = int(time.time() * 1000)
    stamps = [now_ms - 7_200_000 + n * n * 2_000 for n in range(60)]
    for stamp in stamps:
        producer.send(topic, b"order", partition=0, timestamp_ms=stamp)
    group_id = f"{prefix}-nightly"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 5})  # 55 messages behind, no other group reads it

    outcome = poll_cluster(cluster.id)

    row = latest_rows(cluster, group_id)[(topic, 0)]
    truth = (row.polled_at - created_at(stamps[5])).total_seconds()
    assert row.lag == 55
    assert row.time_lag_method == TimeLagMethod.RECORD
    assert abs(row.time_lag_seconds - truth) <= 1.0
    assert outcome.record_reads.fetched_partitions == 1 and outcome.record_reads.bytes > 0
    detail = logged_in_client.get(f"/api/v1/clusters/{cluster.name}/groups/{group_id}").json()
    assert [(p["lag"], p["time_lag_method"]) for p in detail["partitions"]] == [(55, "record")]
    assert abs(detail["partitions"][0]["time_lag_seconds"] - truth) <= 1.0


def test_a_stuck_consumer_costs_one_fetch_then_the_cached_timestamp(cluster, prefix, unique, kafka_settings,
                                                                      producer):
    topic = unique("stuck")
    create_topics(kafka_settings, {topic: 1})
    for _ in range(3):
        producer.send(topic, b"m", partition=0)
    group_id = f"{prefix}-stuck"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 1})

    first = poll_cluster(cluster.id)
    second = poll_cluster(cluster.id)

    assert (first.record_reads.requests, first.record_reads.cached) == (1, 0)
    assert (second.record_reads.requests, second.record_reads.cached) == (0, 1)
    # No Fetch, and no FindCoordinator either (the process remembers the group's coordinator).
    assert second.requests == first.requests - 2
    row = latest_rows(cluster, group_id)[(topic, 0)]
    assert row.time_lag_method == TimeLagMethod.RECORD


def test_a_producer_clock_ahead_never_makes_time_lag_negative_and_is_flagged(
        cluster, prefix, unique, kafka_settings, producer):
    topic = unique("future")
    create_topics(kafka_settings, {topic: 1})
    producer.send(topic, b"m", partition=0, timestamp_ms=int(time.time() * 1000) + 3_600_000)  # an hour ahead
    producer.send(topic, b"m", partition=0)
    group_id = f"{prefix}-skewed"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 0})

    poll_cluster(cluster.id)

    row = latest_rows(cluster, group_id)[(topic, 0)]
    assert row.lag == 2
    assert row.time_lag_seconds == 0.0  # no history to fall back on: at least 0, never negative
    assert row.time_lag_method == TimeLagMethod.RECORD
    assert "producer clock skew" in row.time_lag_reason and "in the future" in row.time_lag_reason


def test_timestamps_going_backwards_are_flagged_as_producer_clock_skew(cluster, prefix, unique, kafka_settings,
                                                                        producer):
    topic = unique("backwards")
    create_topics(kafka_settings, {topic: 1})
    now_ms = int(time.time() * 1000)
    producer.send(topic, b"m", partition=0, timestamp_ms=now_ms - 60_000)
    producer.send(topic, b"m", partition=0, timestamp_ms=now_ms - 600_000)  # another producer, 9 min behind
    group_id = f"{prefix}-mixed"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 0})

    poll_cluster(cluster.id)

    row = latest_rows(cluster, group_id)[(topic, 0)]
    assert row.time_lag_method == TimeLagMethod.RECORD
    assert row.time_lag_seconds == pytest.approx((row.polled_at - created_at(now_ms - 60_000)).total_seconds(),
                                                 abs=0.01)
    assert "producer clock skew: timestamps go back 540.0 s" in row.time_lag_reason


def test_a_partition_at_the_log_end_has_exact_zero_time_lag_without_any_fetch(cluster, prefix, unique,
                                                                                kafka_settings, producer):
    topic = unique("done")
    create_topics(kafka_settings, {topic: 1})
    producer.send(topic, b"m", partition=0)
    group_id = f"{prefix}-done"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 1})

    outcome = poll_cluster(cluster.id)

    row = latest_rows(cluster, group_id)[(topic, 0)]
    assert (row.lag, row.time_lag_seconds, row.time_lag_method) == (0, 0.0, TimeLagMethod.EXACT)
    assert outcome.record_reads.requests == 0


def test_a_committed_offset_on_a_transaction_marker_takes_the_next_records_time(
        cluster, prefix, unique, kafka_settings, producer):
    """The committed offset is not a record (here a commit marker; compaction leaves the
    same kind of gap, which tansu cannot make): the next record is what the group reads next."""
    topic = unique("gap")
    create_topics(kafka_settings, {topic: 1})
    now_ms = int(time.time() * 1000)
    transactional = Producer(kafka_settings, transactional_id=unique("tx"))
    try:
        transactional.begin_transaction()
        transactional.send(topic, b"m", partition=0, timestamp_ms=now_ms - 300_000)  # offset 0, marker at 1
        transactional.commit_transaction()
    finally:
        transactional.close()
    producer.send(topic, b"m", partition=0, timestamp_ms=now_ms - 120_000)  # offset 2
    group_id = f"{prefix}-gap"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 1})

    poll_cluster(cluster.id)

    row = latest_rows(cluster, group_id)[(topic, 0)]
    assert row.time_lag_method == TimeLagMethod.RECORD
    assert row.time_lag_seconds == pytest.approx((row.polled_at - created_at(now_ms - 120_000)).total_seconds(),
                                                 abs=0.01)
    assert "offset 1 not in the log" in row.time_lag_reason and "next record 2" in row.time_lag_reason


def test_over_the_cycle_budget_the_most_lagging_partition_is_read_first_and_the_rest_says_budget(
        cluster, prefix, unique, kafka_settings, producer, settings):
    settings.MONITOR_TIME_LAG_FETCH_PARTITION_BYTES = 1024
    settings.MONITOR_TIME_LAG_FETCH_CYCLE_BYTES = 1024  # one partition per cycle
    topic = unique("budget")
    create_topics(kafka_settings, {topic: 2})
    for partition, count in ((0, 3), (1, 10)):
        for _ in range(count):
            producer.send(topic, b"m", partition=partition)
    group_id = f"{prefix}-budget"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 0, (topic, 1): 0})

    first = poll_cluster(cluster.id)
    rows = latest_rows(cluster, group_id)
    assert rows[(topic, 1)].time_lag_method == TimeLagMethod.RECORD  # 10 behind: read first
    assert rows[(topic, 0)].time_lag_method == TimeLagMethod.UNKNOWN_BUDGET  # no history yet either
    assert first.record_reads.fetched_partitions == 1

    second = poll_cluster(cluster.id)
    rows = latest_rows(cluster, group_id)
    assert (second.record_reads.cached, second.record_reads.fetched_partitions) == (1, 1)
    assert {r.time_lag_method for r in rows.values()} == {TimeLagMethod.RECORD}


def test_record_timestamps_off_with_a_zero_cycle_budget_leaves_the_history_methods(
        cluster, prefix, unique, kafka_settings, producer, settings):
    settings.MONITOR_TIME_LAG_FETCH_CYCLE_BYTES = 0
    topic = unique("off")
    create_topics(kafka_settings, {topic: 1})
    producer.send(topic, b"m", partition=0)
    group_id = f"{prefix}-off"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 0})

    outcome = poll_cluster(cluster.id)

    row = latest_rows(cluster, group_id)[(topic, 0)]
    assert (row.time_lag_method, row.time_lag_reason) == (TimeLagMethod.UNKNOWN, "no history yet")
    assert outcome.record_reads.requests == 0


def test_the_offset_read_is_the_next_a_group_reads_the_log_start_after_data_loss():
    log = {("orders", 0): LogOffsets(log_start_offset=50, log_end_offset=80),
           ("orders", 1): LogOffsets(log_start_offset=0, log_end_offset=10)}
    committed = {"lost": {("orders", 0): 20}, "behind": {("orders", 0): 70, ("orders", 1): 4},
                 "done": {("orders", 1): 10}}

    assert fetch_offset(20, 50) == 50 and fetch_offset(70, 50) == 70 and fetch_offset(3, None) == 3
    assert wanted_offsets(committed, log) == {("orders", 0, 50): 30, ("orders", 0, 70): 10, ("orders", 1, 4): 6}
