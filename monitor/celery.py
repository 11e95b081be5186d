"""Celery application: Redis broker in production, an embedded transport for the demo."""
import os

from celery import Celery
import logging
import threading

from celery.signals import beat_init, worker_init, worker_process_init, worker_ready, worker_shutting_down

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor.settings")

app = Celery("monitor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["monitor"])

# Periodic work. Per-cluster poll intervals are honoured by `schedule_polls`, which
# claims due clusters with a compare-and-set so two beats never poll one cluster twice.
app.conf.beat_schedule = {
    "schedule-polls": {"task": "monitor.schedule_polls", "schedule": 5.0},
    "prune-lag": {"task": "monitor.prune_lag", "schedule": 300.0},
    "run-detectors": {"task": "monitor.run_detectors", "schedule": 60.0},
    "prune-events": {"task": "monitor.prune_events", "schedule": 900.0},
    "schedule-taps": {"task": "monitor.schedule_taps", "schedule": 10.0},
    "sync-schema-registries": {"task": "monitor.sync_schema_registries", "schedule": 300.0},
    "warm-flow-cache": {"task": "monitor.warm_flow_cache", "schedule": 120.0},
    "update-flow-rollups": {"task": "monitor.update_flow_rollups", "schedule": 30.0},
    "ensure-time-partitions": {"task": "monitor.ensure_time_partitions", "schedule": 3600.0},
}




@app.on_after_configure.connect
def _schedule_rule_evaluation(sender: Celery, **_kwargs: object) -> None:
    """Alert evaluation runs every MONITOR_EVALUATE_INTERVAL_SECONDS.

    Added once Celery has read the Django settings: this module is imported while
    monitor/settings.py itself loads, so it cannot read a setting at import time.
    """
    from django.conf import settings

    sender.add_periodic_task(float(settings.MONITOR_EVALUATE_INTERVAL_SECONDS),
                             sender.signature("monitor.evaluate_rules"), name="evaluate-rules")
    sender.add_periodic_task(float(settings.MONITOR_SWEEP_INTERVAL_SECONDS),
                             sender.signature("monitor.sweep_notifications"), name="sweep-notifications")


_worker_stopping = threading.Event()


@worker_init.connect
@beat_init.connect
def _use_the_task_statement_timeout(**_kwargs: object) -> None:
    """Tasks may run longer than a web request: their statements get the task limit."""
    from django.conf import settings
    from django.db import connections

    options = settings.DATABASES["default"].get("OPTIONS", {})
    if "options" in options:
        options["options"] = f"-c statement_timeout={settings.MONITOR_TASK_STATEMENT_TIMEOUT_SECONDS * 1000}"
        connections.close_all()


@worker_ready.connect
def _start_worker_heartbeat(sender: object = None, **_kwargs: object) -> None:
    """The worker says it is alive from a thread of its own: the heartbeat does not
    depend on beat sending it a task (a dead beat must not look like a dead worker).
    Only a worker taking the default queue (alerts, delivery, upkeep) speaks for "worker":
    a poller taking only MONITOR_POLL_QUEUE must not keep a dead worker looking alive."""
    if not _takes_default_queue(sender):
        return
    threading.Thread(target=_worker_heartbeat_loop, name="monitor-heartbeat", daemon=True).start()


def _takes_default_queue(consumer: object) -> bool:
    queues = getattr(getattr(consumer, "task_consumer", None), "queues", None)
    if queues is None:
        return True  # not told: count it as the worker
    return app.conf.task_default_queue in {queue.name for queue in queues}


@worker_ready.connect
def _ensure_time_partitions_at_start(sender: object = None, **_kwargs: object) -> None:
    """A worker starting (after a day or more down, say) queues the partition upkeep at once
    rather than waiting up to an hour for beat: rows never wait long in a default partition."""
    app.send_task("monitor.ensure_time_partitions")


@worker_shutting_down.connect
def _stop_worker_heartbeat(**_kwargs: object) -> None:
    _worker_stopping.set()


def _worker_heartbeat_loop() -> None:
    import socket

    from django.db import close_old_connections, connection

    from monitor import liveness

    owner = f"{socket.gethostname()}:{os.getpid()}"
    while not _worker_stopping.is_set():
        try:
            close_old_connections()
            liveness.beat(liveness.WORKER, owner=owner)
        except Exception as exc:  # noqa: BLE001 - the database may be away; try again next interval
            connection.close()
            logging.getLogger(__name__).warning("worker heartbeat not recorded: %s", type(exc).__name__)
        _worker_stopping.wait(liveness.interval_seconds())


@worker_process_init.connect
def _init_worker_tracing(**_kwargs: object) -> None:
    from monitor import telemetry

    telemetry.configure("kafka-monitor-worker")


@beat_init.connect
def _init_beat_tracing(**_kwargs: object) -> None:
    from monitor import telemetry

    telemetry.configure("kafka-monitor-beat")
