"""Time lag from the log-end history: pure."""
from datetime import datetime, timedelta, timezone

import pytest

from monitor.choices import TimeLagMethod
from monitor.lag.timelag import NO_HISTORY_YET, NO_PRODUCE_RATE, OffsetPoint, time_lag

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


HISTORY = [OffsetPoint(at(0), 100), OffsetPoint(at(30), 160), OffsetPoint(at(60), 220)]


def test_caught_up_group_has_exact_zero_time_lag():
    result = time_lag(220, 220, HISTORY, at(60))
    assert result == time_lag(230, 220, HISTORY, at(60))
    assert (result.seconds, result.method) == (0.0, TimeLagMethod.EXACT)


def test_committed_offset_between_two_points_is_interpolated_linearly():
    # log end was 130 half way between t=0 (100) and t=30 (160): at t=15; now is t=60.
    result = time_lag(130, 220, HISTORY, at(60))
    assert result.method == TimeLagMethod.INTERPOLATED
    assert result.seconds == pytest.approx(45.0)


def test_committed_offset_equal_to_a_point_uses_the_last_time_the_log_end_stood_there():
    flat = [OffsetPoint(at(0), 100), OffsetPoint(at(30), 100), OffsetPoint(at(60), 130)]
    result = time_lag(100, 130, flat, at(60))
    assert result.seconds == pytest.approx(30.0)


def test_committed_offset_older_than_the_table_is_extrapolated_with_the_table_rate():
    # 2 messages/s over the table; offset 40 is 60 messages before the oldest point.
    result = time_lag(40, 220, HISTORY, at(60))
    assert result.method == TimeLagMethod.EXTRAPOLATED
    assert result.seconds == pytest.approx(90.0)


def test_no_committed_offset_is_unknown_with_reason():
    result = time_lag(None, 220, HISTORY, at(60))
    assert (result.seconds, result.method, result.reason) == (None, TimeLagMethod.UNKNOWN, "no committed offset")


def test_a_single_point_is_not_enough_history():
    result = time_lag(50, 220, [], at(60))
    assert (result.seconds, result.method, result.reason) == (None, TimeLagMethod.UNKNOWN, NO_HISTORY_YET)


def test_extrapolating_a_log_that_never_moved_has_no_produce_rate():
    still = [OffsetPoint(at(0), 220), OffsetPoint(at(30), 220)]
    result = time_lag(200, 220, still, at(30))
    assert (result.method, result.reason) == (TimeLagMethod.UNKNOWN, NO_PRODUCE_RATE)


def test_current_poll_is_added_when_the_table_lacks_it():
    # The table ends at t=60 with 220; now (t=90) the log end is 280: offset 250 is at t=75.
    result = time_lag(250, 280, HISTORY, at(90))
    assert result.method == TimeLagMethod.INTERPOLATED
    assert result.seconds == pytest.approx(15.0)


def test_points_from_before_a_topic_was_recreated_are_ignored():
    recreated = [OffsetPoint(at(0), 5000), OffsetPoint(at(30), 10), OffsetPoint(at(60), 70)]
    result = time_lag(40, 70, recreated, at(60))
    assert result.seconds == pytest.approx(15.0)


def test_points_arrive_in_any_order():
    result = time_lag(130, 220, list(reversed(HISTORY)), at(60))
    assert result.seconds == pytest.approx(45.0)
