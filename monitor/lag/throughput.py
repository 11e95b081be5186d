"""Throughput from log-end offsets alone: no instrumentation needed.

The produce rate of a topic is the growth of its partitions' log-end offsets; the
consume rate of a group is the growth of its committed offsets. Both are summed per
minute from per-partition (or per-topic) differences between consecutive polls, so a
partition missing from one poll costs that partition's share, never a false drop to 0.
The baseline is the same time a week earlier when history reaches that far, else the
median of the last 24 hours of minutes.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.lag import samples

MINUTE = 60
MinutesOf = Callable[[datetime, datetime], dict[datetime, float]]
RECENT = timedelta(minutes=10)
WEEK = timedelta(days=7)
MEDIAN_WINDOW = timedelta(hours=24)


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def per_minute(rows: Iterable[tuple[object, datetime, int | None]]) -> dict[datetime, float]:
    """``(series key, time, offset)`` rows in time order -> messages per minute, from the
    differences between consecutive offsets of each key (a reset or rewind counts 0)."""
    last: dict[object, tuple[datetime, int]] = {}
    minutes: dict[datetime, float] = defaultdict(float)
    for key, moment, offset in rows:
        if offset is None:
            continue
        previous = last.get(key)
        last[key] = (moment, offset)
        if previous is None or moment <= previous[0]:
            continue
        minutes[_minute(moment)] += max(0, offset - previous[1])
    return dict(minutes)


def produce_minutes(cluster_id: int, topic: str, since: datetime, until: datetime) -> dict[datetime, float]:
    points = samples.log_points(cluster_id, since, until, topic=topic)
    return per_minute((key, point.polled_at, point.log_end_offset)
                      for key, series in points.items() for point in series)


def consume_minutes(group_id: int, topic: str, since: datetime, until: datetime) -> dict[datetime, float]:
    points = samples.topic_points([group_id], since, until, topics=[topic], until_inclusive=False)
    return per_minute((point.topic, point.polled_at, point.committed_offset_total)
                      for point in points if point.unknown_partitions == 0)


@dataclass(frozen=True)
class Throughput:
    rate: float | None  # messages/s over the recent window; None without two polls in it
    baseline: float | None  # messages/s usually at this time
    baseline_method: str  # "last_week", "median_24h" or "" (no history)
    window_seconds: float

    @property
    def text(self) -> str:
        from monitor import humanize

        if self.rate is None:
            return "no rate yet (fewer than two polls)"
        usual = f", usually {humanize.rate(self.baseline)}" if self.baseline is not None else ""
        messages = round(self.rate * self.window_seconds)
        return f"{humanize.count(messages)} messages in {humanize.duration(self.window_seconds)}{usual}"


def _rate(minutes: dict[datetime, float], since: datetime, until: datetime) -> float | None:
    inside = [v for m, v in minutes.items() if since <= m < until]
    if not inside:
        return None
    return sum(inside) / (until - since).total_seconds()


def throughput(minutes_of: MinutesOf, now: datetime, window: timedelta = RECENT) -> Throughput:
    since = now - window
    recent = minutes_of(since - timedelta(minutes=1), now)
    rate = _rate(recent, _minute(since), _minute(now))
    week_ago = minutes_of(since - WEEK, now - WEEK)
    if week_ago:
        return Throughput(rate, _rate(week_ago, _minute(since - WEEK), _minute(now - WEEK)), "last_week",
                          window.total_seconds())
    history = minutes_of(now - MEDIAN_WINDOW, since)
    if len(history) >= 3:
        return Throughput(rate, statistics.median(history.values()) / MINUTE, "median_24h", window.total_seconds())
    return Throughput(rate, None, "", window.total_seconds())


def topic_produce_throughput(cluster_id: int, topic: str, now: datetime, window: timedelta | None = None) -> Throughput:
    """The topic's produce rate over ``window`` (default: MONITOR_PRODUCE_RATE_WINDOW_SECONDS)."""
    from django.conf import settings

    window = window or timedelta(seconds=settings.MONITOR_PRODUCE_RATE_WINDOW_SECONDS)
    return throughput(lambda since, until: produce_minutes(cluster_id, topic, since, until), now, window)
