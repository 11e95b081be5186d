"""Liveness and readiness probes.

``/healthz``: 200 while the web process answers. ``/readyz``: 503 naming the component
when the database or Redis does not answer or the scheduler (Celery beat) has not ticked
for three heartbeat intervals; 200 with ``"status": "degraded"`` when the worker has not
reported or notifications wait too long (the web side can still serve). Both are exempt
from the HTTPS redirect so plain-HTTP probes get an answer (``SECURE_REDIRECT_EXEMPT``).
"""
from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from monitor import liveness


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"unreachable: {type(exc).__name__}"
    if settings.REDIS_URL:
        import redis

        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2).ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = f"unreachable: {type(exc).__name__}"
    failing = [name for name, value in checks.items() if value != "ok"]
    degraded: list[str] = []
    if not failing:
        try:
            for problem in liveness.read().problems():
                checks[problem.component] = problem.text
                (failing if problem.failing else degraded).append(problem.component)
        except Exception as exc:  # noqa: BLE001 - the database answered SELECT 1 but not this
            checks["database"] = f"unreachable: {type(exc).__name__}"
            failing.append("database")
    status = "unavailable" if failing else "degraded" if degraded else "ok"
    body: dict[str, object] = {"status": status, "checks": checks}
    if failing:
        body["failing"] = failing
    if degraded:
        body["degraded"] = degraded
    return JsonResponse(body, status=503 if failing else 200)
