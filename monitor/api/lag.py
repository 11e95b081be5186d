"""Lag endpoints of the JSON API (CONTRACT, HTTP API): parse, query the read side, serialise.

Latest-poll data comes from the poller's snapshot (Redis, falling back to the database);
history from :mod:`monitor.lag.queries`."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any

from django.http import HttpRequest, JsonResponse, QueryDict
from django.utils import timezone

from monitor.lag import queries
from monitor.lag import series as lag_series
from monitor.api.auth import api_view
from monitor.api import paging as pages
from monitor.api.errors import BadRequest, FieldError, NotFound
from monitor.choices import GroupStatus, SeriesMetric, TokenScope
from monitor.lag import members as group_members
from monitor.lag import snapshot
from monitor.models import Cluster, ConsumerGroup
from monitor.timerange import TimeRangeError, parse_instant

DEFAULT_SERIES_RANGE = timedelta(hours=1)


def iso_utc(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with ``Z``; milliseconds only when the time has a fraction."""
    if value is None:
        return None
    value = value.astimezone(dt_timezone.utc)
    text = value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")
    return text.removesuffix("+00:00") + "Z"


def parse_query_time(query: QueryDict, name: str, errors: list[FieldError]) -> datetime | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    # A '+' in an unencoded offset arrives as a space.
    text = raw.strip().replace(" ", "+") if "T" in raw else raw.strip()
    try:
        return parse_instant(text, name)  # the pages' rule: ISO-8601, years 1970 to 9000
    except TimeRangeError as error:
        errors.append(FieldError(("query", name), error.message))
        return None


def parse_points(query: QueryDict, errors: list[FieldError]) -> int:
    raw = query.get("points")
    if raw is None or raw == "":
        return lag_series.DEFAULT_POINTS
    try:
        points = int(raw)
    except ValueError:
        points = 0
    if not 1 <= points <= lag_series.MAX_POINTS:
        errors.append(FieldError(("query", "points"), f"must be an integer from 1 to {lag_series.MAX_POINTS}"))
    return points


def _cluster_or_404(name: str) -> Cluster:
    cluster = queries.find_cluster(name)
    if cluster is None:
        raise NotFound(f"No cluster named {name!r}.", [FieldError(("path", "cluster"), "unknown cluster")])
    return cluster


def _unknown_group(cluster: Cluster, name: str) -> NotFound:
    return NotFound(
        f"No consumer group named {name!r} on cluster {cluster.name!r}.",
        [FieldError(("path", "group"), "unknown consumer group")],
    )


def _group_or_404(cluster: Cluster, name: str) -> ConsumerGroup:
    group = queries.find_group(cluster, name)
    if group is None:
        raise _unknown_group(cluster, name)
    return group


SUMMARY_FIELDS = (
    "group", "state", "status", "status_reason", "total_lag", "max_time_lag_seconds", "topics", "members",
    "catch_up_seconds", "retention_risk_seconds", "retention_risk_method", "lost_messages", "partial_partitions",
    "stalled_partitions", "first_seen_at", "last_seen_at", "last_sample_at", "gone_at", "protocol", "member_count",
    "unread_since",
)
PARTITION_FIELDS = (
    "topic", "partition", "committed_offset", "log_start_offset", "log_end_offset", "lag",
    "time_lag_seconds", "time_lag_method", "time_lag_reason", "owner", "owner_client_id", "owner_host", "stalled",
)


def _serialise(row: dict[str, Any], fields: tuple[str, ...]) -> dict[str, object]:
    """The listed fields of a snapshot row (a stable shape), times as ISO-8601 UTC with Z."""
    body: dict[str, object] = {}
    for name in fields:
        value = row.get(name)
        body[name] = iso_utc(value) if isinstance(value, datetime) else value
    if "time_lag_reason" in body and body["time_lag_reason"] is None:
        body["time_lag_reason"] = ""
    if "stalled" in body:
        body["stalled"] = bool(body["stalled"])
    for name in ("partial_partitions", "stalled_partitions"):
        if name in body and body[name] is None:
            body[name] = 0
    return body


@api_view(scope=TokenScope.READ)
def clusters(request: HttpRequest) -> JsonResponse:
    body = [
        {
            "name": cluster.name,
            "status": cluster.status,
            "last_poll_at": iso_utc(cluster.last_poll_at),
            "last_error": queries.public_error(cluster) or None,
            "last_success_at": iso_utc(cluster.last_success_at),
            "enabled": cluster.enabled,
            "poll_interval_seconds": cluster.poll_interval_seconds,
        }
        for cluster in Cluster.objects.order_by("name")
    ]
    return JsonResponse(body, safe=False)


@api_view(scope=TokenScope.READ)
def cluster_groups(request: HttpRequest, cluster: str) -> JsonResponse:
    found = _cluster_or_404(cluster)
    errors: list[FieldError] = []
    statuses = parse_statuses(request.GET, errors)
    paging = pages.parse(request.GET, "groups", errors)
    if paging.after is not None and not (len(paging.after) == 1 and isinstance(paging.after[0], str)):
        errors.append(FieldError(("query", "cursor"), "is not a cursor of this list (take it from the Link header)"))
    if errors:
        raise BadRequest("Invalid query parameters.", errors)
    if paging.limit is None:
        # The whole list, as before: the poller's cached snapshot (one read, no query).
        cached = snapshot.get_cluster_snapshot(found.name) or {"groups": []}
        groups = sorted((g for g in cached["groups"] if not statuses or g["status"] in statuses),
                        key=lambda g: g["group"])
        return JsonResponse([_serialise(g, SUMMARY_FIELDS) for g in groups], safe=False)
    after = str(paging.after[0]) if paging.after else None
    page = queries.group_list(found, statuses, after=after, limit=paging.limit)
    response = JsonResponse([_serialise(g, SUMMARY_FIELDS) for g in page.summaries], safe=False)
    return pages.add_next_link(response, request, "groups", [page.last_name] if page.last_name is not None else None)


def parse_statuses(query: QueryDict, errors: list[FieldError]) -> list[str]:
    """``status=stalled,stopped``: group statuses, comma-separated; empty means any."""
    raw = query.get("status") or ""
    statuses = [s.strip() for s in raw.split(",") if s.strip()]
    unknown = [s for s in statuses if s not in GroupStatus.values]
    if unknown:
        errors.append(FieldError(("query", "status"), f"unknown status {unknown[0]!r}; one or more of: "
                                 f"{', '.join(GroupStatus.values)}, comma-separated"))
    return statuses


@api_view(scope=TokenScope.READ)
def group_detail(request: HttpRequest, cluster: str, group: str) -> JsonResponse:
    found = _cluster_or_404(cluster)
    detail = snapshot.get_group_snapshot(found.name, group)
    if detail is None:
        raise _unknown_group(found, group)
    body = _serialise(detail, SUMMARY_FIELDS)
    body["cluster"] = found.name
    # CONTRACT: the detail's ``members`` is the member list (empty when the broker does not
    # tell: then ``member_count`` is null); the group list keeps the count.
    body["members"] = group_members.api_members(detail.get("member_details"))
    body["partitions"] = [_serialise(p, PARTITION_FIELDS) for p in detail.get("partitions", [])]
    return JsonResponse(body)


@api_view(scope=TokenScope.READ)
def group_lag(request: HttpRequest, cluster: str, group: str) -> JsonResponse:
    found = _group_or_404(_cluster_or_404(cluster), group)
    query = request.GET
    errors: list[FieldError] = []
    now = timezone.now()
    since = parse_query_time(query, "since", errors)
    until = parse_query_time(query, "until", errors)
    points = parse_points(query, errors)
    metric = query.get("metric") or SeriesMetric.LAG
    if metric not in SeriesMetric.values:
        errors.append(FieldError(("query", "metric"), f"must be one of: {', '.join(SeriesMetric.values)}"))
    until = until or now
    since = since or until - DEFAULT_SERIES_RANGE
    if not errors and since >= until:
        errors.append(FieldError(("query", "since"), "must be before until"))
    if errors:
        raise BadRequest("Invalid query parameters.", errors)
    series = lag_series.group_lag_series(
        found, since, until, now, points=points, topic=query.get("topic") or None, metric=metric
    )
    return JsonResponse(
        {
            "cluster": found.cluster.name,
            "group": found.name,
            "metric": metric,
            "since": iso_utc(since),
            "until": iso_utc(until),
            "series": [
                {"topic": s.name, "points": [[iso_utc(ts), value] for ts, value in s.points]} for s in series
            ],
        }
    )
