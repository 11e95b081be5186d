"""Read layer of the detectors' findings: the Findings page, the incident strip, an alert's
evidence.

A finding is *active* while its detector keeps seeing it (``last_seen_at`` within
:data:`ACTIVE_FOR`). The event metrics of the alert rules read findings by kind (see
:mod:`monitor.events.alert_metrics`); :data:`METRIC_KINDS` is that mapping, in one place,
so an alert on ``failed_events`` finds the failure findings behind it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from monitor.choices import FindingKind
from monitor.errors import QueryError

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from monitor.models import Finding

ACTIVE_FOR = timedelta(minutes=15)
MAX_ROWS = 500

# Alert metric -> (finding kind, the finding field that is the alert subject's "group").
METRIC_KINDS: dict[str, tuple[str, str]] = {
    "lost_events": (FindingKind.LOST, "consumer_group"),
    "duplicate_events": (FindingKind.DUPLICATE, "consumer_group"),
    "out_of_order_events": (FindingKind.OUT_OF_ORDER, "consumer_group"),
    "schema_drift_events": (FindingKind.SCHEMA_DRIFT, "consumer_group"),
    "cascade_storm_events": (FindingKind.CASCADE_STORM, "service"),
    "failed_events": (FindingKind.FAILURE_RATE, "consumer_group"),
}

# How bad a finding is on its own (no alert rule needed to show it in the incident strip).
KIND_SEVERITY: dict[str, str] = {
    FindingKind.LOST: "critical",
    FindingKind.FAILURE_RATE: "warning",
    FindingKind.CASCADE_STORM: "warning",
    FindingKind.SCHEMA_DRIFT: "warning",
    FindingKind.DUPLICATE: "info",
    FindingKind.OUT_OF_ORDER: "info",
}

TIME_WINDOWS: dict[str, timedelta] = {
    "15m": timedelta(minutes=15), "1h": timedelta(hours=1), "6h": timedelta(hours=6),
    "24h": timedelta(hours=24), "7d": timedelta(days=7),
}


@dataclass(frozen=True)
class FindingFilter:
    """The Findings page's filters; every field optional. ``since`` is a key of
    :data:`TIME_WINDOWS` (empty: all time)."""

    kind: str = ""
    service: str = ""
    topic: str = ""
    since: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> FindingFilter:
        kind = (query.get("kind") or "").strip()
        if kind and kind not in FindingKind.values:
            raise QueryError("kind", f"unknown finding kind {kind!r}; one of {', '.join(FindingKind.values)}")
        since = (query.get("since") or "").strip()
        if since and since not in TIME_WINDOWS:
            raise QueryError("since", f"unknown time window {since!r}; one of {', '.join(TIME_WINDOWS)}")
        return cls(kind=kind, service=(query.get("service") or "").strip(),
                   topic=(query.get("topic") or "").strip(), since=since)


def find_findings(filters: FindingFilter, now: datetime, limit: int = MAX_ROWS) -> list[Finding]:
    """Findings matching ``filters``, newest (last seen) first. ``service`` matches the
    service or the consuming group."""
    from django.db.models import Q

    from monitor.models import Finding

    rows: QuerySet[Finding] = Finding.objects.all()
    if filters.kind:
        rows = rows.filter(kind=filters.kind)
    if filters.service:
        rows = rows.filter(Q(service=filters.service) | Q(consumer_group=filters.service))
    if filters.topic:
        rows = rows.filter(topic=filters.topic)
    if filters.since:
        rows = rows.filter(last_seen_at__gte=now - TIME_WINDOWS[filters.since])
    return list(rows.order_by("-last_seen_at", "-id")[:limit])


def active_findings(now: datetime, limit: int = 50) -> list[Finding]:
    """Findings the detectors still saw within :data:`ACTIVE_FOR`, newest first, with a value."""
    from monitor.models import Finding

    return list(Finding.objects.filter(last_seen_at__gte=now - ACTIVE_FOR, value__gt=0)
                .order_by("-last_seen_at", "-id")[:limit])


def findings_for_alert(metric: str, group: str, topic: str, limit: int = 10) -> list[Finding]:
    """The findings behind an alert on an event metric (empty for other metrics)."""
    from monitor.models import Finding

    if metric not in METRIC_KINDS:
        return []
    kind, group_field = METRIC_KINDS[metric]
    rows = Finding.objects.filter(kind=kind, topic=topic, **{group_field: group})
    return list(rows.order_by("-value", "-last_seen_at")[:limit])


def finding_group(finding: Finding) -> str:
    """The alert-subject "group" of a finding: the service for storms, else the consuming group."""
    return finding.service if finding.kind == FindingKind.CASCADE_STORM else finding.consumer_group


def example_trace_ids(findings: list[Finding], limit: int = 5) -> list[str]:
    """Distinct example trace ids of ``findings``, in order."""
    seen: list[str] = []
    for finding in findings:
        for example in finding.examples or []:
            trace_id = example.get("trace_id") if isinstance(example, dict) else None
            if isinstance(trace_id, str) and trace_id and trace_id not in seen:
                seen.append(trace_id)
                if len(seen) >= limit:
                    return seen
    return seen


def finding_services(now: datetime) -> list[str]:
    """Services and groups named by findings (the Findings page's service filter)."""
    from monitor.models import Finding

    names = set(Finding.objects.exclude(service="").values_list("service", flat=True).distinct()[:500])
    names |= set(Finding.objects.exclude(consumer_group="").values_list("consumer_group", flat=True).distinct()[:500])
    return sorted(names)
