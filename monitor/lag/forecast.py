"""Forecasts shown next to a group's lag. Pure functions of rates and offsets.

- catch-up time: lag / (consume rate - produce rate), only while the group gains
  on the producers; otherwise None with the reason.
- retention risk: time until retention deletes a message the group has not read; the
  soonest partition counts for the group, 0 when it is already happening. Kafka deletes
  whole segments, so the log start moves in steps and its rate over a window swings
  between 0 and spikes: where the topic's ``retention.ms`` is known, the time left is
  retention.ms minus the age of the oldest unread message (the partition's time lag)
  (method ``retention_ms``); the log start's observed rate is only the fallback
  (method ``log_start_rate``). ``deleting``: the log start already passed the commit.
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
    method: str = ""
    """How a retention forecast was made: retention_ms, log_start_rate or deleting."""


@dataclass(frozen=True)
class PartitionRetention:
    committed_offset: int | None
    log_start_offset: int | None
    lag: int | None
    log_start_rate: float | None
    """Messages per second the log start advances (retention deleting), None if unknown."""
    time_lag_seconds: float | None = None
    """Age of the oldest unread message of the partition."""
    retention_ms: int | None = None
    """The topic's retention.ms; None when unlimited or not told."""


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
    soonest: tuple[float, str, str] | None = None
    for part in partitions:
        if part.committed_offset is None or part.log_start_offset is None:
            continue
        if part.committed_offset < part.log_start_offset:
            return Forecast(0.0, "retention is deleting messages before they are consumed", method="deleting")
        if not part.lag:
            continue
        if part.retention_ms is not None and part.time_lag_seconds is not None:
            retention = part.retention_ms / 1000
            seconds = max(0.0, retention - part.time_lag_seconds)
            found = (seconds, "retention_ms",
                     f"the oldest unread message is {humanize.duration(part.time_lag_seconds)} old and retention.ms "
                     f"is {humanize.duration(retention)}: deleted in about {humanize.duration(seconds)}")
        elif part.log_start_rate and part.log_start_rate > 0:
            seconds = (part.committed_offset - part.log_start_offset) / part.log_start_rate
            found = (seconds, "log_start_rate",
                     f"retention reaches unread messages in about {humanize.duration(seconds)} "
                     f"(at the log start's recent rate)")
        else:
            continue
        if soonest is None or found[0] < soonest[0]:
            soonest = found
    if soonest is None:
        return Forecast(None, "the log start is not advancing toward unread messages")
    return Forecast(soonest[0], soonest[2], method=soonest[1])
