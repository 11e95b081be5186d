"""System checks: configuration mistakes reported by `manage.py check` at start-up."""
from __future__ import annotations

from django.conf import settings
from django.core import checks
from django.core.checks import Error, register


@register()
def check_broker_url(app_configs: object, **kwargs: object) -> list[Error]:
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://", "filesystem://", "memory://", "amqp://")):
        return [Error(f"CELERY_BROKER_URL {url!r} has an unsupported scheme", id="monitor.E001")]
    return []


@register()
def check_flow_tolerances(app_configs: object, **kwargs: object) -> list[Error]:
    from monitor.flow.graph import Tolerances

    try:
        Tolerances.from_mapping(settings.MONITOR_FLOW_TOLERANCES)
    except Exception as exc:  # noqa: BLE001 - report any bad value at start-up
        return [Error(f"MONITOR_FLOW_TOLERANCES: {exc}", id="monitor.E002")]
    return []


# Deployment checks (`manage.py check --deploy`): the embedded defaults that keep `make demo`
# self-contained are wrong for production, where they would otherwise be used silently.

@register(deploy=True)
def check_database_is_not_sqlite(app_configs: object, **kwargs: object) -> list[checks.CheckMessage]:
    if not settings.DEBUG and settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        return [checks.Warning("DEBUG is off and the database is SQLite (the demo default)",
                               hint="Set DATABASE_URL to a PostgreSQL database: postgres://user:pass@host:5432/db",
                               id="monitor.W001")]
    return []


@register(deploy=True)
def check_broker_is_not_filesystem(app_configs: object, **kwargs: object) -> list[checks.CheckMessage]:
    if not settings.DEBUG and settings.CELERY_BROKER_URL.startswith("filesystem://"):
        return [checks.Warning("DEBUG is off and the Celery broker is the filesystem:// transport (the demo default)",
                               hint="Set REDIS_URL (or CELERY_BROKER_URL) to a Redis server",
                               id="monitor.W002")]
    return []


@register(deploy=True)
def check_cache_is_not_local_memory(app_configs: object, **kwargs: object) -> list[checks.CheckMessage]:
    if not settings.DEBUG and str(settings.CACHES["default"]["BACKEND"]).endswith("LocMemCache"):
        return [checks.Warning("DEBUG is off and the cache is local memory: each process sees its own snapshots",
                               hint="Set REDIS_URL to a Redis server",
                               id="monitor.W003")]
    return []
