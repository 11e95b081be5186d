"""``GET /metrics``: lag and poller health in the Prometheus text exposition format.

Values come from each group's latest poll. A partition whose lag is unknown has no
sample at all (an absent series, never a 0). Scraping needs the ``read`` scope, like the
JSON API (Prometheus: ``authorization: {credentials_file: ...}``), unless the setting
``MONITOR_METRICS_PUBLIC`` is true.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Count, F, Max, Q
from django.http import HttpRequest, HttpResponse

from monitor import liveness
from monitor.api.auth import api_view, authenticate
from monitor.choices import ClusterStatus, GroupStatus, TokenScope
from monitor.models import Cluster, ConsumerGroup, PartitionLagSample, PollRun

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # gauge | counter
    help: str
    samples: list[tuple[Labels, float]]


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
    return "\n".join(lines) + "\n"


def collect() -> Iterator[Family]:
    clusters = list(Cluster.objects.order_by("name"))
    names = {c.id: c.name for c in clusters}

    lag: list[tuple[Labels, float]] = []
    lag_seconds: list[tuple[Labels, float]] = []
    latest = (
        PartitionLagSample.objects.filter(polled_at=F("group__last_sample_at"), group__gone_at__isnull=True)
        .order_by("group__cluster__name", "group__name", "topic", "partition")
        .values_list("group__cluster_id", "group__name", "topic", "partition", "lag", "time_lag_seconds")
    )
    for cluster_id, group, topic, partition, lag_value, time_lag in latest:
        labels = (("cluster", names[cluster_id]), ("group", group), ("topic", topic), ("partition", str(partition)))
        if lag_value is not None:
            lag.append((labels, lag_value))
        if time_lag is not None:
            lag_seconds.append((labels, time_lag))
    yield Family("kafka_consumergroup_lag", "gauge", "Messages the group has not consumed, per partition (latest poll).", lag)
    yield Family(
        "kafka_consumergroup_lag_seconds",
        "gauge",
        "How far behind the group is in time, per partition (latest poll).",
        lag_seconds,
    )

    groups = list(
        ConsumerGroup.objects.order_by("cluster__name", "name").values_list(
            "cluster_id", "name", "status", "total_lag", "members"
        )
    )
    yield Family(
        "kafka_consumergroup_status",
        "gauge",
        "1 for the group's current status, 0 for the others.",
        [
            ((("cluster", names[cid]), ("group", name), ("status", status)), 1.0 if current == status else 0.0)
            for cid, name, current, _, _ in groups
            for status in GroupStatus.values
        ],
    )
    yield Family(
        "kafka_consumergroup_total_lag",
        "gauge",
        "Messages the group has not consumed, over all its partitions with a known lag.",
        [((("cluster", names[cid]), ("group", name)), total) for cid, name, _, total, _ in groups if total is not None],
    )
    yield Family(
        "kafka_consumergroup_members",
        "gauge",
        "Members of the group as the broker reported them.",
        [((("cluster", names[cid]), ("group", name)), m) for cid, name, _, _, m in groups if m is not None],
    )

    yield Family(
        "kafka_monitor_cluster_up",
        "gauge",
        "1 when the cluster's last poll succeeded, 0 when it was unreachable.",
        [
            ((("cluster", c.name),), 1.0 if c.status == ClusterStatus.OK else 0.0)
            for c in clusters
            if c.status != ClusterStatus.UNKNOWN
        ],
    )
    latest_ids = PollRun.objects.values("cluster_id").annotate(latest=Max("id")).values_list("latest", flat=True)
    runs = sorted(PollRun.objects.filter(id__in=list(latest_ids)), key=lambda r: names[r.cluster_id])
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
    return HttpResponse(render([*collect(), *liveness_families()]), content_type=CONTENT_TYPE)
