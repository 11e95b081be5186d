"""Page banners name what stopped: the scheduler, the worker, delivery."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from monitor import liveness


def test_a_page_names_the_stopped_scheduler_in_a_banner(logged_in_client):
    now = timezone.now()
    liveness.beat(liveness.WORKER, now)
    liveness.beat(liveness.SCHEDULER, now - timedelta(minutes=3))
    page = logged_in_client.get("/").content.decode()
    assert "The scheduler (Celery beat) has not ticked for 3 min" in page
    assert "no alert can fire" in page


def test_no_banner_while_beat_and_worker_tick(logged_in_client):
    liveness.beat(liveness.WORKER)
    liveness.beat(liveness.SCHEDULER)
    page = logged_in_client.get("/").content.decode()
    assert "has not ticked" not in page and "has not reported" not in page
