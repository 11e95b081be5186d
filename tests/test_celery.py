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


def _worker(tmp_path, *queue_args: str):  # type: ignore[no-untyped-def]
    """A real ``celery worker`` on the test database and a Redis key prefix of its own."""
    import os
    import subprocess
    import sys
    import uuid

    from django.db import connection

    from tests.services import ensure_redis

    ensure_redis()
    db = connection.settings_dict
    prefix = f"test-heartbeat-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "DJANGO_"))}
    env.update(DATABASE_URL=f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
               REDIS_URL="redis://127.0.0.1:6379/0", MONITOR_BROKER_KEY_PREFIX=f"{prefix}-",
               MONITOR_CACHE_PREFIX=prefix, MONITOR_HEARTBEAT_INTERVAL_SECONDS="1", DEBUG="true",
               DJANGO_SETTINGS_MODULE="monitor.settings", MONITOR_POLL_QUEUE="poll")
    log = open(tmp_path / f"{prefix}.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "monitor", "worker", "--pool=solo", "-n",
                             f"{prefix}@%h", "--without-gossip", "--without-mingle", "-l", "info", *queue_args],
                            env=env, stdout=log, stderr=subprocess.STDOUT), tmp_path / f"{prefix}.log"


def _wait(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_only_a_worker_taking_the_default_queue_says_the_worker_is_alive(transactional_db, tmp_path):
    """A poller (``-Q poll``) runs beside the worker in production: its heartbeat must not keep
    a dead worker looking alive. Real worker processes on the test database."""
    from monitor.models import Heartbeat

    poller, poller_log = _worker(tmp_path, "-Q", "poll")
    try:
        assert _wait(lambda: b" ready." in poller_log.read_bytes(), 60), poller_log.read_text()
        # Three heartbeat intervals after it is ready: nothing recorded for "worker".
        assert not _wait(lambda: Heartbeat.objects.filter(component="worker").exists(), 3)
        worker, worker_log = _worker(tmp_path)
        try:
            assert _wait(lambda: Heartbeat.objects.filter(component="worker").exists(), 60), worker_log.read_text()
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    finally:
        poller.terminate()
        poller.wait(timeout=30)
