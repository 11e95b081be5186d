"""The global time range of the dashboard: parsed from the URL, pure (no database).

A page's range comes from ``?range=15m|1h|6h|24h|7d`` (relative to now, "live") or from
``?since=&until=`` (ISO-8601; a fixed window). Every page, the range picker partial and
the API share this one parser so a deep link means the same thing everywhere.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from monitor.errors import QueryError

PRESETS: dict[str, str] = {
    "15m": "Last 15 minutes",
    "1h": "Last hour",
    "6h": "Last 6 hours",
    "24h": "Last 24 hours",
    "7d": "Last 7 days",
}
DEFAULT_RANGE = "1h"
CUSTOM = "custom"
MAX_SPAN = timedelta(days=31)
_RELATIVE = re.compile(r"(\d{1,4})([mhd])")  # used with fullmatch
# Instants outside these bounds are refused: range arithmetic near datetime.min/max
# overflows, and nothing is stored there anyway.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


class TimeRangeError(QueryError):
    """A bad range parameter; ``field`` names the query parameter to blame."""


@dataclass(frozen=True)
class TimeRange:
    since: datetime
    until: datetime
    key: str  # a preset such as "1h", another relative span such as "3h", or "custom"

    @property
    def is_live(self) -> bool:
        """A relative range follows the clock: pages refresh it."""
        return self.key != CUSTOM

    @property
    def seconds(self) -> float:
        return (self.until - self.since).total_seconds()

    @property
    def label(self) -> str:
        if self.key in PRESETS:
            return PRESETS[self.key]
        if self.key != CUSTOM:
            return f"Last {self.key}"
        return f"{format_iso(self.since)} – {format_iso(self.until)}"

    def query_params(self) -> dict[str, str]:
        """The URL parameters that reproduce this range."""
        if self.is_live:
            return {"range": self.key}
        return {"since": format_iso(self.since), "until": format_iso(self.until)}

    def querystring(self) -> str:
        return urlencode(self.query_params())


def format_iso(moment: datetime) -> str:
    """ISO-8601 in UTC with ``Z``, as the contract wants."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_instant(value: str, field: str) -> datetime:
    text = value.strip()
    if not text:
        raise TimeRangeError(field, "is empty; give an ISO-8601 time such as 2024-05-01T12:00:00Z")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00").replace(" ", "T", 1))
    except (ValueError, UnicodeError):
        raise TimeRangeError(field, f"{value!r} is not an ISO-8601 time such as 2024-05-01T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the dashboard speaks UTC only
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-23:59
        raise TimeRangeError(field, f"{value!r} is out of range") from None
    if not EARLIEST <= moment <= LATEST:
        raise TimeRangeError(field, f"{value!r} is out of range (years 1970 to 9000)")
    return moment


def relative_span(key: str) -> timedelta:
    match = _RELATIVE.fullmatch(key.strip())
    if not match or int(match.group(1)) == 0:
        raise TimeRangeError("range", f"{key!r} is not a range; use one of {', '.join(PRESETS)} (or e.g. 3h, 2d)")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_time_range(params: Mapping[str, str], now: datetime, default: str = DEFAULT_RANGE) -> TimeRange:
    """``since``/``until`` win over ``range``; without either, the default relative range."""
    since_text = params.get("since") or ""
    until_text = params.get("until") or ""
    range_key = (params.get("range") or "").strip()
    if since_text or until_text:
        until = parse_instant(until_text, "until") if until_text else now
        if since_text:
            since = parse_instant(since_text, "since")
        else:
            span = relative_span(range_key) if range_key and range_key != CUSTOM else relative_span(default)
            since = until - span
        if since >= until:
            raise TimeRangeError("since", "must be before until")
        if until - since > MAX_SPAN:
            raise TimeRangeError("since", f"the range may span at most {MAX_SPAN.days} days")
        return TimeRange(since=since, until=until, key=CUSTOM)
    key = range_key if range_key and range_key != CUSTOM else default
    span = relative_span(key)
    if span > MAX_SPAN:
        raise TimeRangeError("range", f"the range may span at most {MAX_SPAN.days} days")
    return TimeRange(since=now - span, until=now, key=key)
