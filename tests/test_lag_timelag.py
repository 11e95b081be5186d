"""Time lag, pure: from the log-end history and from record timestamps."""
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import assume, given, settings as hypothesis_settings, strategies as st

from monitor.choices import TimeLagMethod
from monitor.lag.timelag import (
    NO_HISTORY_YET, NO_PRODUCE_RATE, NOT_READ_BUDGET, SKEW_TOLERANCE_SECONDS, OffsetPoint, RecordTime, TimeLag,
    choose_reads, over_budget, record_time_lag, time_lag,
)

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


# -- record timestamps ------------------------------------------------------------------

INTERPOLATED_30 = TimeLag(30.0, TimeLagMethod.INTERPOLATED)
NO_HISTORY = TimeLag(None, TimeLagMethod.UNKNOWN, NO_HISTORY_YET)


def record(offset: int, written: datetime, **kwargs: object) -> RecordTime:
    return RecordTime(requested_offset=kwargs.pop("requested", offset), offset=offset, timestamp=written,
                      log_append_time=bool(kwargs.pop("log_append_time", False)), **kwargs)  # type: ignore[arg-type]


def test_record_time_lag_is_poll_time_minus_the_record_timestamp():
    result = record_time_lag(record(7, at(-95.5)), at(0), NO_HISTORY)
    assert (result.seconds, result.method, result.reason) == (95.5, TimeLagMethod.RECORD, "")


def test_a_record_from_the_future_is_producer_clock_skew_and_the_history_answers_when_it_can():
    result = record_time_lag(record(7, at(600)), at(0), INTERPOLATED_30)
    assert (result.seconds, result.method) == (30.0, TimeLagMethod.INTERPOLATED)
    assert result.reason == ("producer clock skew: record at offset 7 is 600.0 s in the future; "
                             "interpolated from the log-end history")


def test_a_record_from_the_future_without_history_is_zero_never_negative_and_says_so():
    result = record_time_lag(record(7, at(600), log_append_time=True), at(0), NO_HISTORY)
    assert (result.seconds, result.method) == (0.0, TimeLagMethod.RECORD)
    assert result.reason.startswith("broker clock skew: record at offset 7 is 600.0 s in the future")


def test_a_record_a_little_ahead_is_ordinary_clock_difference_shown_as_zero_without_a_flag():
    result = record_time_lag(record(7, at(SKEW_TOLERANCE_SECONDS / 2)), at(0), NO_HISTORY)
    assert (result.seconds, result.method, result.reason) == (0.0, TimeLagMethod.RECORD, "")


def test_the_reason_names_a_missing_offset_a_batch_over_budget_and_timestamps_going_backwards():
    result = record_time_lag(record(9, at(-10), requested=7, exact=False, backwards_seconds=42.0), at(0),
                             NO_HISTORY)
    assert result.seconds == 10.0
    assert result.reason == ("offset 7 not in the log (compacted, transaction marker or aborted): next record 9; "
                             "batch larger than the byte budget: timestamp of its first record; "
                             "producer clock skew: timestamps go back 42.0 s after offset 9")


def test_over_budget_keeps_the_history_answer_and_says_budget_in_the_method():
    assert over_budget(INTERPOLATED_30) == TimeLag(30.0, TimeLagMethod.INTERPOLATED_BUDGET, NOT_READ_BUDGET)
    assert over_budget(NO_HISTORY) == TimeLag(None, TimeLagMethod.UNKNOWN_BUDGET, NO_HISTORY_YET)


def test_the_budget_reads_the_most_lagging_partitions_first_with_every_offset_wanted_on_them():
    candidates = [("a", 0, 10, 5), ("a", 0, 4, 11), ("b", 1, 0, 100), ("c", 2, 3, 1)]
    chosen, left = choose_reads(candidates, max_partitions=2)
    assert chosen == [("b", 1, 0), ("a", 0, 4), ("a", 0, 10)]
    assert left == [("c", 2, 3)]
    assert choose_reads(candidates, max_partitions=0) == ([], [("b", 1, 0), ("a", 0, 4), ("a", 0, 10), ("c", 2, 3)])


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    rate=st.floats(min_value=0.05, max_value=2000),
    interval=st.floats(min_value=1, max_value=300),
    polls=st.integers(min_value=2, max_value=40),
    position=st.floats(min_value=0, max_value=1),
)
def test_interpolated_and_record_methods_agree_within_the_poll_interval_on_steady_traffic(
        rate: float, interval: float, polls: int, position: float):
    """Message n is written at T0 + n / rate (at least one per poll); the monitor polls
    every ``interval`` from T0. A group at any offset the history covers gets the same time lag from the log-end
    history as from its record, give or take one poll interval (and one message of
    rounding: log ends are whole numbers)."""
    assume(rate * interval >= 1)  # steady: the log end moves between polls

    def log_end(seconds: float) -> int:
        return int(rate * seconds) + 1  # messages written by then: 0, 1/rate, 2/rate, ...

    history = [OffsetPoint(at(k * interval), log_end(k * interval)) for k in range(polls)]
    now_seconds = polls * interval
    now_end = log_end(now_seconds)
    committed = history[0].log_end_offset + int(position * (now_end - history[0].log_end_offset))
    if committed >= now_end:
        committed = now_end - 1
    written = record(committed, at(committed / rate))

    interpolated = time_lag(committed, now_end, history, at(now_seconds))
    from_record = record_time_lag(written, at(now_seconds), interpolated)

    assert from_record.method == TimeLagMethod.RECORD and from_record.seconds >= 0
    assert interpolated.method in (TimeLagMethod.INTERPOLATED, TimeLagMethod.EXTRAPOLATED)
    assert abs(interpolated.seconds - from_record.seconds) <= interval + 1 / rate + 1e-6
