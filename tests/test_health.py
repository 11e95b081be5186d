"""Probes: /healthz, /readyz (database, Redis, the scheduler's heartbeat), no redirect to https."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from monitor import liveness


def test_healthz_answers_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_reports_database_and_redis_ok(client, db):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_overview_requires_login(client, db):
    response = client.get("/")
    assert response.status_code == 302
    assert response.url.startswith("/login/")


def test_readyz_answers_503_naming_the_scheduler_when_beat_stopped_ticking(client, db):
    now = timezone.now()
    liveness.beat(liveness.WORKER, now)
    liveness.beat(liveness.SCHEDULER, now - liveness.stale_after() - timedelta(seconds=5))
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["failing"] == ["scheduler"]
    assert body["checks"]["scheduler"].startswith("the scheduler (Celery beat) has not ticked for")

    liveness.beat(liveness.SCHEDULER)
    assert client.get("/readyz").status_code == 200


def test_readyz_is_degraded_but_200_when_only_the_worker_is_silent(client, db):
    now = timezone.now()
    liveness.beat(liveness.SCHEDULER, now)
    liveness.beat(liveness.WORKER, now - timedelta(minutes=5))
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded" and response.json()["degraded"] == ["worker"]


def test_probes_are_answered_over_plain_http_when_https_is_enforced(client, db, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/login/").status_code == 301  # everything else still goes to https


def test_every_web_request_runs_under_a_statement_timeout(client, db, settings):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == f"{settings.MONITOR_DB_STATEMENT_TIMEOUT_SECONDS}s"


def test_a_query_past_the_statement_timeout_is_a_503_with_retry_after_not_a_500(rf, db):
    from django.db import connection, transaction

    from monitor.middleware import DatabaseUnavailableMiddleware

    def slow_view(request):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = 50")
            cursor.execute("SELECT pg_sleep(5)")

    middleware = DatabaseUnavailableMiddleware(slow_view)
    for path, kind in (("/groups/", "text/html"), ("/api/v1/events", "application/json")):
        request = rf.get(path)
        try:
            slow_view(request)
        except Exception as exc:  # noqa: BLE001 - what Django hands to process_exception
            response = middleware.process_exception(request, exc)
        assert response.status_code == 503 and response["Retry-After"] == "15"
        assert response["Content-Type"].startswith(kind)
        assert "statement timeout" in response.content.decode()
