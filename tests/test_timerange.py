"""The global time range: one parser for every page, the picker and the API."""
from datetime import UTC, datetime, timedelta

import pytest

from monitor.timerange import TimeRangeError, format_iso, parse_time_range

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_without_parameters_the_range_is_the_last_hour_and_live():
    time_range = parse_time_range({}, NOW)
    assert (time_range.since, time_range.until, time_range.key) == (NOW - timedelta(hours=1), NOW, "1h")
    assert time_range.is_live
    assert time_range.query_params() == {"range": "1h"}


@pytest.mark.parametrize(("key", "span"), [("15m", timedelta(minutes=15)), ("24h", timedelta(days=1)),
                                           ("7d", timedelta(days=7)), ("3h", timedelta(hours=3))])
def test_relative_ranges_end_now(key, span):
    time_range = parse_time_range({"range": key}, NOW)
    assert time_range.until == NOW and time_range.since == NOW - span


def test_since_and_until_make_a_fixed_window_that_links_back_to_itself():
    time_range = parse_time_range({"since": "2024-05-01T10:00:00Z", "until": "2024-05-01T11:30:00+00:00"}, NOW)
    assert time_range.since == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert time_range.until == datetime(2024, 5, 1, 11, 30, tzinfo=UTC)
    assert not time_range.is_live
    again = parse_time_range(time_range.query_params(), NOW)
    assert (again.since, again.until) == (time_range.since, time_range.until)


def test_a_time_without_zone_is_read_as_utc():
    time_range = parse_time_range({"since": "2024-05-01T10:00:00", "until": "2024-05-01T11:00"}, NOW)
    assert time_range.since.tzinfo is not None and format_iso(time_range.since) == "2024-05-01T10:00:00Z"


def test_since_alone_runs_until_now():
    time_range = parse_time_range({"since": "2024-05-01T11:00:00Z"}, NOW)
    assert time_range.until == NOW


@pytest.mark.parametrize(("params", "field"), [
    ({"range": "forever"}, "range"),
    ({"range": "0h"}, "range"),
    ({"since": "yesterday"}, "since"),
    ({"since": "2024-05-01T11:00:00Z", "until": "2024-05-01T10:00:00Z"}, "since"),
    ({"range": "40d"}, "range"),
    ({"since": "2024-01-01T00:00:00Z", "until": "2024-03-01T00:00:00Z"}, "since"),
    ({"until": "not a time"}, "until"),
])
def test_bad_ranges_name_the_parameter(params, field):
    with pytest.raises(TimeRangeError) as error:
        parse_time_range(params, NOW)
    assert error.value.field == field


def test_times_are_written_in_utc_with_z():
    assert format_iso(datetime(2024, 5, 1, 14, 0, tzinfo=UTC)) == "2024-05-01T14:00:00Z"


@pytest.mark.parametrize("params, field", [
    ({"until": "0001-01-01T00:00:00Z"}, "until"),
    ({"since": "0001-01-01T00:00:00Z", "until": "2024-01-02T00:00:00Z"}, "since"),
    ({"until": "9999-12-31T23:59:59-23:59"}, "until"),
    ({"since": "9999-12-31T23:59:59+00:00"}, "since"),
    ({"range": "1h\nx"}, "range"),
])
def test_instants_out_of_range_are_errors_naming_the_parameter_never_overflow(params, field):
    with pytest.raises(TimeRangeError) as raised:
        parse_time_range(params, datetime(2024, 5, 1, tzinfo=UTC))
    assert raised.value.field == field
