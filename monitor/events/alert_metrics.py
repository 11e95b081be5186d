"""Event metrics for the alert rules, read from the detectors' findings.

Imported by the alert engine's metric registry (``PLUGIN_MODULES`` in
:mod:`monitor.alerts.metrics`). Events are not tied to a cluster: every subject has an
empty cluster, so rules on these metrics use ``cluster: "*"``. ``group`` is the consumer
group (for storms: the service that started the trace), ``topic`` the topic.

A finding no longer found has value 0, which resolves the alert.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from monitor.alerts.metrics import Level, metric
from monitor.alerts.rules import Reading, Scope, Subject, glob_matches
from monitor.choices import FindingKind


def _readings(kind: str, scopes: Sequence[Scope], group_field: str = "consumer_group") -> dict[Subject, Reading]:
    from monitor.models import Finding

    values: dict[Subject, float] = defaultdict(float)
    summaries: dict[Subject, list[str]] = defaultdict(list)
    traces: dict[Subject, list[str]] = defaultdict(list)
    for group, topic, value, summary, examples in Finding.objects.filter(kind=kind).values_list(
            group_field, "topic", "value", "summary", "examples"):
        subject = Subject("", group, topic)
        if not any(glob_matches(s.group, group) and glob_matches(s.topic, topic) for s in scopes):
            continue
        # Several findings may share a subject (e.g. both duplicate causes, several storms).
        values[subject] = max(values[subject], value) if kind == FindingKind.CASCADE_STORM else values[subject] + value
        if value:
            summaries[subject].append(summary)
            # Example traces, so a message links straight to one (MAX_TRACES per subject).
            for example in examples or ():
                trace_id = example.get("trace_id") if isinstance(example, dict) else None
                if trace_id and len(traces[subject]) < MAX_TRACES and trace_id not in traces[subject]:
                    traces[subject].append(str(trace_id))
    return {subject: Reading(value, detail={"summary": "; ".join(summaries[subject])[:500],
                                            "traces": traces.get(subject, [])})
            for subject, value in values.items()}


MAX_TRACES = 3


@metric("lost_events", unit="events", level=Level.TOPIC,
        description="events published on the topic and not consumed by the group in time")
def lost_events(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    return _readings(FindingKind.LOST, scopes)


@metric("duplicate_events", unit="events", level=Level.TOPIC,
        description="events the group handled more than once (redelivered or published twice)")
def duplicate_events(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    return _readings(FindingKind.DUPLICATE, scopes)


@metric("out_of_order_events", unit="events", level=Level.TOPIC,
        description="events the group handled after a newer event of the same key")
def out_of_order_events(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    return _readings(FindingKind.OUT_OF_ORDER, scopes)


@metric("schema_drift_events", unit="events", level=Level.TOPIC,
        description="events published in a schema version the consuming group never reported handling")
def schema_drift_events(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    return _readings(FindingKind.SCHEMA_DRIFT, scopes)


@metric("cascade_storm_events", unit="events", level=Level.TOPIC,
        description="size of the largest trace storm started by the service (group) on the topic")
def cascade_storm_events(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    return _readings(FindingKind.CASCADE_STORM, scopes, group_field="service")


@metric("failed_events", unit="events", level=Level.TOPIC,
        description="events the group failed or dead-lettered in the detector window")
def failed_events(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    return _readings(FindingKind.FAILURE_RATE, scopes)
