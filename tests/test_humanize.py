"""Durations, numbers and times read the way people say them."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone

import pytest

from monitor import humanize
from monitor.humanize import ago as format_ago
from monitor.humanize import compact as format_compact
from monitor.humanize import count as format_number
from monitor.humanize import duration as format_duration
from monitor.humanize import utc as format_utc


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"), (0, "0 s"), (0.4, "0.4 s"), (5.5, "5.5 s"), (45, "45 s"), (60, "1 min"), (200, "3 min 20 s"),
        (3600, "1 h"), (3725, "1 h 2 min"), (86400, "1 d"), (90061, "1 d 1 h"), (-200, "-3 min 20 s"),
    ],
)
def test_durations_use_the_two_largest_units(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize(("value", "text"), [(None, "—"), (0, "0"), (1234567, "1,234,567"), (2.0, "2"), (2.25, "2.2")])
def test_numbers_have_thousands_separators_and_unknown_is_not_zero(value, text):
    assert format_number(value) == text


@pytest.mark.parametrize(("value", "text"), [(None, "—"), (999, "999"), (15300, "15.3k"), (2_000_000, "2M")])
def test_compact_numbers_for_headlines(value, text):
    assert format_compact(value) == text


def test_times_are_shown_in_utc_and_relative():
    now = datetime(2024, 5, 1, 12, 0, tzinfo=dt_timezone.utc)
    assert format_utc(now.astimezone(dt_timezone(timedelta(hours=2)))) == "2024-05-01 12:00:00 UTC"
    assert format_ago(now - timedelta(seconds=200), now) == "3 min 20 s ago"
    assert format_ago(now, now) == "just now"
    assert format_ago(None, now) == "never"


def test_a_reason_a_page_and_a_message_print_the_same_duration():
    """100,000 s once read "27.8 h" in a status reason, "1 d 3 h" on a page and
    "27 h 46 min" in Slack and email: now one formatter prints them all."""
    from dashboards.templatetags.monitor_format import duration as page_filter
    from monitor.lag.forecast import catch_up
    from monitor.notify.render import format_value

    expected = "1 d 3 h"
    assert humanize.duration(100_000) == expected
    assert page_filter(100_000) == expected
    assert format_value("time_lag_seconds", 100_000) == expected  # Slack, email and webhook text
    assert catch_up(100_000, 2.0, 1.0).reason.endswith(f"about {expected}")  # a forecast's reason


def test_a_reason_a_page_and_a_message_print_the_same_count():
    from dashboards.templatetags.monitor_format import number as page_filter
    from monitor.notify.render import format_value

    assert page_filter(1_234_567) == humanize.count(1_234_567) == "1,234,567"
    assert format_value("lag", 1_234_567) == "1,234,567 messages"
