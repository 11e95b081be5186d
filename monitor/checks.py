"""System checks: configuration mistakes reported by `manage.py check` at start-up."""
from __future__ import annotations

from django.conf import settings
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
