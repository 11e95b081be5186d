"""Retention of event reports and findings: delete what is older than the retention,
in bounded chunks so a large backlog never holds long locks or one huge transaction."""
from __future__ import annotations

import datetime as dt
from typing import Any
from dataclasses import dataclass

from monitor.events.config import event_retention_days
from monitor.models import Event, Finding

CHUNK = 10_000


@dataclass(frozen=True)
class PruneResult:
    events: int
    findings: int


def _delete_in_chunks(queryset: Any, chunk: int) -> int:
    deleted = 0
    while True:
        ids = list(queryset.values_list("id", flat=True)[:chunk])
        if not ids:
            return deleted
        deleted += queryset.model.objects.filter(id__in=ids).delete()[0]
        if len(ids) < chunk:
            return deleted


def prune_events(now: dt.datetime, retention_days: int | None = None, chunk: int = CHUNK) -> PruneResult:
    """Delete event reports older than the retention (by event time), and findings not
    seen again within it."""
    cutoff = now - dt.timedelta(days=retention_days or event_retention_days())
    events = _delete_in_chunks(Event.objects.filter(timestamp__lt=cutoff).order_by(), chunk)
    findings = _delete_in_chunks(Finding.objects.filter(last_seen_at__lt=cutoff).order_by(), chunk)
    return PruneResult(events=events, findings=findings)
