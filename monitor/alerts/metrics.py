"""The metric registry: metric name -> a function returning the latest reading of every
subject, fetched in bulk (a few queries per metric per evaluation, never one per rule or
per subject).

Registering a metric from another area (e.g. the event detectors)::

    from monitor.alerts.metrics import Level, Reading, Subject, metric

    @metric("lost_events", unit="events", level=Level.TOPIC, description="Events published but never consumed")
    def lost_events(scopes, now):
        return {Subject(cluster="", group=g, topic=t): float(n) for g, t, n in ...}

A fetch function receives the scopes of every enabled rule using the metric (so it may
narrow its query) and ``now``; it returns ``{Subject: Reading | float | None}`` (a bare
number is a reading, None is "no data"). It may return subjects outside the scopes: the
engine matches each rule's globs itself. Modules listed in ``PLUGIN_MODULES`` are
imported on first use, so their ``@metric`` decorators run in every process.

``status`` is categorical: a group status is stored as its rank in ``STATUS_RANK``
(ordered from healthy to worst), so ``status == stopped`` and ``status >= stalled``
both work and thresholds/values stay numbers in the database. Thresholds and values
are shown by name everywhere (admin, messages, API).
"""
from __future__ import annotations

import contextvars
import enum
import importlib
import importlib.util
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from typing import Any, cast


from monitor.alerts.rules import Reading, Scope, Subject, glob_matcher, glob_matches, literal_values
from monitor import humanize
from monitor.choices import ClusterStatus, GroupStatus

PLUGIN_MODULES = ("monitor.events.alert_metrics", "monitor.schemas.alert_metrics", "monitor.pathways.alert_metrics")

# Health order of a group status: a higher rank is worse. Append-only: ranks are stored.
STATUS_RANK: dict[str, int] = {
    GroupStatus.OK: 0,
    GroupStatus.IDLE: 1,
    GroupStatus.EMPTY: 2,
    GroupStatus.REWIND: 3,
    GroupStatus.GROWING: 4,
    GroupStatus.STALLED: 5,
    GroupStatus.STOPPED: 6,
    GroupStatus.DATA_LOSS: 7,
}
# ``gone`` and ``unknown`` are not values but the absence of data (handled explicitly).

MAX_BACKTEST_SUBJECTS = 100


class Level(str, enum.Enum):
    CLUSTER = "cluster"
    GROUP = "group"
    TOPIC = "topic"


FetchResult = Mapping[Subject, "Reading | float | None"]
Fetch = Callable[[Sequence[Scope], datetime], FetchResult]
Series = list[tuple[datetime, "float | None"]]
History = Callable[[Scope, datetime, datetime], dict[Subject, Series]]


@dataclass(frozen=True)
class Metric:
    name: str
    fetch: Fetch
    description: str = ""
    unit: str = ""
    level: Level = Level.TOPIC
    choices: tuple[str, ...] = ()  # categorical metric: value i is choices[i]
    history: History | None = None  # stored history for the backtest, when there is one

    @property
    def categorical(self) -> bool:
        return bool(self.choices)

    def parse_threshold(self, raw: object) -> float:
        """A threshold from a form or YAML: a number, or a choice name for categorical
        metrics. Raises ValueError with a message for the user."""
        if self.categorical:
            text = str(raw).strip()
            if text in self.choices:
                return float(self.choices.index(text))
            raise ValueError(f"{self.name} thresholds are one of: {', '.join(self.choices)} (got {raw!r})")
        if isinstance(raw, bool):
            raise ValueError(f"must be a number (got {raw!r})")
        try:
            text = str(raw).strip().replace("_", "").replace(",", "")
            number = float(text) if isinstance(raw, str) else float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"must be a number (got {raw!r})") from None
        if not math.isfinite(number):
            raise ValueError(f"must be a finite number (got {raw!r})")
        return number

    def format_value(self, value: float | None) -> str:
        if value is None:
            return "no data"
        if self.categorical:
            index = int(value)
            return self.choices[index] if 0 <= index < len(self.choices) else f"#{index}"
        if math.isinf(value):
            return "never" if value > 0 else "-never"
        if self.unit == "seconds":
            return humanize.duration(value)
        text = humanize.count(value) if float(value).is_integer() else f"{value:,.2f}"
        return f"{text} {self.unit}".strip()

    def json_value(self, value: float | None) -> float | str | None:
        """JSON form: names for categorical metrics, numbers otherwise (null when infinite)."""
        if value is None:
            return None
        if self.categorical:
            return self.format_value(value)
        if not math.isfinite(value):
            return None
        return value


# -- the registry ---------------------------------------------------------------------------

_REGISTRY: dict[str, Metric] = {}
_plugins_loaded = False


def register(item: Metric) -> Metric:
    existing = _REGISTRY.get(item.name)
    if existing is not None and existing.fetch is not item.fetch:
        raise ValueError(f"metric {item.name!r} is already registered by {existing.fetch.__module__}")
    _REGISTRY[item.name] = item
    return item


def metric(name: str, *, description: str = "", unit: str = "", level: Level = Level.TOPIC,
           choices: Iterable[str] = (), history: History | None = None) -> Callable[[Fetch], Fetch]:
    """Decorator registering ``fetch`` as metric ``name``."""

    def decorator(fetch: Fetch) -> Fetch:
        register(Metric(name=name, fetch=fetch, description=description, unit=unit, level=level,
                        choices=tuple(choices), history=history))
        return fetch

    return decorator


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in PLUGIN_MODULES:
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:  # the parent package is missing
            found = None
        if found is not None:
            importlib.import_module(module)


def all_metrics() -> dict[str, Metric]:
    _load_plugins()
    return dict(_REGISTRY)


def get(name: str) -> Metric:
    _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}") from None


def choices() -> list[tuple[str, str]]:
    """(name, label) pairs for forms."""
    return [(m.name, f"{m.name} - {m.description}" if m.description else m.name)
            for m in sorted(all_metrics().values(), key=lambda m: m.name)]


def normalise(result: FetchResult) -> dict[Subject, Reading]:
    readings: dict[Subject, Reading] = {}
    for subject, value in result.items():
        if isinstance(value, Reading):
            readings[subject] = value
        elif value is None:
            readings[subject] = Reading.no_data("no data")
        else:
            readings[subject] = Reading(float(value))
    return readings


# -- lag data (ConsumerGroup, lag samples, Cluster) -----------------------------------------------

# Reads shared by the metrics of one evaluation (lag, time lag, status ... all read the same
# group rows and topic samples): inside ``shared_reads()`` each is read once per evaluation,
# outside it every call reads afresh.
_shared: contextvars.ContextVar[dict[tuple[object, ...], Any] | None] = contextvars.ContextVar(
    "alert_metric_shared_reads", default=None)


@contextmanager
def shared_reads() -> Iterator[None]:
    """One evaluation's scope: rows read by one metric are reused by the others."""
    token = _shared.set({})
    try:
        yield
    finally:
        _shared.reset(token)


def _once(key: tuple[object, ...], read: Callable[[], Any]) -> Any:
    cache = _shared.get()
    if cache is None:
        return read()
    if key not in cache:
        cache[key] = read()
    return cache[key]


def stale_after_seconds(poll_interval_seconds: int) -> float:
    """A group sample older than this is no longer the group's current state."""
    return 3 * poll_interval_seconds + 60


@dataclass(frozen=True)
class GroupRow:
    id: int
    cluster: str
    name: str
    no_data_reason: str
    final: bool
    row: Mapping[str, Any]
    unread: bool = False
    """No data because its offsets could not be read (nothing that says more: the group is
    not deleted, its cluster enabled and reachable)."""


def _cluster_group_rows(clusters: set[str] | None) -> list[dict[str, Any]]:
    """Every group of ``clusters`` (None: of all clusters), read once per evaluation."""
    from monitor.models import ConsumerGroup

    def read() -> list[dict[str, Any]]:
        queryset = ConsumerGroup.objects.all()
        if clusters is not None:
            queryset = queryset.filter(cluster__name__in=clusters)
        return cast(list[dict[str, Any]], list(queryset.values(
            "id", "name", "status", "status_reason", "total_lag", "catch_up_seconds", "catch_up_never",
            "retention_risk_seconds", "topics", "partial_partitions", "stalled_partitions",
            "last_sample_at", "last_seen_at", "gone_at", "unread_since", "cluster_id", "cluster__name", "cluster__enabled",
            "cluster__status", "cluster__poll_interval_seconds",
        )))

    return cast(list[dict[str, Any]], _once(("groups", None if clusters is None else tuple(sorted(clusters))), read))


def _group_rows(scopes: Sequence[Scope], now: datetime, rows: list[dict[str, Any]] | None = None) -> list[GroupRow]:
    """The groups in ``scopes`` with their no-data reason, from ``rows`` (the groups of the
    scopes' clusters) or a fresh read of them."""
    if rows is None:
        rows = _cluster_group_rows(literal_values(scope.cluster for scope in scopes))
    groups: list[GroupRow] = []
    pairs = frozenset((scope.cluster, scope.group) for scope in scopes)

    def select() -> list[GroupRow]:
        everything = ("*", "*") in pairs
        matchers = [(glob_matcher(cluster), glob_matcher(group)) for cluster, group in pairs]
        for row in rows:
            if not everything and not any(in_cluster(row["cluster__name"]) and in_group(row["name"])
                                          for in_cluster, in_group in matchers):
                continue
            reason, final, unread = _group_no_data(row, now)
            groups.append(GroupRow(row["id"], row["cluster__name"], row["name"], reason, final, row, unread))
        return groups

    return cast(list[GroupRow], _once(("group_rows", pairs, id(rows), now), select))


def _group_no_data(row: Mapping[str, Any], now: datetime) -> tuple[str, bool, bool]:
    """Why the group has no current reading ("" when it has one), whether that is for good,
    and whether it is because its offsets could not be read."""
    if not row["cluster__enabled"]:
        return f"cluster {row['cluster__name']} is disabled", True, False
    if row["gone_at"] is not None:
        gone_at = row["gone_at"]
        return f"group {row['name']} was deleted (gone since {gone_at:%Y-%m-%d %H:%M} UTC)", True, False
    if row["cluster__status"] == ClusterStatus.UNREACHABLE:
        return f"cluster {row['cluster__name']} is unreachable", False, False
    if row["unread_since"] is not None:  # listed, its offsets not read: its last figures are not current
        if not_polled := _not_polled_lately(row, now):
            return not_polled, False, False  # unread now? not known
        return f"{row['status_reason']}; unread for {humanize.duration(_unread_seconds(row, now))}", False, True
    last = row["last_sample_at"]
    if last is None:
        # A group row exists only once a poll has listed it: it has no commit left.
        return f"group {row['name']} has no committed offset on any partition (none yet, or they expired " \
               f"or were deleted)", False, False
    age = (now - last).total_seconds()
    if age > stale_after_seconds(row["cluster__poll_interval_seconds"]):
        return f"no lag sample for {humanize.duration(age)}", False, False
    return "", False, False


def _not_polled_lately(row: Mapping[str, Any], now: datetime) -> str:
    """"no poll for ..." when no poll has listed the group lately, else ""."""
    age = (now - row["last_seen_at"]).total_seconds()
    return f"no poll for {humanize.duration(age)}" if age > stale_after_seconds(
        row["cluster__poll_interval_seconds"]) else ""


def _unread_seconds(row: Mapping[str, Any], now: datetime) -> float:
    return max(0.0, (now - row["unread_since"]).total_seconds())


def _group_topics(row: Mapping[str, Any]) -> list[str]:
    topics = row.get("topics") or []
    names = []
    for item in topics if isinstance(topics, list) else []:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict) and isinstance(item.get("topic") or item.get("name"), str):
            names.append(str(item.get("topic") or item.get("name")))
    return names


def _topic_readings(scopes: Sequence[Scope], now: datetime, field_name: str) -> dict[Subject, Reading]:
    from monitor.lag import samples
    from monitor.models import ConsumerGroup

    clusters = literal_values(scope.cluster for scope in scopes)
    cluster_rows = _cluster_group_rows(clusters)
    groups = {group.id: group for group in _group_rows(scopes, now, cluster_rows)}
    if not groups:
        return {}

    def read() -> list[tuple[Any, ...]]:
        # Both fields at once: lag and time lag rules share one read per evaluation.
        polled = [ConsumerGroup(id=row["id"], cluster_id=row["cluster_id"], last_sample_at=row["last_sample_at"],
                                gone_at=row["gone_at"])
                  for row in cluster_rows if row["last_sample_at"] is not None]
        latest = samples.latest_topic_points(polled, include_gone=True)
        return [(p.group_id, p.topic, p.lag, p.time_lag_seconds, p.unknown_partitions, p.partial_partitions)
                for points in latest.values() for p in points]

    rows = _once(("latest_topic_totals", None if clusters is None else tuple(sorted(clusters))), read)
    column = {"lag": 2, "time_lag_seconds": 3}[field_name]
    readings: dict[Subject, Reading] = {}
    for row in rows:
        group = groups.get(row[0])
        if group is None:
            continue  # outside every scope
        topic, value, unknown_partitions, partial_partitions = row[1], row[column], row[4], row[5]
        subject = Subject(group.cluster, group.name, topic)
        if group.no_data_reason:
            readings[subject] = Reading.no_data(group.no_data_reason, final=group.final)
        elif partial_partitions:
            readings[subject] = Reading.partial_value(
                f"{field_name.replace('_', ' ')} partial: {partial_partitions} partition(s) unknown in the latest "
                f"poll")
        elif value is None:
            readings[subject] = Reading.no_data(
                f"{field_name.replace('_', ' ')} unknown ({unknown_partitions} partition(s) without data)")
        else:
            readings[subject] = Reading(float(value))
    # A group whose latest samples are gone (pruned) still reports its no-data reason.
    for group in groups.values():
        if group.no_data_reason:
            for topic in _group_topics(group.row):
                readings.setdefault(Subject(group.cluster, group.name, topic),
                                    Reading.no_data(group.no_data_reason, final=group.final))
    return readings


def _topic_history(field_name: str) -> History:
    def history(scope: Scope, since: datetime, until: datetime) -> dict[Subject, Series]:
        from monitor.lag import samples
        from monitor.models import ConsumerGroup

        queryset = ConsumerGroup.objects.all()
        clusters = literal_values([scope.cluster])
        if clusters is not None:
            queryset = queryset.filter(cluster__name__in=clusters)
        groups = {
            group_id: (cluster, name)
            for group_id, cluster, name in queryset.values_list("id", "cluster__name", "name")
            if glob_matches(scope.cluster, cluster) and glob_matches(scope.group, name)
        }
        if not groups:
            return {}
        points = samples.topic_points(groups, since, until, resolution=None, until_inclusive=False)
        # By group and topic, then time (stable), so the first MAX_BACKTEST_SUBJECTS subjects are kept.
        points.sort(key=lambda point: (point.group_id, point.topic))
        by_resolution: dict[Subject, dict[int, Series]] = defaultdict(lambda: defaultdict(list))
        for point in points:
            group_id, topic, resolution, polled_at = point.group_id, point.topic, point.resolution, point.polled_at
            if point.partial_partitions > 0:
                continue  # a partial total is no new data: the replay skips it too
            if not glob_matches(scope.topic, topic):
                continue
            value = getattr(point, field_name)
            cluster, name = groups[group_id]
            subject = Subject(cluster, name, topic)
            if subject not in by_resolution and len(by_resolution) >= MAX_BACKTEST_SUBJECTS:
                continue
            by_resolution[subject][resolution].append((polled_at, None if value is None else float(value)))
        return {subject: merge_resolutions(series) for subject, series in by_resolution.items()}

    return history


def merge_resolutions(series_by_resolution: Mapping[int, Series]) -> Series:
    """One series from raw samples and rollups: the finest data wins; coarser rollups
    only fill the time before the finer data starts."""
    merged: Series = []
    covered_from: datetime | None = None
    for resolution in sorted(series_by_resolution):
        points = sorted(series_by_resolution[resolution], key=lambda point: point[0])
        if covered_from is not None:
            points = [point for point in points if point[0] + timedelta(seconds=resolution) <= covered_from]
        if points:
            merged.extend(points)
            first = points[0][0]
            covered_from = first if covered_from is None else min(covered_from, first)
    merged.sort(key=lambda point: point[0])
    return merged


@metric("lag", unit="messages", level=Level.TOPIC, history=_topic_history("lag"),
        description="messages the group is behind on a topic")
def lag(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    return _topic_readings(scopes, now, "lag")


@metric("time_lag_seconds", unit="seconds", level=Level.TOPIC, history=_topic_history("time_lag_seconds"),
        description="how old the oldest unread message of a topic is")
def time_lag_seconds(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    return _topic_readings(scopes, now, "time_lag_seconds")


def _group_readings(scopes: Sequence[Scope], now: datetime,
                    value_of: Callable[[Mapping[str, Any]], Reading]) -> dict[Subject, Reading]:
    readings: dict[Subject, Reading] = {}
    for group in _group_rows(scopes, now):
        subject = Subject(group.cluster, group.name, "")
        topics = _group_topics(group.row)
        if group.no_data_reason:
            readings[subject] = Reading.no_data(group.no_data_reason, final=group.final, topics=topics)
        else:
            reading = value_of(group.row)
            readings[subject] = Reading(reading.value, reading.no_data_reason, reading.final,
                                        {**reading.detail, "topics": topics})
    return readings


@metric("status", level=Level.GROUP, choices=tuple(STATUS_RANK),
        description="the group's status (ok ... data_loss, ordered by severity)")
def status(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    def value_of(row: Mapping[str, Any]) -> Reading:
        rank = STATUS_RANK.get(row["status"])
        if rank is None:
            return Reading.no_data(f"status is {row['status']}")
        return Reading(float(rank))

    return _group_readings(scopes, now, value_of)


@metric("catch_up_seconds", unit="seconds", level=Level.GROUP,
        description="forecast time until the group has caught up (never when it is not catching up)")
def catch_up_seconds(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    def value_of(row: Mapping[str, Any]) -> Reading:
        if row["partial_partitions"]:
            return Reading.partial_value(f"lag of {row['partial_partitions']} partition(s) unknown in the latest poll")
        if row["catch_up_seconds"] is not None:
            return Reading(float(row["catch_up_seconds"]))
        if row["total_lag"] is None:
            return Reading.no_data("lag unknown")
        if row["total_lag"] == 0:
            return Reading(0.0)
        if row["catch_up_never"]:
            return Reading(math.inf, detail={"value_text": "not catching up"})
        return Reading.no_data("not enough history for rates yet")

    return _group_readings(scopes, now, value_of)


@metric("stalled_partitions", unit="partitions", level=Level.GROUP,
        description="partitions whose committed offset has not moved for the status window while they lag")
def stalled_partitions(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    def value_of(row: Mapping[str, object]) -> Reading:
        count = int(row["stalled_partitions"] or 0)  # type: ignore[call-overload]
        return Reading(float(count), detail={"summary": row["status_reason"]} if count else {})

    return _group_readings(scopes, now, value_of)


@metric("unread_seconds", unit="seconds", level=Level.GROUP,
        description="how long the cluster has listed the group while its committed offsets could not be read "
                    "(0 while they are read)")
def unread_seconds(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    """The one group metric an unread group has a value for: every other reads it as no
    data, so a group the monitor may never read (an ACL) is still something to alert on."""
    readings: dict[Subject, Reading] = {}
    for group in _group_rows(scopes, now):
        subject = Subject(group.cluster, group.name, "")
        row, topics = group.row, _group_topics(group.row)
        not_polled = _not_polled_lately(row, now)
        if group.unread:
            readings[subject] = Reading(_unread_seconds(row, now),
                                        detail={"summary": row["status_reason"], "topics": topics})
        elif group.final or row["cluster__status"] == ClusterStatus.UNREACHABLE or not_polled:
            readings[subject] = Reading.no_data(group.no_data_reason or not_polled, final=group.final, topics=topics)
        else:  # listed lately and read: its offsets (if it has any) are readable
            readings[subject] = Reading(0.0, detail={"topics": topics})
    return readings


@metric("retention_risk_seconds", unit="seconds", level=Level.GROUP,
        description="forecast time until retention deletes messages the group has not read")
def retention_risk_seconds(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    def value_of(row: Mapping[str, Any]) -> Reading:
        if row["retention_risk_seconds"] is None:
            if row["total_lag"] is None and not row["partial_partitions"]:
                return Reading.no_data("lag unknown")  # no risk found where nothing is known is not "no risk"
            return Reading(math.inf, detail={"value_text": "no risk"})
        return Reading(float(row["retention_risk_seconds"]))

    return _group_readings(scopes, now, value_of)


@metric("cluster_unreachable", level=Level.CLUSTER,
        description="1 while the cluster cannot be reached, else 0")
def cluster_unreachable(scopes: Sequence[Scope], now: datetime) -> dict[Subject, Reading]:
    from monitor.models import Cluster

    readings: dict[Subject, Reading] = {}
    for name, enabled, state, last_error in Cluster.objects.values_list("name", "enabled", "status", "last_error"):
        if not any(glob_matches(scope.cluster, name) for scope in scopes):
            continue
        subject = Subject(name)
        if not enabled:
            readings[subject] = Reading.no_data(f"cluster {name} is disabled", final=True)
        elif state == ClusterStatus.UNKNOWN:
            readings[subject] = Reading.no_data(f"cluster {name} has not been polled yet")
        else:
            unreachable = state == ClusterStatus.UNREACHABLE
            readings[subject] = Reading(1.0 if unreachable else 0.0,
                                        detail={"error": (last_error or "")[:300]} if unreachable else {})
    return readings


# -- context for messages ------------------------------------------------------------------

def worst_partitions(subjects: Iterable[Subject], limit: int = 5) -> dict[Subject, list[dict[str, object]]]:
    """The partitions with the most lag of each (cluster, group, topic) subject, from the
    group's latest poll (a gone group's last one): one read for all subjects."""
    from monitor.lag import members as group_members
    from monitor.lag import samples
    from monitor.models import ConsumerGroup

    wanted = {s for s in subjects if s.group}
    if not wanted:
        return {}
    pairs = {(s.cluster, s.group) for s in wanted}
    groups = list(ConsumerGroup.objects.filter(
        cluster__name__in={c for c, _ in pairs}, name__in={g for _, g in pairs}, last_sample_at__isnull=False,
        unread_since__isnull=True,  # an unread group's last detail is not its state now
    ).select_related("cluster").only("id", "name", "last_sample_at", "gone_at", "partition_state", "cluster__name"))
    names = {group.id: (group.cluster.name, group.name) for group in groups}
    latest = samples.latest_partitions(groups, include_gone=True)
    owners = {
        group_id: group_members.owners(details)
        for group_id, details in ConsumerGroup.objects.filter(
            pk__in=set(latest), member_details__isnull=False).values_list("id", "member_details")
    }
    found: dict[Subject, list[dict[str, object]]] = defaultdict(list)
    for group_id, parts in latest.items():
        cluster, group = names[group_id]
        for part in parts:
            # Who owns the partition, where the broker told: "billing-7f9c on 10.2.3.4".
            owner = group_members.owner_label(owners.get(group_id, {}).get((part.topic, part.partition)))
            for subject in (Subject(cluster, group, part.topic), Subject(cluster, group, "")):
                if subject in wanted:
                    found[subject].append({"topic": part.topic, "partition": part.partition, "lag": part.lag,
                                           "time_lag_seconds": part.time_lag_seconds, "owner": owner})
    return {
        subject: sorted(items, key=lambda item: (item["lag"] is None, -float(item["lag"] or 0)))[:limit]  # type: ignore[arg-type]
        for subject, items in found.items()
    }
