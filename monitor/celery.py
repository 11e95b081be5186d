"""Celery application: Redis broker in production, an embedded transport for the demo."""
import os

from celery import Celery
from celery.signals import worker_process_init, beat_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor.settings")

app = Celery("monitor")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["monitor"])


@worker_process_init.connect
def _init_worker_tracing(**_kwargs: object) -> None:
    from monitor import telemetry

    telemetry.configure("kafka-monitor-worker")


@beat_init.connect
def _init_beat_tracing(**_kwargs: object) -> None:
    from monitor import telemetry

    telemetry.configure("kafka-monitor-beat")
