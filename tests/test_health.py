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
