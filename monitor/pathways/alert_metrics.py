"""Alert metrics of pathways, business transactions, throughput and outboxes.

Imported by the metric registry (``PLUGIN_MODULES`` in :mod:`monitor.alerts.metrics`).
Subjects: ``pathway_p95_seconds`` has the route (services joined by arrows) as its
group; ``stuck_transactions`` the flow name; ``outbox_lag_seconds`` the service;
``produce_rate`` and ``produce_rate_vs_baseline`` the cluster and topic.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from monitor.alerts.metrics import Level, metric
from monitor.alerts.rules import Reading, Scope, Subject, glob_matches

PATHWAY_WINDOW = timedelta(minutes=15)


def _wanted(scopes: Sequence[Scope], subject: Subject) -> bool:
    return any(scope.matches(subject) for scope in scopes)


@metric("pathway_p95_seconds", unit="seconds", level=Level.GROUP,
        description="95th percentile of latency from the origin over the last 15 minutes, per route")
def pathway_p95_seconds(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    from monitor.pathways.queries import pathway_summaries

    readings: dict[Subject, Reading] = {}
    for summary in pathway_summaries(now - PATHWAY_WINDOW, now):
        subject = Subject("", summary.label, "")
        if _wanted(scopes, subject) and summary.p95_seconds is not None:
            readings[subject] = Reading(summary.p95_seconds, detail={"summary": f"{summary.traces} traces"})
    return readings


@metric("stuck_transactions", unit="transactions", level=Level.GROUP,
        description="business transactions in flight for longer than their flow's SLO")
def stuck_transactions(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    from monitor.pathways.queries import stuck_counts

    return {Subject("", name, ""): Reading(float(count)) for name, count in stuck_counts(now).items()
            if _wanted(scopes, Subject("", name, ""))}


@metric("outbox_lag_seconds", unit="seconds", level=Level.GROUP,
        description="oldest outbox write not yet published, per service (0 when the relay keeps up)")
def outbox_lag_seconds(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    from monitor.events.outbox import outbox_lag_by_service

    return {Subject("", service, ""): Reading(seconds) for service, seconds in outbox_lag_by_service(now).items()
            if _wanted(scopes, Subject("", service, ""))}


def _topics(scopes: Sequence[Scope]) -> list[tuple[int, str, str]]:
    from monitor.models import Topic

    found = []
    for cluster_id, cluster, topic in Topic.objects.values_list("cluster_id", "cluster__name", "name"):
        if any(glob_matches(s.cluster, cluster) and glob_matches(s.topic, topic) for s in scopes):
            found.append((cluster_id, cluster, topic))
    return found


@metric("produce_rate", unit="messages/s", level=Level.TOPIC,
        description="messages written to the topic per second over the last MONITOR_PRODUCE_RATE_WINDOW_SECONDS (10 min; from log-end offsets)")
def produce_rate(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    from monitor.lag.throughput import topic_produce_throughput

    readings: dict[Subject, Reading] = {}
    for cluster_id, cluster, topic in _topics(scopes):
        found = topic_produce_throughput(cluster_id, topic, now)
        subject = Subject(cluster, "", topic)
        if found.rate is None:
            readings[subject] = Reading.no_data("no polls of the topic in the window")
        else:
            readings[subject] = Reading(found.rate, detail={"summary": f"{topic}: {found.text}"})
    return readings


@metric("produce_rate_vs_baseline", unit="× usual", level=Level.TOPIC,
        description="produce rate over the window divided by the usual rate at this time "
                    "(same time last week, else the 24 h median); 0 = silent producer")
def produce_rate_vs_baseline(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    from monitor.lag.throughput import topic_produce_throughput

    readings: dict[Subject, Reading] = {}
    for cluster_id, cluster, topic in _topics(scopes):
        found = topic_produce_throughput(cluster_id, topic, now)
        subject = Subject(cluster, "", topic)
        if found.rate is None or not found.baseline:
            readings[subject] = Reading.no_data("no usual rate known yet")
        else:
            readings[subject] = Reading(found.rate / found.baseline, detail={"summary": f"{topic}: {found.text}"})
    return readings
