"""Lag maths: pure, no database or broker."""
from monitor.lag.compute import (
    NO_COMMITTED_OFFSET, group_partition_lags, group_totals, max_known, newly_lost, partition_lag, sum_known,
    topic_lags,
)


def test_lag_is_log_end_minus_committed_offset():
    lag = partition_lag("orders", 0, committed_offset=40, log_start_offset=0, log_end_offset=100)
    assert lag.lag == 60
    assert lag.lost_messages == 0
    assert lag.note == ""


def test_partition_without_committed_offset_has_unknown_lag_never_zero():
    lag = partition_lag("orders", 1, committed_offset=None, log_start_offset=0, log_end_offset=100)
    assert lag.lag is None
    assert lag.note == NO_COMMITTED_OFFSET


def test_committed_offset_ahead_of_log_end_is_clamped_to_zero_with_a_note():
    lag = partition_lag("orders", 0, committed_offset=150, log_start_offset=0, log_end_offset=100)
    assert lag.lag == 0
    assert "ahead of log end" in lag.note


def test_committed_offset_below_log_start_counts_only_readable_messages_and_the_lost_ones_apart():
    lag = partition_lag("orders", 0, committed_offset=100, log_start_offset=600, log_end_offset=1000)
    assert lag.lag == 400
    assert lag.lost_messages == 500
    assert "500 messages deleted before they were consumed" in lag.note


def test_partition_whose_log_offsets_failed_has_unknown_lag_naming_the_error():
    lag = partition_lag("orders", 0, 10, None, None, log_error="NotLeaderForPartitionError")
    assert lag.lag is None
    assert "NotLeaderForPartitionError" in lag.note


def test_group_covers_every_partition_of_its_topics_even_without_a_commit_there():
    lags = group_partition_lags(
        committed={("orders", 0): 5},
        partition_counts={"orders": 3},
        log_offsets={("orders", 0): (0, 10), ("orders", 1): (0, 7), ("orders", 2): (0, 0)},
        log_errors={},
    )
    assert [(p.partition, p.lag) for p in lags] == [(0, 5), (1, None), (2, None)]


def test_lost_messages_are_counted_once_while_the_log_start_keeps_advancing():
    first = partition_lag("orders", 0, 100, 600, 1000)
    second = partition_lag("orders", 0, 100, 800, 1200)
    assert newly_lost(None, first) == (500, 600)
    assert newly_lost(600, second) == (200, 800)
    assert newly_lost(800, second) == (0, 800)  # the same poll seen again: nothing new


def test_consumer_jumping_past_a_loss_adds_no_new_loss():
    after = partition_lag("orders", 0, 600, 600, 1000)
    assert newly_lost(600, after) == (0, 600)


def test_recreated_topic_restarts_the_loss_mark():
    recreated = partition_lag("orders", 0, 0, 50, 80)
    assert newly_lost(600, recreated) == (50, 50)


def test_topic_totals_sum_known_lags_take_the_worst_time_lag_and_count_unknowns():
    lags = [
        partition_lag("orders", 0, 5, 0, 10),
        partition_lag("orders", 1, None, 0, 7),
        partition_lag("orders", 2, 1, 0, 4),
    ]
    [topic] = topic_lags(lags, {("orders", 0): 12.0, ("orders", 1): None, ("orders", 2): 30.5})
    assert (topic.lag, topic.time_lag_seconds, topic.partitions, topic.unknown_partitions) == (8, 30.5, 3, 1)


def test_topic_with_no_known_lag_has_unknown_total_not_zero():
    [topic] = topic_lags([partition_lag("orders", 0, None, 0, 7)], {})
    assert topic.lag is None


def test_group_totals_in_one_pass_are_the_sums_over_its_partitions():
    lags = [
        partition_lag("orders", 0, 5, 0, 10),
        partition_lag("orders", 1, None, 0, 7),
        partition_lag("orders", 2, 100, 600, 1000),  # 500 lost
        partition_lag("payments", 0, 3, None, None, log_error="NotLeaderForPartitionError"),
        partition_lag("payments", 1, 9, 0, 9),
    ]
    time_lags = [12.0, None, 30.5, None, 0.0]

    totals = group_totals(lags, time_lags)

    assert totals.lag == sum_known(p.lag for p in lags) == 405
    # One definition: lag, committed offsets and log ends summed over the same (counted)
    # partitions, those with a known lag; payments/0 (commit, no log offsets) makes it partial.
    assert totals.committed_total == 5 + 100 + 9
    assert totals.log_end_total == 10 + 1000 + 9
    assert (totals.counted_partitions, totals.partial_partitions) == (3, 1)
    assert totals.topics == ["orders", "payments"]
    assert (totals.lost_messages, totals.lost_partitions) == (500, 1)
    assert totals.max_time_lag_seconds == max_known(time_lags) == 30.5
    by_key = {(p.topic, p.partition): seconds for p, seconds in zip(lags, time_lags)}
    assert totals.topic_lags == topic_lags(lags, by_key)
    orders, payments = totals.topic_lags
    assert (orders.committed_offset_total, orders.log_end_offset_total, orders.partial_partitions) == (105, 1010, 0)
    assert (payments.lag, payments.unknown_partitions, payments.log_end_offset_total) == (0, 1, 9)
    assert payments.partial_partitions == 1
    assert sum(t.log_end_offset_total or 0 for t in totals.topic_lags) == totals.log_end_total


def test_group_without_any_known_value_has_unknown_totals_not_zero():
    totals = group_totals([partition_lag("orders", 0, None, None, None)], [None])
    assert (totals.lag, totals.committed_total, totals.log_end_total, totals.max_time_lag_seconds) == (
        None, None, None, None)
    assert totals.topics == []
