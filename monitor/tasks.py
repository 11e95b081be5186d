"""Thin Celery tasks: they take IDs, call the domain, and return small summaries.

Domain modules are imported inside each task so the worker starts fast and a task's
failure names its own module.
"""
from __future__ import annotations

import functools
import logging
import threading

from celery import shared_task
from celery.signals import worker_shutting_down
from django.db import transaction
from django.utils import timezone

# Set when the worker starts shutting down: long tasks check it and end early.
worker_stopping = threading.Event()


@worker_shutting_down.connect
def _on_worker_shutting_down(**_kwargs: object) -> None:
    worker_stopping.set()


@shared_task(name="monitor.schedule_polls", ignore_result=True)
def schedule_polls() -> int:
    """Every few seconds: start a poll for each cluster whose interval has elapsed; a
    cluster with more groups than MONITOR_POLL_SHARD_GROUPS gets one task per shard."""
    from monitor.lag.clusters import ensure_bootstrap_clusters
    from monitor.lag.poll import claim_due_clusters
    from monitor.lag.shards import planned_shards

    ensure_bootstrap_clusters()
    now = timezone.now()
    cluster_ids = claim_due_clusters(now)
    for cluster_id in cluster_ids:
        shards = planned_shards(cluster_id)
        if shards == 1:
            poll_cluster.delay(cluster_id)
            continue
        for shard in range(shards):  # one cycle: every shard stamped with the same start
            poll_cluster_shard.delay(cluster_id, shard, shards, now.isoformat())
    return len(cluster_ids)


@shared_task(name="monitor.poll_cluster", ignore_result=True, soft_time_limit=120, time_limit=150)
def poll_cluster(cluster_id: int) -> None:
    from monitor.lag.poll import poll_cluster as run_poll

    run_poll(cluster_id)


@shared_task(name="monitor.poll_cluster_shard", ignore_result=True, soft_time_limit=120, time_limit=150)
def poll_cluster_shard(cluster_id: int, shard: int, shards: int, cycle_started_at: str) -> None:
    """One shard of a sharded cycle: the groups whose id hashes to ``shard`` of ``shards``."""
    from datetime import datetime

    from monitor.lag.poll import poll_cluster as run_poll
    from monitor.lag.shards import Shard

    run_poll(cluster_id, shard=Shard(shard, shards), cycle_started_at=datetime.fromisoformat(cycle_started_at))


@shared_task(name="monitor.ensure_time_partitions", ignore_result=True)
def ensure_time_partitions() -> dict[str, list[str]]:
    """Hourly (and once when a worker starts): the daily partitions of every time-partitioned
    table up to two days ahead, so tomorrow's exists long before midnight."""
    from monitor import timepartitions

    return timepartitions.ensure_registered(timezone.now())


@shared_task(name="monitor.prune_lag", ignore_result=True)
def prune_lag() -> None:
    from monitor.lag.retention import rollup_and_prune

    rollup_and_prune(timezone.now())


# -- events area ---------------------------------------------------------------------

@shared_task(name="monitor.run_detectors", ignore_result=True, soft_time_limit=240, time_limit=300)
def run_detectors() -> dict[str, int]:
    """Every minute: lost, duplicate, out-of-order, schema drift, storms, failures."""
    from monitor.events.runner import run_detectors as run

    return run(timezone.now()).findings


@shared_task(name="monitor.prune_events", ignore_result=True)
def prune_events() -> None:
    from monitor.events.config import event_retention_days
    from monitor.events.retention import event_cutoff, prune_events as prune
    from monitor.flow import rollups

    now = timezone.now()
    prune(now)
    rollups.prune(event_cutoff(now, event_retention_days()))  # the flow rollup keeps what the events keep


@shared_task(name="monitor.update_flow_rollups", ignore_result=True, soft_time_limit=100, time_limit=120)
def update_flow_rollups() -> int:
    """Every 30 s: fold the events stored since the last run into the per-minute flow
    edge rollup (trails ingest; the flow page and API read whole minutes from it)."""
    from monitor.flow import rollups

    return rollups.update(timezone.now()).events


@shared_task(name="monitor.schedule_taps", ignore_result=True)
def schedule_taps() -> int:
    """Every few seconds: a header-tap run for each cluster with the tap enabled."""
    from monitor.models import Cluster

    cluster_ids = list(Cluster.objects.filter(enabled=True, tap_enabled=True).values_list("id", flat=True))
    for cluster_id in cluster_ids:
        tap_cluster.delay(cluster_id)
    return len(cluster_ids)


@shared_task(name="monitor.tap_cluster", ignore_result=True, soft_time_limit=60, time_limit=90)
def tap_cluster(cluster_id: int) -> None:
    from monitor.events.tap import tap_cluster as run_tap

    run_tap(cluster_id)


@shared_task(name="monitor.sync_schema_registries", ignore_result=True, soft_time_limit=240, time_limit=280)
def sync_schema_registries() -> int:
    """Every few minutes: each enabled cluster's Schema Registry, read into the database."""
    from monitor.models import Cluster
    from monitor.schemas.registry import sync_cluster_registry

    synced = 0
    for cluster_id in Cluster.objects.filter(enabled=True).exclude(schema_registry_url="").values_list("id", flat=True):
        result = sync_cluster_registry(cluster_id)
        if result.error:
            logging.getLogger(__name__).warning("schema registry of cluster %s: %s", cluster_id, result.error)
        else:
            synced += 1
    return synced


@shared_task(name="monitor.evaluate_rules", ignore_result=True, soft_time_limit=120, time_limit=150)
def evaluate_rules() -> int:
    """Every MONITOR_EVALUATE_INTERVAL_SECONDS: evaluate the alert rules; queue deliveries."""
    from monitor.alerts.engine import evaluate
    from monitor.pathways.updater import update as update_pathways

    now = timezone.now()
    update_pathways(now)  # pathways and transactions first: their metrics are evaluated next
    result = evaluate(now)
    for notification_id in result.notification_ids:
        # Only speeds delivery up: the sweep delivers whatever this fails to queue.
        transaction.on_commit(functools.partial(_queue_delivery, notification_id))
    return len(result.notification_ids)


def _queue_delivery(notification_id: int) -> None:
    try:
        deliver_notification.delay(notification_id)
    except Exception:  # noqa: BLE001 - broker down: the sweep will deliver it
        logging.getLogger(__name__).warning("could not queue notification %s; the sweep will deliver it",
                                            notification_id, exc_info=True)


@shared_task(name="monitor.deliver_notification", ignore_result=True, soft_time_limit=60, time_limit=90)
def deliver_notification(notification_id: int) -> str:
    from monitor.notify.delivery import deliver

    return deliver(notification_id).outcome.value


@shared_task(name="monitor.sweep_notifications", ignore_result=True, soft_time_limit=240, time_limit=300)
def sweep_notifications() -> int:
    """Every 30 s: deliver due notifications (new, retries, claims of dead workers)."""
    from monitor.notify.delivery import sweep_due

    return sweep_due(timezone.now()).total


@shared_task(name="monitor.warm_flow_cache", ignore_result=True, soft_time_limit=100, time_limit=120)
def warm_flow_cache() -> dict[str, float]:
    """Every 2 min: recompute the flow graph's numbers for the long live ranges (24 h,
    7 d) so the flow page and API read them from the cache instead of a week of events."""
    from monitor.flow.queries import WARM_BUDGET_SECONDS, WARM_RANGES, refresh_flow_cache

    # Its own time budget: the threads pool ignores soft_time_limit, and a warm shutdown
    # waits for running tasks.
    return refresh_flow_cache(WARM_RANGES, timezone.now(), WARM_BUDGET_SECONDS, stop=worker_stopping.is_set)
