"""Kafka lag and event-flow monitor: collect, store, evaluate, notify."""
from monitor.celery import app as celery_app

__all__ = ["celery_app"]
