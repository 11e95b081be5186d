"""Read layer of the Schema Registry for the event-topic page: per cluster whose registry
has subjects of the topic, the registered versions next to the versions published in
the range and the groups that reported handling each; and the schema ids the header tap
saw on the topic that the registry does not know."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from monitor.choices import CONSUMER_STAGES, Stage


@dataclass(frozen=True)
class RegisteredRow:
    version: int
    schema_id: int
    published: int
    """Reports published in the range with this version."""
    handled_by: tuple[str, ...]
    """Groups (or services) that reported handling this version in the range."""
    newest: bool


@dataclass(frozen=True)
class SubjectView:
    cluster: str
    subject: str
    compatibility: str
    rows: tuple[RegisteredRow, ...]
    unknown_ids: tuple[int, ...] = ()
    lagging_groups: tuple[str, ...] = field(default=())
    """Groups that handle the topic but not the newest version while it is published."""

    @property
    def compatibility_none(self) -> bool:
        return self.compatibility.upper() == "NONE"


def topic_registry(topic: str, since: datetime, until: datetime) -> list[SubjectView]:
    from monitor.models import Event, SchemaSubject, TopicSchemaId

    subjects = list(SchemaSubject.objects.filter(subject__in=[f"{topic}-value", f"{topic}-key"])
                    .select_related("cluster").order_by("cluster__name", "subject"))
    if not subjects:
        return []
    reports = Event.objects.filter(topic=topic, timestamp__gte=since, timestamp__lte=until,
                                   schema_version__isnull=False)
    published: dict[int, int] = defaultdict(int)
    for version, in reports.filter(stage=Stage.PUBLISHED).values_list("schema_version"):
        if version is not None:
            published[version] += 1
    handled: dict[int, set[str]] = defaultdict(set)
    handled_versions: dict[str, set[int]] = defaultdict(set)
    for group, service, version in reports.filter(stage__in=list(CONSUMER_STAGES)).values_list(
            "consumer_group", "service", "schema_version").distinct():
        if version is None:
            continue
        handled[version].add(group or service)
        handled_versions[group or service].add(version)
    seen = defaultdict(set)
    for cluster_id, schema_id in TopicSchemaId.objects.filter(topic=topic).values_list("cluster_id", "schema_id"):
        seen[cluster_id].add(schema_id)
    known_ids: dict[int, set[int]] = defaultdict(set)
    for cluster_id, versions in SchemaSubject.objects.filter(cluster_id__in={s.cluster_id for s in subjects}) \
            .values_list("cluster_id", "versions"):
        known_ids[cluster_id].update(int(v["schema_id"]) for v in versions or ())
    views = []
    for subject in subjects:
        versions = sorted(subject.versions or (), key=lambda v: int(v["version"]))
        newest = int(versions[-1]["version"]) if versions else None
        value_subject = subject.subject.endswith("-value")
        rows = tuple(RegisteredRow(
            version=int(v["version"]), schema_id=int(v["schema_id"]),
            published=published.get(int(v["version"]), 0) if value_subject else 0,
            handled_by=tuple(sorted(handled.get(int(v["version"]), ()))) if value_subject else (),
            newest=int(v["version"]) == newest) for v in versions)
        lagging = tuple(sorted(g for g, vs in handled_versions.items()
                               if value_subject and newest is not None and published.get(newest) and max(vs) < newest))
        views.append(SubjectView(
            cluster=subject.cluster.name, subject=subject.subject, compatibility=subject.compatibility, rows=rows,
            unknown_ids=tuple(sorted(seen[subject.cluster_id] - known_ids[subject.cluster_id])) if value_subject else (),
            lagging_groups=lagging))
    return views
