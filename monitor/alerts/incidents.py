"""Read layer of the on-call path: what is wrong right now, since when, how bad, and
where its cause is.

* :func:`incidents` - the overview's incident strip: firing alerts (silenced ones muted)
  and active findings no alert already covers, worst first, each with at most three
  links to its cause (group page / flow edge / example trace).
* :func:`firing_count` - the badge on "Alerts" in the navigation (silenced ones excluded).
* :func:`alert_links` / :func:`alert_evidence` - the alert page as the hub: the subject's
  group, Kafka topic, event topic, flow edge and failed traces, and the findings and
  example traces behind a detector alert.

Lag alerts carry a cluster; detector alerts do not (events are not tied to a cluster):
their "group" is the consuming group (the starting service for storms) and their topic
the event topic, linked to the lag pages when a known cluster has a group of that name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor import links
from monitor.alerts.rules import Subject
from monitor.alerts.silences import active_mutes, muted_by
from monitor.choices import AlertState, FindingKind, SeriesMetric, Severity
from monitor.events import findings as finding_queries
from monitor.lag import series as lag_series
from monitor.lag.series import NamedSeries
from monitor.models import Alert, ConsumerGroup, Finding, Topic

SEVERITY_RANK: dict[str, int] = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
MAX_INCIDENTS = 50


@dataclass(frozen=True)
class Link:
    label: str
    url: str
    role: str = ""  # "group", "topic", "event-topic", "service", "flow", "trace", "traces": for tests and styling


@dataclass(frozen=True)
class Incident:
    """One line of the incident strip."""

    kind: str  # "alert" or "finding"
    severity: str
    title: str
    subject: str
    since: datetime
    url: str  # the alert page, or the findings page filtered to this finding
    summary: str = ""
    links: tuple[Link, ...] = ()
    silenced_by: str = ""
    acknowledged_by: str = ""
    alert_id: int | None = None


@dataclass(frozen=True)
class Evidence:
    """What the alert page shows under the alert: the findings and their example traces."""

    findings: list[Finding] = field(default_factory=list)
    trace_ids: list[str] = field(default_factory=list)


def _group_clusters(names: set[str]) -> dict[str, str]:
    """group name -> the cluster of the first live group of that name (one query)."""
    found: dict[str, str] = {}
    if not names:
        return found
    for cluster, name in (ConsumerGroup.objects.filter(name__in=names, gone_at=None)
                          .order_by("cluster__name").values_list("cluster__name", "name")):
        found.setdefault(name, cluster)
    return found


def _topic_clusters(names: set[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    if not names:
        return found
    for cluster, name in Topic.objects.filter(name__in=names).order_by("cluster__name").values_list(
            "cluster__name", "name"):
        found.setdefault(name, cluster)
    return found


def _group_reasons(alerts: list[Alert]) -> dict[tuple[str, str], str]:
    """(cluster, group) -> the group's status reason, for the lag alerts' summaries (one query)."""
    if not alerts:
        return {}
    rows = ConsumerGroup.objects.filter(cluster__name__in={a.cluster for a in alerts},
                                        name__in={a.group for a in alerts})
    return {(c, n): r for c, n, r in rows.values_list("cluster__name", "name", "status_reason")}


def is_detector_metric(metric: str) -> bool:
    return metric in finding_queries.METRIC_KINDS


def alert_links(alert: Alert, group_clusters: dict[str, str] | None = None,
                topic_clusters: dict[str, str] | None = None) -> list[Link]:
    """Every page an alert's cause may be on, most direct first."""
    result: list[Link] = []
    metric = alert.rule.metric
    group, topic = alert.group, alert.topic
    if not is_detector_metric(metric):
        if alert.cluster and group:
            result.append(Link(f"group {group}", links.group_path(alert.cluster, group), "group"))
        if alert.cluster and topic:
            result.append(Link(f"topic {topic}", links.topic_path(alert.cluster, topic), "topic"))
        if group:
            result.append(Link("failed traces", links.traces_path(group=group, topic=topic, failed="1"), "traces"))
        return result
    group_clusters = group_clusters if group_clusters is not None else _group_clusters({group} if group else set())
    topic_clusters = topic_clusters if topic_clusters is not None else _topic_clusters({topic} if topic else set())
    storm = finding_queries.METRIC_KINDS[metric][0] == FindingKind.CASCADE_STORM
    if storm and group:
        result.append(Link(f"service {group}", links.service_path(group), "service"))
    elif group and group in group_clusters:
        result.append(Link(f"group {group}", links.group_path(group_clusters[group], group), "group"))
    if topic:
        result.append(Link(f"event topic {topic}", links.event_topic_path(topic), "event-topic"))
        if topic in topic_clusters:
            result.append(Link(f"Kafka topic {topic}", links.topic_path(topic_clusters[topic], topic), "topic"))
    if group and not storm:
        result.append(Link("flow edge", links.flow_path(group=group), "flow"))
    # Storms are traced from their starting service; the rest to the group's failures.
    traces_filter: dict[str, object] = ({"service": group, "topic": topic} if storm
                                        else {"group": group, "topic": topic, "failed": "1"})
    result.append(Link("failed traces" if not storm else "traces", links.traces_path(**traces_filter), "traces"))
    return result


def subject_path(alert: Alert) -> str:
    """The page of an alert's subject, without a query: the group for lag alerts; for
    detector alerts the starting service (storms) or the event topic."""
    found = alert_links(alert, group_clusters={}, topic_clusters={})
    return found[0].url if found else ""


def alert_evidence(alert: Alert) -> Evidence:
    found = finding_queries.findings_for_alert(alert.rule.metric, alert.group, alert.topic)
    return Evidence(findings=found, trace_ids=finding_queries.example_trace_ids(found))


# The second cause link: where the cause of each kind of detector alert shows best. Schema
# drift is read on the event topic's schema-version matrix; the rest on the flow edge.
SECOND_LINK_ROLES: dict[str, tuple[str, ...]] = {FindingKind.SCHEMA_DRIFT: ("event-topic", "flow", "topic")}
DEFAULT_SECOND_LINK_ROLES = ("flow", "event-topic", "topic")


def _cause_links(all_links: list[Link], trace_ids: list[str], kind: str = "") -> tuple[Link, ...]:
    """At most three: the group (or service), the flow edge or topic, one example trace."""
    chosen: list[Link] = []
    group = next((link for link in all_links if link.role in ("group", "service")), None)
    if group is not None:
        chosen.append(group)
    for role in SECOND_LINK_ROLES.get(kind, DEFAULT_SECOND_LINK_ROLES):
        match = next((link for link in all_links if link.role == role), None)
        if match is not None:
            chosen.append(match)
            break
    if trace_ids:
        chosen.append(Link("example trace", links.trace_path(trace_ids[0]), "trace"))
    return tuple(chosen)


def firing_count(now: datetime) -> int:
    """Firing alerts that are not silenced (the navigation badge)."""
    mutes = active_mutes(now)
    rows = Alert.objects.filter(state=AlertState.FIRING).values_list("rule_id", "cluster", "group", "topic")[:1000]
    return sum(1 for rule_id, cluster, group, topic in rows
               if not muted_by(mutes, rule_id, Subject(cluster, group, topic)))


def incidents(now: datetime, limit: int = MAX_INCIDENTS) -> list[Incident]:
    """Firing alerts, then active findings no firing alert covers; worst first, muted last."""
    mutes = active_mutes(now)
    alerts = list(Alert.objects.select_related("rule").filter(state=AlertState.FIRING)
                  .order_by("-fired_at")[:limit])
    active = finding_queries.active_findings(now, limit)
    group_clusters = _group_clusters({a.group for a in alerts if a.group}
                                     | {f.consumer_group for f in active if f.consumer_group})
    topic_clusters = _topic_clusters({a.topic for a in alerts if a.topic} | {f.topic for f in active if f.topic})
    reasons = _group_reasons([a for a in alerts if a.cluster and a.group])
    # The findings behind the firing detector alerts, fetched once for all of them.
    covered: set[tuple[str, str, str]] = set()
    behind: dict[tuple[str, str, str], list[Finding]] = {}
    for finding in Finding.objects.filter(kind__in=[k for k, _ in finding_queries.METRIC_KINDS.values()],
                                          topic__in={a.topic for a in alerts}).order_by("-value")[:2000]:
        behind.setdefault((finding.kind, finding_queries.finding_group(finding), finding.topic), []).append(finding)

    result: list[Incident] = []
    for alert in alerts:
        metric = alert.rule.metric
        all_links = alert_links(alert, group_clusters, topic_clusters)
        evidence: list[Finding] = []
        kind = ""
        if is_detector_metric(metric):
            kind = finding_queries.METRIC_KINDS[metric][0]
            key = (kind, alert.group, alert.topic)
            covered.add(key)
            evidence = behind.get(key, [])
        summary = str((alert.detail or {}).get("summary") or "") or reasons.get((alert.cluster, alert.group), "")
        result.append(Incident(
            kind="alert", severity=alert.rule.severity, title=alert.rule.name, subject=alert.subject_label,
            since=alert.fired_at or alert.started_at, url=links.alert_path(alert.id), summary=summary,
            links=_cause_links(all_links, finding_queries.example_trace_ids(evidence, 1), kind),
            silenced_by=muted_by(mutes, alert.rule_id, Subject(alert.cluster, alert.group, alert.topic)),
            acknowledged_by=alert.acknowledged_by if alert.acknowledged_at else "", alert_id=alert.id,
        ))
    for finding in active:
        if (finding.kind, finding_queries.finding_group(finding), finding.topic) in covered:
            continue
        result.append(_finding_incident(finding, group_clusters))
    result.sort(key=lambda i: (bool(i.silenced_by), SEVERITY_RANK.get(i.severity, 3), i.kind != "alert",
                               -i.since.timestamp()))
    return result[:limit]


def _finding_incident(finding: Finding, group_clusters: dict[str, str]) -> Incident:
    all_links: list[Link] = []
    group = finding.consumer_group
    if finding.kind == FindingKind.CASCADE_STORM and finding.service:
        all_links.append(Link(f"service {finding.service}", links.service_path(finding.service), "service"))
    elif group and group in group_clusters:
        all_links.append(Link(f"group {group}", links.group_path(group_clusters[group], group), "group"))
    if group:
        all_links.append(Link("flow edge", links.flow_path(group=group), "flow"))
    if finding.topic:
        all_links.append(Link(f"event topic {finding.topic}", links.event_topic_path(finding.topic), "event-topic"))
    subject = " / ".join(p for p in (finding.service if finding.kind == FindingKind.CASCADE_STORM else group,
                                     finding.topic) if p)
    return Incident(
        kind="finding", severity=finding_queries.KIND_SEVERITY.get(finding.kind, "info"),
        title=finding.get_kind_display(), subject=subject or finding.summary[:80], since=finding.first_seen_at,
        url=links.path("findings", query={"kind": finding.kind, "topic": finding.topic}), summary=finding.summary,
        links=_cause_links(all_links, finding_queries.example_trace_ids([finding], 1), finding.kind),
    )


@dataclass(frozen=True)
class AlertChart:
    """The data of an alert page's chart: the subject's lag around the alert."""

    series: list[NamedSeries]
    metric: str
    since: datetime
    until: datetime
    onset: datetime
    resolved: datetime | None
    threshold: float | None  # set when the rule's metric is the plotted one


CHART_BEFORE_ONSET = timedelta(minutes=15)
CHART_AFTER_RESOLVED = timedelta(minutes=5)


def alert_chart(alert: Alert, now: datetime) -> AlertChart | None:
    """The lag (or time lag) of the alert's group and topic from a while before the onset
    to now (or a little after it resolved); None for alerts without a known group. The
    range starts no earlier than the group was first seen, so young data is not squeezed."""
    if not alert.cluster or not alert.group:
        return None
    group = (ConsumerGroup.objects.select_related("cluster")
             .filter(cluster__name=alert.cluster, name=alert.group).first())
    if group is None:
        return None
    rule_metric = alert.rule.metric
    metric = SeriesMetric.TIME_LAG_SECONDS if rule_metric == SeriesMetric.TIME_LAG_SECONDS else SeriesMetric.LAG
    since = max(alert.started_at - CHART_BEFORE_ONSET, group.first_seen_at)
    until = min(now, alert.resolved_at + CHART_AFTER_RESOLVED) if alert.resolved_at else now
    series = lag_series.group_lag_series(group, since, until, now, topic=alert.topic or None, metric=metric)
    return AlertChart(series=series, metric=metric, since=since, until=until, onset=alert.started_at,
                      resolved=alert.resolved_at, threshold=alert.threshold if rule_metric == metric else None)


DEFAULT_SPARKLINE_FLOOR = 100.0  # messages: with no lag rule, lag below this is drawn flat


def sparkline_floor() -> float:
    """The scale floor of the overview's sparklines: the lowest threshold of the enabled
    ``lag`` rules (what someone decided is worth an alert), else a default."""
    from django.db.models import Min

    from monitor.models import AlertRule

    lowest = AlertRule.objects.filter(enabled=True, metric="lag", threshold__gt=0).aggregate(low=Min("threshold"))["low"]
    return float(lowest) if lowest is not None else DEFAULT_SPARKLINE_FLOOR


@dataclass(frozen=True)
class ChartMarker:
    """Something to mark on a group's lag chart beside its lifecycle events; ``topic``
    empty means the whole group."""

    at: datetime
    kind: str  # "alert", "finding" or "schema"
    label: str
    detail: str = ""
    topic: str = ""


MAX_MARKERS = 200


def group_markers(cluster: str, group: str, topics: list[str], since: datetime, until: datetime) -> list[ChartMarker]:
    """Alerts on the group (onset and resolution), findings about it and the first
    publication of each schema version on its topics, within [since, until]: a lag spike
    next to a cascade storm or a new schema version explains itself. Three queries."""
    from django.db.models import Min, Q

    from monitor.choices import Stage
    from monitor.models import Event

    markers: list[ChartMarker] = []
    alerts = (Alert.objects.select_related("rule").filter(group=group).filter(Q(cluster=cluster) | Q(cluster=""))
              .filter(started_at__lte=until).filter(Q(resolved_at=None) | Q(resolved_at__gte=since))
              .order_by("-started_at")[:MAX_MARKERS])
    for alert in alerts:
        if alert.started_at >= since:
            markers.append(ChartMarker(alert.started_at, "alert", f"alert: {alert.rule.name}",
                                       f"{alert.rule.severity}, condition began", alert.topic))
        if alert.resolved_at and alert.resolved_at <= until:
            markers.append(ChartMarker(alert.resolved_at, "alert", f"resolved: {alert.rule.name}", "", alert.topic))
    for finding in (Finding.objects.filter(Q(consumer_group=group) | Q(service=group), first_seen_at__gte=since,
                                           first_seen_at__lte=until).order_by("-first_seen_at")[:MAX_MARKERS]):
        markers.append(ChartMarker(finding.first_seen_at, "finding", finding.get_kind_display(),
                                   finding.summary[:200], finding.topic))
    if topics:
        firsts = (Event.objects.filter(topic__in=topics, stage=Stage.PUBLISHED, schema_version__isnull=False)
                  .values("topic", "type", "schema_version").annotate(first=Min("timestamp"))
                  .filter(first__gte=since, first__lte=until).order_by("first")[:MAX_MARKERS])
        for row in firsts:
            markers.append(ChartMarker(row["first"], "schema", f"schema v{row['schema_version']}",
                                       f"first {row['type']} in version {row['schema_version']}", row["topic"]))
    return markers
