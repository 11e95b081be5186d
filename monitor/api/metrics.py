"""``GET /metrics``: lag and poller health in the Prometheus text exposition format.

Values come from each group's latest poll. A partition whose lag is unknown has no
sample at all (an absent series, never a 0). Scraping needs the ``read`` scope, like the
JSON API (Prometheus: ``authorization: {credentials_file: ...}``), unless the setting
``MONITOR_METRICS_PUBLIC`` is true.

Granularity (``MONITOR_METRICS_GRANULARITY``, or ``?granularity=`` per scrape), as in
kafka-minion: ``partition`` (default) exports per-partition and per-topic series,
``topic`` only per-topic ones, ``group`` neither; the per-group series are always there.
At 100,000 group-partitions the partition series are most of the answer: the lag rows
come from one read (monitor.lag.samples) and are formatted with each group's label prefix escaped once.

Stale values are not exported: once a cluster has missed one poll (its last poll failed,
or its last success is more than two intervals old) its groups' series disappear, and
``kafka_monitor_cluster_up`` is 0 and ``kafka_monitor_cluster_poll_age_seconds`` says
how old its data is. A total over partially unknown partitions (the group's or a
topic's) is absent too, never a lowered value.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from monitor import liveness
from monitor.api.auth import api_view, authenticate
from monitor.api.errors import BadRequest, FieldError
from monitor.choices import ClusterStatus, GroupStatus, MetricsGranularity as Granularity, TokenScope
from monitor.lag.queries import latest_cycles
from monitor.lag import samples
from monitor.models import Cluster, ConsumerGroup, PollRun

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # gauge | counter
    help: str
    samples: list[tuple[Labels, float]]
    lines: list[str] = field(default_factory=list)
    """Samples already in the exposition format (the large families build these directly)."""


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    if value != value:  # NaN
        return "NaN"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def render(families: Iterable[Family]) -> str:
    """The text exposition format: HELP and TYPE once per family, then its samples."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in family.samples:
            label_text = ",".join(f'{key}="{escape_label_value(str(val))}"' for key, val in labels)
            lines.append(f"{family.name}{{{label_text}}} {format_value(value)}" if labels else f"{family.name} {format_value(value)}")
        lines.extend(family.lines)
    return "\n".join(lines) + "\n"


def _escaped_prefix(cluster: str, group: str) -> str:
    return f'cluster="{escape_label_value(cluster)}",group="{escape_label_value(group)}"'


def _float_text(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def fresh_cluster_ids(clusters: Iterable[Cluster], now: datetime) -> set[int]:
    """Clusters whose latest poll succeeded and is at most one missed interval old."""
    return {
        c.id for c in clusters
        if c.status == ClusterStatus.OK and c.last_success_at is not None
        and (now - c.last_success_at).total_seconds() <= 2 * c.poll_interval_seconds
    }


def _detail_families(granularity: str, fresh: set[int]) -> Iterator[Family]:
    """Per-partition (``partition``) and per-topic (``partition``, ``topic``) lag of each
    group's latest poll, as pre-formatted lines in one pass over each wide read of the
    sample store, ordered by group id (Prometheus does not care about order; sorting
    100,000 rows by names would cost more than the rest)."""
    if granularity == Granularity.GROUP:
        return
    prefixes = {group_id: _escaped_prefix(cluster, group) for group_id, cluster, group in ConsumerGroup.objects
                .filter(gone_at__isnull=True, unread_since__isnull=True, last_sample_at__isnull=False,
                        cluster_id__in=fresh)
                .values_list("id", "cluster__name", "name").iterator(chunk_size=10_000)}
    topic_labels: dict[str, str] = {}
    if granularity == Granularity.PARTITION:
        lag_lines: list[str] = []
        seconds_lines: list[str] = []
        for group_id, topic, partition, lag_value, time_lag in samples.latest_partition_lags(fresh):
            prefix = prefixes.get(group_id)
            if prefix is None:
                continue  # polled after the groups were read
            topic_label = topic_labels.get(topic)
            if topic_label is None:
                topic_label = topic_labels[topic] = escape_label_value(topic)
            labels = f'{{{prefix},topic="{topic_label}",partition="{partition}"}} '
            if lag_value is not None:
                lag_lines.append(f"kafka_consumergroup_lag{labels}{lag_value}")
            if time_lag is not None:
                seconds_lines.append(f"kafka_consumergroup_lag_seconds{labels}{_float_text(time_lag)}")
        yield Family("kafka_consumergroup_lag", "gauge",
                     "Messages the group has not consumed, per partition (latest poll).", [], lag_lines)
        yield Family("kafka_consumergroup_lag_seconds", "gauge",
                     "How far behind the group is in time, per partition (latest poll).", [], seconds_lines)
    topic_lag: list[str] = []
    topic_seconds: list[str] = []
    for group_id, topic, lag_value, time_lag, partial in samples.latest_topic_lags(fresh):
        prefix = prefixes.get(group_id)
        if prefix is None:
            continue
        if partial:
            lag_value = None  # a partial total is not a lower total: absent
        topic_label = topic_labels.get(topic)
        if topic_label is None:
            topic_label = topic_labels[topic] = escape_label_value(topic)
        labels = f'{{{prefix},topic="{topic_label}"}} '
        if lag_value is not None:
            topic_lag.append(f"kafka_consumergroup_topic_lag{labels}{lag_value}")
        if time_lag is not None:
            topic_seconds.append(f"kafka_consumergroup_topic_lag_seconds{labels}{_float_text(time_lag)}")
    yield Family("kafka_consumergroup_topic_lag", "gauge",
                 "Messages the group has not consumed on the topic, over its partitions with a known lag "
                 "(latest poll).", [], topic_lag)
    yield Family("kafka_consumergroup_topic_lag_seconds", "gauge",
                 "The group's largest time lag on the topic (latest poll).", [], topic_seconds)


def collect(granularity: str = "partition", now: datetime | None = None) -> Iterator[Family]:
    now = now or timezone.now()
    clusters = list(Cluster.objects.order_by("name"))
    names = {c.id: c.name for c in clusters}
    fresh = fresh_cluster_ids(clusters, now)

    yield from _detail_families(granularity, fresh)

    groups = [
        (cid, name, status, None if partial else total, members)
        for cid, name, status, total, members, partial in ConsumerGroup.objects.filter(cluster_id__in=fresh)
        .order_by("cluster__name", "name")
        .values_list("cluster_id", "name", "status", "total_lag", "members", "partial_partitions")
    ]
    group_prefix = [_escaped_prefix(names[cid], name) for cid, name, _, _, _ in groups]
    statuses = [(status, escape_label_value(status)) for status in GroupStatus.values]
    yield Family(
        "kafka_consumergroup_status",
        "gauge",
        "1 for the group's current status, 0 for the others.",
        [],
        [
            f'kafka_consumergroup_status{{{prefix},status="{label}"}} {1 if current == status else 0}'
            for prefix, (_, _, current, _, _) in zip(group_prefix, groups)
            for status, label in statuses
        ],
    )
    yield Family(
        "kafka_consumergroup_total_lag",
        "gauge",
        "Messages the group has not consumed, over all its partitions with a known lag.",
        [],
        [f"kafka_consumergroup_total_lag{{{prefix}}} {total}"
         for prefix, (_, _, _, total, _) in zip(group_prefix, groups) if total is not None],
    )
    yield Family(
        "kafka_consumergroup_members",
        "gauge",
        "Members of the group as the broker reported them.",
        [],
        [f"kafka_consumergroup_members{{{prefix}}} {m}"
         for prefix, (_, _, _, _, m) in zip(group_prefix, groups) if m is not None],
    )

    yield Family(
        "kafka_monitor_cluster_up",
        "gauge",
        "1 when the cluster's last poll succeeded and is at most one missed interval old, else 0 (its lag "
        "series are then not exported).",
        [
            ((("cluster", c.name),), 1.0 if c.id in fresh else 0.0)
            for c in clusters
            if c.status != ClusterStatus.UNKNOWN
        ],
    )
    yield Family(
        "kafka_monitor_cluster_poll_age_seconds",
        "gauge",
        "Seconds since the cluster's last successful poll: how old its exported (or withheld) lag is.",
        [((("cluster", c.name),), round((now - c.last_success_at).total_seconds(), 3))
         for c in clusters if c.last_success_at is not None],
    )
    # A cycle polled in shards: its shards added up (the longest duration, the requests summed).
    runs = sorted(latest_cycles().values(), key=lambda r: names[r.cluster_id])
    yield Family(
        "kafka_monitor_poll_duration_seconds",
        "gauge",
        "Duration of the cluster's latest poll cycle.",
        [((("cluster", names[r.cluster_id]),), r.duration_seconds) for r in runs],
    )
    yield Family(
        "kafka_monitor_poll_requests",
        "gauge",
        "Kafka requests made by the cluster's latest poll cycle.",
        [((("cluster", names[r.cluster_id]),), r.requests) for r in runs],
    )
    errors = dict(
        PollRun.objects.values("cluster_id")
        .annotate(failed=Count("id", filter=Q(ok=False)))
        .values_list("cluster_id", "failed")
    )
    yield Family(
        "kafka_monitor_poll_errors_total",
        "counter",
        "Failed poll cycles of the cluster (over the poll history kept).",
        [((("cluster", c.name),), errors.get(c.id, 0)) for c in clusters],
    )


def liveness_families(now: datetime | None = None) -> Iterator[Family]:
    """Heartbeats and the outbox (monitor.liveness): what an external Prometheus alerts on
    when the monitor itself stops (deploy/prometheus/liveness-rules.yml)."""
    state = liveness.read(now)
    yield Family(
        "kafka_monitor_scheduler_last_tick_timestamp_seconds", "gauge",
        "Unix time of the scheduler's (Celery beat) last tick; absent until it first ticked.",
        [((), state.scheduler_at.timestamp())] if state.scheduler_at else [],
    )
    yield Family(
        "kafka_monitor_worker_last_heartbeat_timestamp_seconds", "gauge",
        "Unix time of the Celery worker's last heartbeat; absent until it first reported.",
        [((), state.worker_at.timestamp())] if state.worker_at else [],
    )
    yield Family(
        "kafka_monitor_last_poll_timestamp_seconds", "gauge",
        "Unix time the cluster was last polled (successfully or not); absent before its first poll.",
        [((("cluster", name),), at.timestamp()) for name, at in state.last_poll_at.items() if at is not None],
    )
    yield Family(
        "kafka_monitor_outbox_due_notifications", "gauge",
        "Notifications due for delivery and not yet delivered.", [((), state.outbox_due)],
    )
    yield Family(
        "kafka_monitor_outbox_oldest_due_age_seconds", "gauge",
        "How long the oldest due notification has waited (0 when none waits).",
        [((), round(state.oldest_due_age_seconds, 3))],
    )


@api_view(scope=None)
def metrics(request: HttpRequest) -> HttpResponse:
    if not settings.MONITOR_METRICS_PUBLIC:
        authenticate(request, TokenScope.READ)  # 401/403 rendered by api_view
    granularity = request.GET.get("granularity") or settings.MONITOR_METRICS_GRANULARITY
    if granularity not in Granularity.values:
        raise BadRequest("Invalid query parameters.", [FieldError(
            ("query", "granularity"), f"must be one of: {', '.join(Granularity.values)}")])
    return HttpResponse(render([*collect(granularity), *liveness_families()]), content_type=CONTENT_TYPE)
