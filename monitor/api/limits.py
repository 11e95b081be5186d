"""Per-token limits of the ingest endpoints (POST /api/v1/events, POST /v1/traces).

One token must not exhaust the workers or flood the pages with names: each ingest token
has a request rate (``MONITOR_INGEST_RATE_PER_MINUTE``) and, per kind, a budget of new
distinct names per hour (``MONITOR_NEW_NAMES_PER_HOUR``: services, topics and event
types never reported before). Beyond either the answer is 429 with ``Retry-After`` and
the limit's name in ``errors[].loc`` (``["limit", "new_services_per_hour"]``); nothing of
that request is stored. Counters are fixed windows in the shared cache (Redis); when the
cache is down the limits are not enforced (ingest matters more than the limit).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from django.conf import settings
from django.core.cache import cache

from monitor.api.errors import ApiError, FieldError
from monitor.events.ingest import EventRow
from monitor.events.store import unknown_names

log = logging.getLogger(__name__)


class LimitExceeded(ApiError):
    status = 429

    def __init__(self, name: str, limit: int, window: str, retry_after_seconds: int) -> None:
        detail = f"The token's limit {name} ({limit} per {window}) is used up; retry in {retry_after_seconds} s."
        super().__init__(detail, [FieldError(("limit", name), f"at most {limit} per {window}")], status=429,
                         headers={"Retry-After": str(retry_after_seconds)})
        self.name = name


def _seconds_left(now: datetime, window_seconds: int) -> int:
    return max(1, window_seconds - int(now.timestamp()) % window_seconds)


def check_request_rate(token_id: int | None, now: datetime) -> None:
    limit = int(settings.MONITOR_INGEST_RATE_PER_MINUTE)
    if not limit or token_id is None:
        return
    key = f"ingest-rate:{token_id}:{int(now.timestamp()) // 60}"
    try:
        cache.add(key, 0, timeout=120)
        count = cache.incr(key)
    except Exception as exc:  # noqa: BLE001 - a cache outage must not stop ingest
        log.warning("ingest rate limit not checked: %s", exc)
        return
    if count > limit:
        raise LimitExceeded("ingest_requests_per_minute", limit, "minute", _seconds_left(now, 60))


def check_new_names(token_id: int | None, rows: Sequence[EventRow], now: datetime) -> None:
    """Refuse the whole request when it would pass a budget; otherwise charge it."""
    limit = int(settings.MONITOR_NEW_NAMES_PER_HOUR)
    if not limit or token_id is None or not rows:
        return
    hour = int(now.timestamp()) // 3600
    new = {kind: names for kind, names in unknown_names(rows).items() if names}
    if not new:
        return
    keys = {kind: f"ingest-new-{kind}:{token_id}:{hour}" for kind in new}
    try:
        used = cache.get_many(list(keys.values()))
        for kind, names in new.items():
            if int(used.get(keys[kind]) or 0) + len(names) > limit:
                raise LimitExceeded(f"new_{kind}_per_hour", limit, "hour", _seconds_left(now, 3600))
        for kind, names in new.items():
            cache.add(keys[kind], 0, timeout=7200)
            cache.incr(keys[kind], len(names))
    except LimitExceeded:
        raise
    except Exception as exc:  # noqa: BLE001 - a cache outage must not stop ingest
        log.warning("new-name budget not checked: %s", exc)
