"""Catch-up and retention-risk forecasts: pure."""
from datetime import datetime, timedelta, timezone

import pytest

from monitor.lag.forecast import PartitionRetention, catch_up, rate, retention_risk

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def test_rate_is_the_change_between_the_first_and_last_known_values_per_second():
    points = [(T0, 100), (T0 + timedelta(seconds=30), None), (T0 + timedelta(seconds=60), 220)]
    assert rate(points) == pytest.approx(2.0)
    assert rate([(T0, 100)]) is None


def test_catch_up_time_is_lag_over_the_net_consume_rate():
    forecast = catch_up(lag=6000, consume_rate=50.0, produce_rate=30.0)
    assert forecast.seconds == pytest.approx(300.0)
    assert forecast.reason == "catching up at 20/s: about 5 min"


def test_group_consuming_slower_than_producers_never_catches_up():
    forecast = catch_up(lag=6000, consume_rate=20.0, produce_rate=30.0)
    assert forecast.seconds is None
    assert forecast.reason == "not catching up: consuming 20/s, producing 30/s"


def test_caught_up_group_needs_no_time_and_unknown_lag_has_no_forecast():
    assert catch_up(0, None, None).seconds == 0.0
    assert catch_up(None, 10.0, 1.0).reason == "lag unknown"
    assert catch_up(10, None, 1.0).seconds is None


def test_retention_risk_is_the_soonest_partition_where_log_start_reaches_the_committed_offset():
    forecast = retention_risk([
        PartitionRetention(committed_offset=1000, log_start_offset=400, lag=50, log_start_rate=2.0),
        PartitionRetention(committed_offset=1000, log_start_offset=900, lag=50, log_start_rate=1.0),
        PartitionRetention(committed_offset=1000, log_start_offset=0, lag=0, log_start_rate=100.0),
    ])
    assert forecast.seconds == pytest.approx(100.0)


def test_retention_already_deleting_unread_messages_is_zero():
    forecast = retention_risk([PartitionRetention(100, 600, 400, 1.0)])
    assert forecast.seconds == 0.0


def test_log_start_that_does_not_move_is_no_risk():
    forecast = retention_risk([PartitionRetention(1000, 0, 50, 0.0), PartitionRetention(1000, 0, 50, None)])
    assert forecast.seconds is None


def test_retention_risk_from_retention_ms_is_what_is_left_of_the_oldest_unread_messages_life():
    forecast = retention_risk([
        PartitionRetention(committed_offset=1000, log_start_offset=0, lag=50, log_start_rate=0.0,
                           time_lag_seconds=3000.0, retention_ms=3_600_000),
    ])
    assert (forecast.seconds, forecast.method) == (600.0, "retention_ms")
    assert forecast.reason == ("the oldest unread message is 50 min old and retention.ms is 1 h: "
                               "deleted in about 10 min")


def test_retention_risk_ignores_the_stepwise_log_start_rate_where_retention_ms_is_known():
    """Kafka deletes whole segments: a burst of the log start is no forecast when the
    topic's retention says how long the unread message has left."""
    forecast = retention_risk([
        PartitionRetention(committed_offset=1000, log_start_offset=990, lag=50, log_start_rate=500.0,
                           time_lag_seconds=60.0, retention_ms=86_400_000),
    ])
    assert forecast.method == "retention_ms" and forecast.seconds == pytest.approx(86_340.0)


def test_retention_risk_falls_back_to_the_log_start_rate_and_says_so():
    forecast = retention_risk([PartitionRetention(1000, 400, 50, 2.0, time_lag_seconds=30.0, retention_ms=None)])
    assert (forecast.seconds, forecast.method) == (pytest.approx(300.0), "log_start_rate")
    assert retention_risk([PartitionRetention(100, 600, 400, 1.0)]).method == "deleting"
