"""Read-side helpers shared by every query module: a cache that an outage only slows
down, cache keys per time range, and time budgets for database work.

A Redis failure never fails a page or an API answer: it costs speed, and the caller
learns it through :class:`CacheOutcome` to show a banner.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.core.cache import cache
from django.db import OperationalError, connection, transaction

from monitor.timerange import TimeRange

log = logging.getLogger(__name__)
T = TypeVar("T")

FIXED_RANGE_CACHE_SECONDS = 300
SQLITE_PROGRESS_STEPS = 10_000  # virtual machine steps between deadline checks: well under 1 ms


@dataclass
class CacheOutcome:
    """Whether Redis answered; a page shows a banner instead of failing when it did not."""

    available: bool = True


def cached(key: str, seconds: int, compute: Callable[[], T], outcome: CacheOutcome | None = None,
           accept: Callable[[T], bool] | None = None) -> T:
    """``compute()`` through the cache (a cached value ``accept`` rejects counts as a
    miss); a cache outage only costs speed."""
    try:
        value = cache.get(key)
    except Exception as exc:  # noqa: BLE001 - any Redis failure: compute without the cache
        log.warning("cache unavailable (%s); computing %s directly", type(exc).__name__, key.split(":")[0])
        if outcome is not None:
            outcome.available = False
        return compute()
    if value is not None and (accept is None or accept(value)):
        return value
    value = compute()
    try:
        cache.set(key, value, seconds)
    except Exception:  # noqa: BLE001
        if outcome is not None:
            outcome.available = False
    return value


def live_max_age_seconds(span_seconds: float) -> float:
    """How old a live range's numbers may be: a thousandth of the range (5 s for an
    hour, 10 min for a week: less than a pixel of its charts)."""
    return max(5.0, span_seconds / 1000)


def cached_for_range(name: str, time_range: TimeRange, compute: Callable[[], T],
                     outcome: CacheOutcome | None = None) -> tuple[datetime, datetime, T]:
    """``compute()`` for a time range through the cache, with the window it describes.
    A live range reuses a value up to :func:`live_max_age_seconds` old; a fixed window
    is cached as is."""
    key = f"{name}:{range_cache_suffix(time_range)}"

    def timed_compute() -> tuple[datetime, datetime, T]:
        return time_range.since, time_range.until, compute()

    if not time_range.is_live:
        return cached(key, FIXED_RANGE_CACHE_SECONDS, timed_compute, outcome)
    max_age = live_max_age_seconds(time_range.seconds)
    oldest = time_range.until - timedelta(seconds=max_age)
    return cached(key, max(60, int(3 * max_age)), timed_compute, outcome, accept=lambda value: value[1] >= oldest)


def range_cache_suffix(time_range: TimeRange) -> str:
    if time_range.is_live:
        return f"live:{time_range.key}"
    return f"{time_range.since.timestamp():.3f}:{time_range.until.timestamp():.3f}"


class BudgetExhausted(Exception):
    """Database work ended early: out of time, or asked to stop (a worker shutting down)."""


class TimeBudget:
    """A deadline for database work that holds in any Celery pool (the threads pool
    ignores a task's time limits, and no signal interrupts a running statement)."""

    def __init__(self, seconds: float, stop: Callable[[], bool] | None = None):
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.stop = stop or (lambda: False)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def over(self) -> bool:
        return self.stop() or self.remaining() <= 0

    def check(self) -> None:
        if self.stop():
            raise BudgetExhausted("asked to stop")
        if self.remaining() <= 0:
            raise BudgetExhausted(f"over its {self.seconds:g} s budget")


@contextmanager
def bounded_reads(budget: TimeBudget) -> Iterator[None]:
    """Statements run inside, which only read, end when ``budget`` does, raising
    :class:`BudgetExhausted`.

    SQLite checks every few thousand steps of a statement (so a stop request ends it at
    once); PostgreSQL gives each statement the time left as its ``statement_timeout``
    and checks ``stop()`` before each one, in a transaction rolled back at the end (which
    also undoes the timeout)."""
    connection.ensure_connection()
    try:
        if connection.vendor == "sqlite":
            raw = connection.connection
            raw.set_progress_handler(lambda: int(budget.over()), SQLITE_PROGRESS_STEPS)
            try:
                yield
            finally:
                raw.set_progress_handler(None, 0)
        elif connection.vendor == "postgresql":
            def deadline(execute: Callable, sql: str, params: Any, many: bool, context: Mapping[str, Any]) -> Any:
                budget.check()
                # Rounded up, plus one: a statement the server cancels has then always run
                # past the budget's deadline, so the cancel reads as the budget's (truncated,
                # it could end a fraction of a millisecond before and read as another error).
                milliseconds = max(1, math.ceil(budget.remaining() * 1000) + 1)
                context["cursor"].cursor.execute("SELECT set_config('statement_timeout', %s, true)",
                                                 [f"{milliseconds}ms"])
                return execute(sql, params, many, context)

            # set_config(..., true) lasts until the end of the transaction.
            with transaction.atomic(), connection.execute_wrapper(deadline):
                yield
                transaction.set_rollback(True)
        else:
            yield
    except OperationalError as error:  # "interrupted" (SQLite), "canceling statement" (PostgreSQL)
        if budget.over():
            raise BudgetExhausted(f"over its {budget.seconds:g} s budget" if not budget.stop()
                                  else "asked to stop") from error
        raise

