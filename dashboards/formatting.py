"""Human-friendly formatting of durations, numbers and times (pure; used by templates and charts)."""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone

UNKNOWN = "—"
_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def format_duration(seconds: float | None) -> str:
    """``200`` -> ``"3 min 20 s"``: the two largest units, so it stays short."""
    if seconds is None:
        return UNKNOWN
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{sign}{seconds:.1f} s".replace(".0 s", " s")
    if seconds < 10 and not float(seconds).is_integer():
        return f"{sign}{seconds:.1f} s"
    remaining = int(round(seconds))
    parts: list[str] = []
    for unit, size in _UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count} {unit}")
        elif parts:
            break  # "1 h 0 min" would only add noise: "1 h"
        if len(parts) == 2:
            break
    return sign + (" ".join(parts) or "0 s")


def format_number(value: float | int | None) -> str:
    """``1234567`` -> ``"1,234,567"``; unknown stays visibly unknown, never 0."""
    if value is None:
        return UNKNOWN
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def format_compact(value: float | int | None) -> str:
    """``1234567`` -> ``"1.2M"`` for headline numbers."""
    if value is None:
        return UNKNOWN
    for suffix, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            text = f"{value / size:.1f}".removesuffix(".0")
            return f"{text}{suffix}"
    return format_number(value)


def format_utc(value: datetime | None) -> str:
    if value is None:
        return UNKNOWN
    return value.astimezone(dt_timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "never"
    seconds = (now - value).total_seconds()
    if abs(seconds) < 1:
        return "just now"
    if seconds < 0:
        return f"in {format_duration(round(-seconds))}"
    return f"{format_duration(round(seconds))} ago"
