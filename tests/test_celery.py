"""The Celery application's wiring: broker options chosen on purpose, the beat schedule."""
from __future__ import annotations

from django.conf import settings


def test_a_dead_workers_message_comes_back_after_a_visibility_timeout_longer_than_any_task():
    import monitor.tasks  # noqa: F401 - registers the tasks
    from monitor.celery import app

    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert app.conf.broker_transport_options["visibility_timeout"] == visibility == 600
    longest = max(task.time_limit or 0 for name, task in app.tasks.items() if name.startswith("monitor."))
    assert longest <= 300 < visibility
