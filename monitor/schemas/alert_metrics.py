"""Alert metrics of the Schema Registry (registered with the alert engine's registry):
``unknown_schema_ids``, ``schema_compatibility_none`` and ``schema_newest_not_processed``.
Each reads in bulk (a few queries per evaluation) and hands the rule out to
:mod:`monitor.schemas.findings`."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings

from monitor.alerts.metrics import Level, metric
from monitor.alerts.rules import Reading, Scope, Subject
from monitor.choices import CONSUMER_STAGES, Stage
from monitor.schemas import findings
from monitor.schemas.registry import topic_of_subject


@metric("unknown_schema_ids", unit="schema ids", level=Level.TOPIC,
        description="schema ids the header tap read on the topic that the cluster's Schema Registry does not know")
def unknown_schema_ids(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    from monitor.models import SchemaSubject, TopicSchemaId

    known: dict[int, set[int]] = defaultdict(set)
    for cluster_id, versions in SchemaSubject.objects.values_list("cluster_id", "versions"):
        known[cluster_id].update(int(v["schema_id"]) for v in versions or ())
    since = now - timedelta(seconds=settings.MONITOR_SCHEMA_LOOKBACK_SECONDS)
    seen: dict[tuple[int, str], list[tuple[str, int]]] = defaultdict(list)
    names: dict[int, str] = {}
    rows = TopicSchemaId.objects.filter(last_seen_at__gte=since, cluster__schema_registry_url__gt="").values_list(
        "cluster_id", "cluster__name", "topic", "schema_id")
    for cluster_id, cluster_name, topic, schema_id in rows:
        names[cluster_id] = cluster_name
        seen[(cluster_id, topic)].append((topic, schema_id))
    readings: dict[Subject, Reading] = {}
    for (cluster_id, topic), pairs in seen.items():
        unknown = findings.unknown_ids(pairs, known[cluster_id]).get(topic, [])
        summary = f"schema id(s) {', '.join(map(str, unknown[:10]))} not in the registry" if unknown else ""
        readings[Subject(names[cluster_id], "", topic)] = Reading(float(len(unknown)), detail={"summary": summary})
    return readings


@metric("schema_compatibility_none", unit="subjects", level=Level.TOPIC,
        description="registry subjects of the topic whose compatibility level is NONE")
def schema_compatibility_none(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    from monitor.models import SchemaSubject

    counts: dict[Subject, list[str]] = defaultdict(list)
    for cluster_name, subject, level in SchemaSubject.objects.values_list("cluster__name", "subject", "compatibility"):
        key = Subject(cluster_name, "", topic_of_subject(subject) or subject)
        counts.setdefault(key, [])  # every subject reports: 0 when its level is fine
        if level.upper() == "NONE":
            counts[key].append(subject)
    return {key: Reading(float(len(subjects)), detail={"summary": (
        f"compatibility NONE on {', '.join(subjects)}" if subjects else "")}) for key, subjects in counts.items()}


@metric("schema_newest_not_processed", unit="groups", level=Level.TOPIC,
        description="1 when the newest registered schema version of the topic is being published and the group "
                    "has reported handling only older versions")
def schema_newest_not_processed(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    from monitor.models import Event, SchemaSubject

    newest: dict[str, int] = {}
    for subject, versions in SchemaSubject.objects.filter(subject__endswith="-value").values_list("subject", "versions"):
        topic = topic_of_subject(subject)
        if topic and versions:
            newest[topic] = max(newest.get(topic, 0), max(int(v["version"]) for v in versions))
    if not newest:
        return {}
    since = now - timedelta(seconds=settings.MONITOR_SCHEMA_LOOKBACK_SECONDS)
    reports = Event.objects.filter(timestamp__gte=since, topic__in=list(newest), schema_version__isnull=False)
    published: dict[str, set[int]] = defaultdict(set)
    for topic, version in reports.filter(stage=Stage.PUBLISHED).values_list("topic", "schema_version").distinct():
        if version is not None:
            published[topic].add(version)
    processed: dict[tuple[str, str], set[int]] = defaultdict(set)
    for group, service, topic, version in reports.filter(stage__in=list(CONSUMER_STAGES)).values_list(
            "consumer_group", "service", "topic", "schema_version").distinct():
        if version is not None:
            processed[(group or service, topic)].add(version)
    behind = {(b.group, b.topic): b for b in findings.groups_behind_newest(newest, published, processed)}
    readings = {}
    for group, topic in processed:
        lagging = behind.get((group, topic))
        summary = (f"{group} handled up to version {lagging.processed} of {topic}; version {lagging.newest} "
                   "is being published") if lagging else ""
        readings[Subject("", group, topic)] = Reading(1.0 if lagging else 0.0, detail={"summary": summary})
    return readings
