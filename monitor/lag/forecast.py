"""Forecasts shown next to a group's lag. Pure functions of rates and offsets.

- catch-up time: lag / (consume rate - produce rate), only while the group gains
  on the producers; otherwise None with the reason.
- retention risk: time until the log start, advancing at its observed rate, reaches
  the committed offset (after that, unread messages are deleted); the soonest
  partition counts for the group. 0 when it is already happening.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from monitor import humanize


@dataclass(frozen=True)
class Forecast:
    seconds: float | None
    reason: str
    never: bool = False
    """The rates are known and say it will not happen (not "not enough history")."""


@dataclass(frozen=True)
class PartitionRetention:
    committed_offset: int | None
    log_start_offset: int | None
    lag: int | None
    log_start_rate: float | None
    """Messages per second the log start advances (retention deleting), None if unknown."""


def rate(points: Sequence[tuple[datetime, int | None]]) -> float | None:
    """Average rate of a counter between its first and last known value, per second."""
    known = [(at, value) for at, value in points if value is not None]
    if len(known) < 2:
        return None
    span = (known[-1][0] - known[0][0]).total_seconds()
    if span <= 0:
        return None
    return (known[-1][1] - known[0][1]) / span


def catch_up(lag: int | None, consume_rate: float | None, produce_rate: float | None) -> Forecast:
    if lag is None:
        return Forecast(None, "lag unknown")
    if lag == 0:
        return Forecast(0.0, "caught up")
    if consume_rate is None or produce_rate is None:
        return Forecast(None, "not enough history for rates yet")
    gain = consume_rate - produce_rate
    if gain <= 0:
        return Forecast(None, f"not catching up: consuming {humanize.rate(max(consume_rate, 0.0))}, "
                              f"producing {humanize.rate(max(produce_rate, 0.0))}", never=True)
    seconds = lag / gain
    return Forecast(seconds, f"catching up at {humanize.rate(gain)}: about {humanize.duration(seconds)}")


def retention_risk(partitions: Iterable[PartitionRetention]) -> Forecast:
    soonest: float | None = None
    for part in partitions:
        if part.committed_offset is None or part.log_start_offset is None:
            continue
        if part.committed_offset < part.log_start_offset:
            return Forecast(0.0, "retention is deleting messages before they are consumed")
        if not part.lag or not part.log_start_rate or part.log_start_rate <= 0:
            continue
        seconds = (part.committed_offset - part.log_start_offset) / part.log_start_rate
        soonest = seconds if soonest is None else min(soonest, seconds)
    if soonest is None:
        return Forecast(None, "the log start is not advancing toward unread messages")
    return Forecast(soonest, f"retention reaches unread messages in about {humanize.duration(soonest)}")
