"""Page-wide warnings: a stopped scheduler or worker, undelivered notifications,
unreachable or unpolled clusters, Redis down.

``base.html`` renders ``banners``; the ``navigation`` context processor offers them to
every page lazily (computed only when a logged-in user's page renders them).
"""
from __future__ import annotations

import logging
import time
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError

from monitor import liveness
from monitor.humanize import ago as format_ago, utc as format_utc
from monitor.lag import queries

log = logging.getLogger(__name__)
REDIS_CHECK_TTL_SECONDS = 10.0
_redis_checks: dict[str, tuple[float, str | None]] = {}

Banner = dict[str, str]


def redis_error(url: str | None) -> str | None:
    """Why Redis does not answer (None when it does or is not configured); remembered briefly."""
    if not url:
        return None
    checked = _redis_checks.get(url)
    if checked and time.monotonic() - checked[0] < REDIS_CHECK_TTL_SECONDS:
        return checked[1]
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping()
        error = None
    except redis.RedisError as exc:
        error = type(exc).__name__
    _redis_checks[url] = (time.monotonic(), error)
    return error


def cluster_banners(now: datetime) -> list[Banner]:
    banners: list[Banner] = []
    for alarm in queries.cluster_alarms(now):
        when = f"{format_utc(alarm.since)} ({format_ago(alarm.since, now)})" if alarm.since else "its first poll"
        if alarm.kind == "unreachable":
            text = f"Cluster {alarm.name} unreachable since {when}: {alarm.error or 'no error recorded'}"
            banners.append({"level": "error", "text": text})
        else:
            text = f"Cluster {alarm.name} has not been polled since {when}; are the Celery worker and beat running?"
            banners.append({"level": "warning", "text": text})
    return banners


def liveness_banners(now: datetime) -> list[Banner]:
    """What stopped in the background: the scheduler (beat), the worker, delivery."""
    return [{"level": "error" if problem.failing else "warning", "text": problem.text[:1].upper() + problem.text[1:]
             + "."} for problem in liveness.read(now).problems()]


def page_banners(now: datetime) -> list[Banner]:
    banners = liveness_banners(now) + cluster_banners(now)
    error = redis_error(settings.REDIS_URL)
    if error:
        banners.append(
            {
                "level": "warning",
                "text": f"Redis is unreachable ({error}): polling and alerting are paused and the data "
                "shown may be stale.",
            }
        )
    return banners


def safe_page_banners(now: datetime) -> list[Banner]:
    """For pages of other areas: a database outage becomes a banner, not an error page."""
    try:
        return page_banners(now)
    except DatabaseError as exc:
        log.warning("banners unavailable: database unreachable (%s)", type(exc).__name__)
        return [{"level": "error", "text": "The database is unreachable; the data shown may be incomplete."}]
