"""Numbers and durations the way reasons and notes show them."""
from __future__ import annotations


def count(value: float) -> str:
    """4500 -> '4,500'; 12.5 -> '12.5'."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def duration(seconds: float) -> str:
    """45 -> '45 s', 600 -> '10 min', 5400 -> '1.5 h', 172800 -> '2 d'."""
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{_trim(seconds / 3600)} h"
    return f"{_trim(seconds / 86400)} d"


def rate(per_second: float) -> str:
    """Messages per second, e.g. '40/s' or '0.3/s'."""
    if per_second >= 10:
        return f"{per_second:,.0f}/s"
    return f"{_trim(per_second)}/s"


def _trim(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text
