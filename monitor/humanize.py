"""The one formatter of counts, durations, rates and times. Status reasons, pages,
charts, Slack, email and webhooks all print through it, so the same number reads the
same everywhere: 100,000 s is "1 d 3 h" in a reason, on a page and in a message.

Unknown stays visibly unknown (``—``), never 0.
"""
from __future__ import annotations

import math
from datetime import UTC, datetime

UNKNOWN = "—"
_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def duration(seconds: float | None) -> str:
    """``200`` -> ``"3 min 20 s"``, ``100000`` -> ``"1 d 3 h"``: the two largest units,
    so it stays short; ``"1 h"`` rather than ``"1 h 0 min"``."""
    if seconds is None:
        return UNKNOWN
    if math.isinf(seconds):
        return "never" if seconds > 0 else "-never"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{sign}{seconds:.1f} s".replace(".0 s", " s")
    if seconds < 10 and not float(seconds).is_integer():
        return f"{sign}{seconds:.1f} s"
    remaining = int(round(seconds))
    parts: list[str] = []
    for unit, size in _UNITS:
        amount, remaining = divmod(remaining, size)
        if amount:
            parts.append(f"{amount} {unit}")
        elif parts:
            break  # "1 h 0 min" would only add noise: "1 h"
        if len(parts) == 2:
            break
    return sign + (" ".join(parts) or "0 s")


def count(value: float | None) -> str:
    """``1234567`` -> ``"1,234,567"``, ``12.5`` -> ``"12.5"``."""
    if value is None:
        return UNKNOWN
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def compact(value: float | None) -> str:
    """``1234567`` -> ``"1.2M"`` for headline numbers."""
    if value is None:
        return UNKNOWN
    for suffix, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            text = f"{value / size:.1f}".removesuffix(".0")
            return f"{text}{suffix}"
    return count(value)


def rate(per_second: float | None) -> str:
    """Messages per second: ``"40/s"``, ``"0.3/s"``."""
    if per_second is None:
        return UNKNOWN
    if per_second >= 10:
        return f"{per_second:,.0f}/s"
    text = f"{per_second:.1f}"
    return f"{text.removesuffix('.0')}/s"


def utc(value: datetime | None) -> str:
    if value is None:
        return UNKNOWN
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "never"
    seconds = (now - value).total_seconds()
    if abs(seconds) < 1:
        return "just now"
    if seconds < 0:
        return f"in {duration(round(-seconds))}"
    return f"{duration(round(seconds))} ago"
