"""Read side of lag monitoring (clusters, overview, groups, topics), shared by the
dashboard pages and the JSON API. Charts' series are :mod:`monitor.lag.series`.

Pure helpers (``OverviewFilter``) take plain data; the query functions read the tables the
poller writes (lag samples through :mod:`monitor.lag.samples`, aggregated here) and return
plain dataclasses or model rows. Nothing here writes.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar, TypeVar

from django.db.models import Case, Count, F, IntegerField, Max, Q, QuerySet, TextField, When
from django.db.models import Value as SqlValue
from django.db.models.expressions import OrderBy
from django.db.models.functions import Cast

from monitor.choices import PROBLEM_STATUSES, STATUS_SEVERITY, ClusterStatus, GroupStatus
from monitor.lag import samples
from monitor.lag.series import Value, bucket_index, max_known
from monitor.redaction import redact
from monitor.lag import members as group_members
from monitor.lag import snapshot
from monitor.models import (
    Cluster,
    ConsumerGroup,
    GroupEvent,
    PollRun,
    Topic,
)

K = TypeVar("K")

SPARKLINE_WINDOW = timedelta(hours=1)
SPARKLINE_POINTS = 40

OVERVIEW_PAGE_SIZE = 50


def severity_rank() -> Case:
    """A group's place in STATUS_SEVERITY as an SQL expression (0 = needs a human first)."""
    return Case(
        *[When(status=status.value, then=SqlValue(index)) for index, status in enumerate(STATUS_SEVERITY)],
        default=SqlValue(len(STATUS_SEVERITY)),
        output_field=IntegerField(),
    )


UNREAD = Q(unread_since__isnull=False, gone_at__isnull=True)
"""Listed groups whose committed offsets could not be read (see monitor.lag.record.mark_unread)."""


@dataclass(frozen=True)
class OverviewFilter:
    """The overview's filters, sort order and page, as carried in the URL query string.
    Filtering, sorting and paging all run in the database (``apply``/``ordering``)."""

    cluster: str = ""
    status: str = ""
    text: str = ""
    sort: str = "severity"
    descending: bool = False
    page: int = 1

    SORTS: ClassVar[tuple[str, ...]] = (
        "severity", "cluster", "group", "status", "total_lag", "max_time_lag_seconds", "members", "last_sample_at",
    )
    _COLUMNS: ClassVar[dict[str, tuple[str, ...]]] = {
        "cluster": ("cluster__name", "name"),
        "group": ("name", "cluster__name"),
        "status": ("status",),
        "total_lag": ("total_lag",),
        "max_time_lag_seconds": ("max_time_lag_seconds",),
        "members": ("members",),
        "last_sample_at": ("last_sample_at",),
    }

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> "OverviewFilter":
        """Unknown or malformed values fall back to the defaults: a stale bookmark still opens."""
        status = query.get("status", "")
        sort = query.get("sort", "severity")
        page = query.get("page", "1")
        return cls(
            cluster=query.get("cluster", "").strip(),
            status=status if status in GroupStatus.values or status in ("problems", "unread") else "",
            text=query.get("q", "").strip(),
            sort=sort if sort in cls.SORTS else "severity",
            descending=query.get("dir", "") == "desc",
            page=int(page) if page.isdigit() and 0 < int(page) < 1_000_000 else 1,
        )

    def apply(self, groups: QuerySet[ConsumerGroup]) -> QuerySet[ConsumerGroup]:
        """``groups`` narrowed to the cluster, status and text filters (text: a case-blind
        substring of the group's name, its cluster's name or one of its topics)."""
        if self.cluster:
            groups = groups.filter(cluster__name=self.cluster)
        if self.status == "problems":
            groups = groups.filter(status__in=PROBLEM_STATUSES)
        elif self.status == "unread":  # listed, offsets not read (a kind of unknown)
            groups = groups.filter(UNREAD)
        elif self.status:
            groups = groups.filter(status=self.status)
        if self.text:
            groups = groups.annotate(topics_text=Cast("topics", TextField())).filter(
                Q(name__icontains=self.text) | Q(cluster__name__icontains=self.text)
                | Q(topics_text__icontains=self.text)
            )
        return groups

    def ordering(self) -> list[OrderBy]:
        """ORDER BY for the sort: by severity, problems first then the largest lag; any
        other column with unknown values last in both directions; ties by cluster, name."""
        if self.sort == "severity":
            keys = [
                OrderBy(F("severity_rank"), descending=self.descending),
                OrderBy(F("total_lag"), descending=not self.descending, nulls_last=True),
            ]
        else:
            keys = [OrderBy(F(column), descending=self.descending, nulls_last=True)
                    for column in self._COLUMNS[self.sort]]
        return [*keys, OrderBy(F("cluster__name")), OrderBy(F("name")), OrderBy(F("id"))]


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class PartitionRow:
    topic: str
    partition: int
    committed_offset: int | None
    log_start_offset: int | None
    log_end_offset: int | None
    lag: int | None
    time_lag_seconds: float | None
    time_lag_method: str
    time_lag_reason: str
    owner: str | None = None
    """Member id owning the partition; None when unassigned or not told (see ``owner_known``)."""
    owner_client_id: str | None = None
    owner_host: str | None = None
    owner_known: bool = False
    """Whether the broker told the group's members at the last poll."""
    stalled: bool = False
    """The committed offset has not moved for the status window while the partition lags."""


@dataclass(frozen=True)
class OverviewRow:
    group: ConsumerGroup
    sparkline: list[Value]


@dataclass(frozen=True)
class TopicReader:
    group: ConsumerGroup
    lag: int | None
    max_time_lag_seconds: float | None
    partitions: int
    unknown_partitions: int


@dataclass(frozen=True)
class ClusterRow:
    cluster: Cluster
    last_error: str
    groups: int
    problem_groups: int
    last_run: PollRun | None
    unread_groups: int = 0
    """Listed groups whose committed offsets could not be read (``unread_since`` set)."""


@dataclass(frozen=True)
class ClusterAlarm:
    """A cluster the UI must warn about: ``kind`` is "unreachable" or "stale"."""

    name: str
    kind: str
    since: datetime | None
    error: str = ""


@dataclass
class Overview:
    rows: list[OverviewRow]
    clusters: list[str]
    total_groups: int
    status_counts: dict[str, int] = field(default_factory=dict)
    matching: int = 0
    """Groups matching the filters (over every page)."""
    page: int = 1
    pages: int = 1


# --------------------------------------------------------------------------- clusters


def public_error(cluster: Cluster) -> str:
    """The cluster's last error, safe to show: SASL credentials are cut out."""
    return redact(cluster.last_error or "", [cluster.sasl_password])


def find_cluster(name: str) -> Cluster | None:
    return Cluster.objects.filter(name=name).first()


def find_group(cluster: Cluster, name: str) -> ConsumerGroup | None:
    group = ConsumerGroup.objects.filter(cluster=cluster, name=name).first()
    if group is not None:
        group.cluster = cluster  # spare a query on every group.cluster access
    return group


def cluster_rows() -> list[ClusterRow]:
    clusters = list(Cluster.objects.order_by("name"))
    counts = {
        row["cluster_id"]: row
        for row in ConsumerGroup.objects.values("cluster_id").annotate(
            groups=Count("id"), problems=Count("id", filter=Q(status__in=PROBLEM_STATUSES)),
            unread=Count("id", filter=UNREAD),
        )
    }
    runs = latest_cycles()
    return [
        ClusterRow(
            cluster=cluster,
            last_error=public_error(cluster),
            groups=counts.get(cluster.id, {}).get("groups", 0),
            problem_groups=counts.get(cluster.id, {}).get("problems", 0),
            last_run=runs.get(cluster.id),
            unread_groups=counts.get(cluster.id, {}).get("unread", 0),
        )
        for cluster in clusters
    ]


def latest_cycles() -> dict[int, PollRun]:
    """Each cluster's latest poll cycle. A cycle polled in shards has one PollRun per
    shard, all with the cycle's start: they are added up in one unsaved PollRun (the
    longest shard's duration; requests, groups and partitions summed, so a partition read
    by groups of two shards counts twice; ok only when every shard was)."""
    latest_ids = PollRun.objects.values("cluster_id").annotate(latest=Max("id")).values_list("latest", flat=True)
    runs = {run.cluster_id: run for run in PollRun.objects.filter(id__in=list(latest_ids))}
    if not runs:
        return runs
    same_cycle = Q()
    for run in runs.values():
        same_cycle |= Q(cluster_id=run.cluster_id, started_at=run.started_at)
    shards: dict[int, list[PollRun]] = defaultdict(list)
    for run in PollRun.objects.filter(same_cycle).order_by("id"):
        shards[run.cluster_id].append(run)
    for cluster_id, parts in shards.items():
        if len(parts) > 1:
            runs[cluster_id] = PollRun(
                cluster_id=cluster_id, started_at=parts[0].started_at,
                duration_seconds=max(p.duration_seconds for p in parts), requests=sum(p.requests for p in parts),
                groups=sum(p.groups for p in parts), partitions=sum(p.partitions for p in parts),
                ok=all(p.ok for p in parts), error="; ".join(p.error for p in parts if p.error)[:2000],
            )
    return runs


def cluster_alarms(now: datetime) -> list[ClusterAlarm]:
    """Unreachable clusters (with since when) and clusters nobody has polled lately."""
    alarms: list[ClusterAlarm] = []
    for cluster in Cluster.objects.filter(enabled=True).order_by("name"):
        if cluster.status == ClusterStatus.UNREACHABLE:
            failures = PollRun.objects.filter(cluster=cluster, ok=False)
            if cluster.last_success_at is not None:
                failures = failures.filter(started_at__gt=cluster.last_success_at)
            first_failure = failures.order_by("started_at").values_list("started_at", flat=True).first()
            since = first_failure or cluster.last_poll_at
            alarms.append(ClusterAlarm(cluster.name, "unreachable", since, public_error(cluster)))
            continue
        overdue_after = timedelta(seconds=max(3 * cluster.poll_interval_seconds, 120))
        reference = cluster.last_poll_at or cluster.created_at
        if reference is not None and now - reference > overdue_after:
            alarms.append(ClusterAlarm(cluster.name, "stale", cluster.last_poll_at))
    return alarms


# --------------------------------------------------------------------------- groups


def overview(filters: OverviewFilter, now: datetime, page_size: int = OVERVIEW_PAGE_SIZE) -> Overview:
    """One page of the overview: the filters, order and paging run in the database, and
    the counts per status are one GROUP BY, so the cost is one page's rows at any size."""
    status_counts = dict(
        ConsumerGroup.objects.order_by().values("status").annotate(n=Count("id")).values_list("status", "n")
    )
    matching = filters.apply(ConsumerGroup.objects.all())
    matching_count = matching.count()
    pages = max(1, -(-matching_count // page_size))
    page_number = min(filters.page, pages)
    offset = (page_number - 1) * page_size
    visible = list(
        matching.select_related("cluster").defer("member_details")
        .annotate(severity_rank=severity_rank())
        .order_by(*filters.ordering())[offset:offset + page_size]
    )
    sparklines = _sparklines([g.id for g in visible], now)
    return Overview(
        rows=[OverviewRow(group=g, sparkline=sparklines.get(g.id, [])) for g in visible],
        clusters=sorted(Cluster.objects.values_list("name", flat=True)),
        total_groups=sum(status_counts.values()),
        status_counts=status_counts,
        matching=matching_count,
        page=page_number,
        pages=pages,
    )


def _sparklines(group_ids: list[int], now: datetime) -> dict[int, list[Value]]:
    """Total lag over the last hour in SPARKLINE_POINTS time buckets (per topic the bucket
    maximum, then summed over topics). Buckets without a poll are skipped, so a slow poll
    interval does not draw a dotted line."""
    if not group_ids:
        return {}
    since = now - SPARKLINE_WINDOW
    width = SPARKLINE_WINDOW.total_seconds() / SPARKLINE_POINTS
    maxima: dict[tuple[int, str, int], Value] = {}
    for point in samples.topic_points(group_ids, since, now, resolution=0):
        key = (point.group_id, point.topic, bucket_index(point.polled_at, since, width))
        maxima[key] = max_known(maxima.get(key), point.lag)
    totals: dict[int, dict[int, Value]] = defaultdict(dict)
    for (group_id, _topic, bucket), value in maxima.items():
        index = min(bucket, SPARKLINE_POINTS - 1)
        known = totals[group_id].get(index)
        totals[group_id][index] = value if known is None else known + (value or 0)
    return {gid: [buckets[i] for i in sorted(buckets)] for gid, buckets in totals.items()}


@dataclass(frozen=True)
class GroupPage:
    summaries: list[dict[str, object]]
    """Each group's latest summary (``snapshot.group_summary`` without member details)."""
    last_name: str | None
    """The last group's name when more groups follow, else None."""


def group_list(cluster: Cluster, statuses: list[str], after: str | None = None, limit: int | None = None) -> GroupPage:
    """A cluster's groups by name, optionally only ``statuses``, from after the group named
    ``after``, at most ``limit`` (None: all). One query of the denormalised group rows."""
    groups = ConsumerGroup.objects.filter(cluster=cluster)
    if statuses:
        groups = groups.filter(status__in=statuses)
    if after is not None:
        groups = groups.filter(name__gt=after)
    groups = groups.order_by("name")
    rows = list(groups if limit is None else groups[:limit + 1])
    more = limit is not None and len(rows) > limit
    rows = rows[:limit] if limit is not None else rows
    summaries = [{k: v for k, v in snapshot.group_summary(g).items() if k != "member_details"} for g in rows]
    return GroupPage(summaries=summaries, last_name=rows[-1].name if more and rows else None)


def latest_partitions(group: ConsumerGroup) -> list[PartitionRow]:
    """Per-partition lag from the group's latest poll (its row); empty before the first
    poll and once the group is gone."""
    detail = snapshot.group_detail(group)
    return [
        PartitionRow(
            topic=p["topic"],
            partition=p["partition"],
            committed_offset=p["committed_offset"],
            log_start_offset=p["log_start_offset"],
            log_end_offset=p["log_end_offset"],
            lag=p["lag"],
            time_lag_seconds=p["time_lag_seconds"],
            time_lag_method=p["time_lag_method"],
            time_lag_reason=p.get("time_lag_reason") or "",
            owner=p.get("owner"),
            owner_client_id=p.get("owner_client_id"),
            owner_host=p.get("owner_host"),
            owner_known=group_members.assignments_known(detail.get("member_details")),
            stalled=bool(p.get("stalled")),
        )
        for p in detail.get("partitions", [])
    ]


def group_events(group: ConsumerGroup, since: datetime, until: datetime) -> list[GroupEvent]:
    return list(GroupEvent.objects.filter(group=group, at__gte=since, at__lte=until).order_by("at"))


def topic_readers(cluster: Cluster, topic: str) -> list[TopicReader]:
    """Every group whose latest poll covered ``topic`` (gone groups' last poll too), with
    its lag on that topic."""
    polled = ConsumerGroup.objects.filter(cluster=cluster, last_sample_at__isnull=False).only(
        "id", "last_sample_at", "gone_at", "partition_state")  # the state read with them, not once per group
    by_group = samples.latest_partitions(polled, topic=topic, include_gone=True)
    groups = ConsumerGroup.objects.filter(id__in=list(by_group)).order_by("name")
    readers = []
    for group in groups:
        group.cluster = cluster
        parts = by_group[group.id]
        current = group.unread_since is None  # an unread group's latest detail is not its lag now
        lags = [p.lag for p in parts if p.lag is not None and current]
        time_lags = [p.time_lag_seconds for p in parts if p.time_lag_seconds is not None and current]
        readers.append(
            TopicReader(
                group=group,
                # A sum over partitions that are all unknown is unknown, never 0.
                lag=sum(lags) if lags else None,
                max_time_lag_seconds=max(time_lags) if time_lags else None,
                partitions=len(parts),
                unknown_partitions=len(parts) - len(lags),
            )
        )
    return readers


def find_topic(cluster: Cluster, name: str) -> Topic | None:
    return Topic.objects.filter(cluster=cluster, name=name).first()


