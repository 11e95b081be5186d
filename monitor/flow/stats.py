"""Read side of the service and event-topic pages: rates per stage, publishers and
consumers, schema versions per consumer, partition skew, hot keys, findings and alerts.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Case, Count, F, Max, Min, Q, When
from django.db.models.functions import Substr, TruncHour, TruncMinute

from monitor.choices import CONSUMER_STAGES, FAILURE_STAGES, AlertState, Stage
from monitor.flow.graph import ConsumeAggregate, GroupLag, KeyShare, PartitionSkew, hot_keys, partition_skew
from monitor.flow.queries import first_event_at, group_lags, in_range, p95_latencies, rate_start
from monitor.models import Alert, ConsumerGroup, Event, Finding, Service, Topic
from monitor.readcache import CacheOutcome, cached_for_range
from monitor.timerange import TimeRange


def rate_bucket_seconds(since: datetime, until: datetime) -> int:
    """Minutes for ranges up to 6 h, hours beyond (at most 744 points for 31 days)."""
    return 60 if (until - since) <= timedelta(hours=6) else 3600


def rate_series(since: datetime, until: datetime, where: Q) -> dict[str, list[tuple[datetime, int]]]:
    """Reports per stage per time bucket (see :func:`rate_bucket_seconds`)."""
    minutes = rate_bucket_seconds(since, until) == 60
    bucket: Any = (TruncMinute if minutes else TruncHour)("timestamp")
    if connection.vendor == "sqlite":
        # Its Trunc calls back into Python for every row; the stored text
        # 'YYYY-MM-DD HH:MM:SS' (UTC, like the buckets) cut short is the same bucket.
        bucket = Substr("timestamp", 1, 16 if minutes else 13)
    rows = (
        Event.objects.filter(in_range(since, until), where)
        .annotate(bucket=bucket).values("bucket", "stage").annotate(events=Count("id"))
        .order_by("bucket")
    )
    series: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for row in rows:
        start = row["bucket"]
        if isinstance(start, str):
            start = datetime.fromisoformat(start + (":00" if minutes else ":00:00")).replace(tzinfo=UTC)
        series[row["stage"]].append((start, row["events"]))
    return dict(series)


@dataclass(frozen=True)
class GroupRow:
    cluster: str
    name: str
    status: str
    total_lag: int | None
    max_time_lag_seconds: float | None


def consumer_groups(names: Iterable[str]) -> list[GroupRow]:
    return [
        GroupRow(g.cluster.name, g.name, g.status, g.total_lag, g.max_time_lag_seconds)
        for g in ConsumerGroup.objects.filter(name__in=set(names), gone_at=None).select_related("cluster")
    ]


def open_alerts(groups: Iterable[str], topics: Iterable[str], since: datetime) -> list[Alert]:
    """Alerts on these groups or topics that are open, or resolved within the range."""
    about = Q(group__in=set(groups)) | Q(topic__in=set(topics))
    current = Q(state__in=[AlertState.PENDING, AlertState.FIRING]) | Q(resolved_at__gte=since)
    return list(Alert.objects.filter(about, current).select_related("rule").order_by("-started_at")[:50])


@dataclass
class ServiceStats:
    name: str
    known: bool
    publishes: list[dict[str, Any]]
    consumes: list[dict[str, Any]]
    groups: list[GroupRow]
    lags: dict[tuple[str, str], GroupLag]
    p95: dict[tuple[str, str, str], float]
    recent_failures: list[Event]
    alerts: list[Alert]
    findings: list[Finding]
    series: dict[str, list[tuple[datetime, int]]]


def regroup(rows: Iterable[Mapping[str, Any]], by: tuple[str, ...], sums: tuple[str, ...] = (),
            earliest: tuple[str, ...] = (), latest: tuple[str, ...] = (),
            order: Callable[[tuple[Any, ...]], Any] | None = None) -> list[dict[str, Any]]:
    """The rows of a finer GROUP BY summed up to the columns ``by``: ``sums`` added,
    ``earliest`` the lowest, ``latest`` the highest; in the order of ``by`` (or ``order``
    of its values). One scan of the events can then serve several tables of a page."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row[column] for column in by)
        into = groups.get(key)
        if into is None:
            groups[key] = {column: row[column] for column in (*by, *sums, *earliest, *latest)}
            continue
        for column in sums:
            into[column] += row[column]
        for column in earliest:
            into[column] = min(into[column], row[column])
        for column in latest:
            into[column] = max(into[column], row[column])
    return [groups[key] for key in sorted(groups, key=order)]


def receipts_by_stage(rows: Iterable[Mapping[str, Any]], by: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows grouped by ``stage`` (and more) with ``events`` and ``last_at``, as one row
    per ``by`` with a count per stage (see :func:`monitor.flow.queries.stage_counts`) and the latest report."""
    per_stage = [{**row, **{stage: row["events"] if row["stage"] == stage else 0 for stage in Stage.values}}
                 for row in rows]
    return regroup(per_stage, by, sums=tuple(Stage.values), latest=("last_at",))


def service_stats(name: str, since: datetime, until: datetime, at_present: bool) -> ServiceStats:
    base = Event.objects.filter(in_range(since, until), service=name)
    by_stage = list(base.values("stage", "topic", "type", "consumer_group")
                    .annotate(events=Count("id"), last_at=Max("timestamp")).order_by())
    publishes = regroup((r for r in by_stage if r["stage"] == Stage.PUBLISHED), ("topic", "type"),
                        sums=("events",), latest=("last_at",))
    consumes = receipts_by_stage((r for r in by_stage if r["stage"] != Stage.PUBLISHED), ("topic", "consumer_group"))
    span = max((until - rate_start(since, first_event_at(since, until))).total_seconds(), 1e-9)
    for row in publishes:
        row["rate_per_second"] = row["events"] / span
    for row in consumes:
        aggregate = ConsumeAggregate(row["topic"], name, row["consumer_group"], row["consumed"], row["processed"],
                                     row["failed"], row["dead_lettered"])
        row["deliveries"] = aggregate.deliveries
        row["rate_per_second"] = aggregate.deliveries / span
        failed = row["failed"] + row["dead_lettered"]
        row["failed_share"] = min(1.0, failed / aggregate.deliveries) if aggregate.deliveries else 0.0
    group_names = {row["consumer_group"] for row in consumes if row["consumer_group"]}
    topics = {row["topic"] for row in publishes + consumes if row["topic"]}
    receipts: dict[str, int] = defaultdict(int)
    for row in consumes:
        receipts[row["topic"]] += row["consumed"] + row["processed"]
    return ServiceStats(
        name=name,
        known=Service.objects.filter(name=name).exists() or Event.objects.filter(service=name).exists(),
        publishes=publishes,
        consumes=consumes,
        groups=consumer_groups(group_names),
        lags=group_lags(group_names, topics, since, until, at_present),
        p95=p95_latencies(since, until, service=name, receipts_by_topic=receipts),
        recent_failures=list(base.filter(stage__in=FAILURE_STAGES).order_by("-timestamp")[:20]),
        alerts=open_alerts(group_names, (), since),
        findings=list(Finding.objects.filter(Q(service=name) | Q(consumer_group__in=group_names))[:20]),
        series=rate_series(since, until, Q(service=name)),
    )


@dataclass(frozen=True)
class SchemaConsumer:
    """A group (the service when a report names none) and the schema versions of one
    event type it reported handling."""

    name: str
    versions: tuple[int, ...]


@dataclass(frozen=True)
class SchemaVersionRow:
    """One published (producer, version) of an event type, and per consuming group
    whether it reported handling that version (in the order of the table's consumers)."""

    producer: str
    version: int
    events: int
    handled: tuple[bool, ...]

    @property
    def drift(self) -> bool:
        return not all(self.handled)


@dataclass(frozen=True)
class SchemaTable:
    """Producer version x consumer version for one event type."""

    event_type: str
    consumers: tuple[SchemaConsumer, ...]
    rows: tuple[SchemaVersionRow, ...]

    @property
    def drift(self) -> bool:
        return any(row.drift for row in self.rows)


def schema_tables(rows: Iterable[Mapping[str, Any]]) -> list[SchemaTable]:
    """Per event type, each published (producer, schema version) against each group that
    reported handling (consumed/processed) the type with a version: handled, or never
    reported. The rule of :func:`monitor.events.detectors.detect_schema_drift` over one
    range: a group is a column once it reports a version; reports without one say nothing.
    ``rows`` are GROUP BY rows with ``stage``, ``type``, ``service``, ``consumer_group``,
    ``schema_version`` and ``events``."""
    published: dict[str, dict[tuple[str, int], int]] = defaultdict(lambda: defaultdict(int))
    handled: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for row in rows:
        version = row["schema_version"]
        if version is None:
            continue
        if row["stage"] == Stage.PUBLISHED:
            published[row["type"]][(row["service"], version)] += row["events"]
        elif row["stage"] in CONSUMER_STAGES:
            # The schema-drift detector's rule: a group that reported a version at any
            # consumer stage, even failing on it, knows that version (failures are their own finding).
            handled[row["type"]][row["consumer_group"] or row["service"]].add(version)
    tables = []
    for event_type in sorted(published):
        consumers = tuple(SchemaConsumer(name, tuple(sorted(versions)))
                          for name, versions in sorted(handled[event_type].items()))
        tables.append(SchemaTable(event_type, consumers, tuple(
            SchemaVersionRow(producer, version, events, tuple(version in c.versions for c in consumers))
            for (producer, version), events in sorted(published[event_type].items(), key=lambda i: (i[0][1], i[0][0]))
        )))
    return tables


@dataclass
class TopicStats:
    name: str
    known: bool
    producers: list[dict[str, Any]]
    consumers: list[dict[str, Any]]
    lags: dict[tuple[str, str], GroupLag]
    types: list[dict[str, Any]]
    schema: list[SchemaTable]
    skew: PartitionSkew
    keys: list[KeyShare]
    keyed_events: int
    findings: list[Finding]
    alerts: list[Alert]
    lag_pages: list[tuple[str, str]]  # (cluster, topic) known to the poller
    series: dict[str, list[tuple[datetime, int]]]


def topic_stats(name: str, since: datetime, until: datetime, at_present: bool) -> TopicStats:
    base = Event.objects.filter(in_range(since, until), topic=name)
    is_published = Q(stage=Stage.PUBLISHED)
    # One scan for producers, consumers, types, schema versions, partitions and keyed reports (the
    # partition only of publications, so receipts do not multiply the groups).
    by_stage = list(
        base.values("stage", "service", "consumer_group", "type", "schema_version",
                    published_partition=Case(When(is_published, then=F("partition"))))
        .annotate(events=Count("id"), keyed=Count("id", filter=is_published & ~Q(key="")),
                  first_at=Min("timestamp"), last_at=Max("timestamp"))
        .order_by()
    )
    publications = [row for row in by_stage if row["stage"] == Stage.PUBLISHED]
    producers = regroup(publications, ("service",), sums=("events",), latest=("last_at",))
    consumers = receipts_by_stage((r for r in by_stage if r["stage"] != Stage.PUBLISHED), ("service", "consumer_group"))
    for row in consumers:
        row["deliveries"] = ConsumeAggregate(name, row["service"], row["consumer_group"], row["consumed"],
                                             row["processed"], row["failed"], row["dead_lettered"]).deliveries
    types = regroup(by_stage, ("type", "schema_version"), sums=("events",), earliest=("first_at",),
                    latest=("last_at",), order=lambda key: (key[0], key[1] is None, key[1] or 0))
    partitions: dict[int, int] = defaultdict(int)
    for row in publications:
        if row["published_partition"] is not None:
            partitions[row["published_partition"]] += row["events"]
    keyed_events = sum(row["keyed"] for row in publications)
    top_keys = list(
        base.filter(is_published).exclude(key="").values_list("key").annotate(events=Count("id"))
        .order_by("-events", "key")[:5]
    ) if keyed_events else []
    groups = {row["consumer_group"] for row in consumers if row["consumer_group"]}
    return TopicStats(
        name=name,
        known=Event.objects.filter(topic=name).exists() or Topic.objects.filter(name=name).exists(),
        producers=producers,
        consumers=consumers,
        lags=group_lags(groups, [name], since, until, at_present),
        types=types,
        schema=schema_tables(by_stage),
        skew=partition_skew(dict(partitions)),
        keys=hot_keys(top_keys, keyed_events),
        keyed_events=keyed_events,
        findings=list(Finding.objects.filter(topic=name)[:20]),
        alerts=open_alerts((), [name], since),
        lag_pages=list(Topic.objects.filter(name=name).values_list("cluster__name", "name")),
        series=rate_series(since, until, Q(topic=name)),
    )


def _name_key(name: str) -> str:
    # Names are free text; cache keys must stay short and printable.
    return hashlib.blake2b(name.encode(), digest_size=12).hexdigest()


def cached_service_stats(name: str, time_range: TimeRange, outcome: CacheOutcome | None = None) -> ServiceStats:
    return cached_for_range(
        f"flow:service:v1:{_name_key(name)}", time_range,
        lambda: service_stats(name, time_range.since, time_range.until, time_range.is_live), outcome,
    )[2]


def cached_topic_stats(name: str, time_range: TimeRange, outcome: CacheOutcome | None = None) -> TopicStats:
    return cached_for_range(
        f"flow:topic:v2:{_name_key(name)}", time_range,
        lambda: topic_stats(name, time_range.since, time_range.until, time_range.is_live), outcome,
    )[2]
