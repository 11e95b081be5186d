"""Retention of event reports and findings.

Reports are kept by whole UTC days: a report goes once its day lies entirely before
``now - retention`` (the cutoff is the start of that day), so the same reports go on both
databases. On PostgreSQL the events table is partitioned by day (``monitor.timepartitions``):
those days' partitions are dropped whole, no mass ``DELETE`` and no bloat; only reports that
waited in the default partition are deleted row-wise. On SQLite (the demo) reports are deleted
in bounded chunks so a large backlog never holds long locks or one huge transaction.
Findings not seen again within the retention are deleted in chunks on both.
"""
from __future__ import annotations

import datetime as dt
from typing import Any
from dataclasses import dataclass

from django.db import connection, transaction

from monitor import timepartitions
from monitor.events.config import event_retention_days
from monitor.models import Event, Finding

CHUNK = 10_000


@dataclass(frozen=True)
class PruneResult:
    events: int
    findings: int
    partitions_dropped: tuple[str, ...] = ()


def _delete_in_chunks(queryset: Any, chunk: int) -> int:
    deleted = 0
    while True:
        ids = list(queryset.values_list("id", flat=True)[:chunk])
        if not ids:
            return deleted
        deleted += queryset.model.objects.filter(id__in=ids).delete()[0]
        if len(ids) < chunk:
            return deleted


def event_cutoff(now: dt.datetime, retention_days: int) -> dt.datetime:
    """The start of the UTC day holding ``now - retention``: reports before it are pruned."""
    return timepartitions.day_start(timepartitions.day_of(now - dt.timedelta(days=retention_days)))


def _drop_whole_days(cutoff: dt.datetime) -> tuple[int, tuple[str, ...]]:
    """Drop the daily partitions before ``cutoff``: (rows they held, their names)."""
    table = Event._meta.db_table
    quote = connection.ops.quote_name
    with transaction.atomic(), connection.cursor() as cursor:
        rows = 0
        for name in timepartitions.partitions_before(table, cutoff):
            cursor.execute(f"SELECT count(*) FROM {quote(name)}")
            rows += int(cursor.fetchone()[0])
        return rows, tuple(timepartitions.drop_partitions_before(table, cutoff))


def prune_events(now: dt.datetime, retention_days: int | None = None, chunk: int = CHUNK) -> PruneResult:
    """Remove event reports of the days wholly older than the retention (by event time), and
    findings not seen again within it."""
    days = retention_days or event_retention_days()
    cutoff = event_cutoff(now, days)
    events, dropped = _drop_whole_days(cutoff)
    # What is left before the cutoff (the default partition's rows on PostgreSQL, every such
    # row on SQLite) goes in chunks.
    events += _delete_in_chunks(Event.objects.filter(timestamp__lt=cutoff).order_by(), chunk)
    findings = _delete_in_chunks(
        Finding.objects.filter(last_seen_at__lt=now - dt.timedelta(days=days)).order_by(), chunk)
    return PruneResult(events=events, findings=findings, partitions_dropped=dropped)
