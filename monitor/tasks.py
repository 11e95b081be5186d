"""Thin Celery tasks: they take IDs, call the domain, and return small summaries.

Domain modules are imported inside each task so the worker starts fast and a task's
failure names its own module.
"""
from __future__ import annotations

from celery import shared_task
from django.utils import timezone


@shared_task(name="monitor.schedule_polls", ignore_result=True)
def schedule_polls() -> int:
    """Every few seconds: start a poll for each cluster whose interval has elapsed."""
    from monitor.lag.poll import claim_due_clusters

    cluster_ids = claim_due_clusters(timezone.now())
    for cluster_id in cluster_ids:
        poll_cluster.delay(cluster_id)
    return len(cluster_ids)


@shared_task(name="monitor.poll_cluster", ignore_result=True, soft_time_limit=120, time_limit=150)
def poll_cluster(cluster_id: int) -> None:
    from monitor.lag.poll import poll_cluster as run_poll

    run_poll(cluster_id)


@shared_task(name="monitor.prune_lag", ignore_result=True)
def prune_lag() -> None:
    from monitor.lag.retention import rollup_and_prune

    rollup_and_prune(timezone.now())
