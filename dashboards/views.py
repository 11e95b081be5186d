"""Dashboard pages: login required; query, chart, render.

Each page also answers ``?part=...`` with just the fragment (HTML) or chart data (JSON)
that its script refreshes without a full reload.
"""
from __future__ import annotations

from datetime import datetime

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from dashboards import charts, pathway_charts
from dashboards.alert_views import alerts_for_group, incident_context
from dashboards.pages import dashboard_page, page
from monitor import links
from monitor.alerts.incidents import group_markers, sparkline_floor
from monitor.lag import queries, throughput
from monitor.lag import series as lag_series
from monitor.choices import STATUS_SEVERITY_RANK, GroupStatus, SeriesMetric
from monitor.models import Cluster, ConsumerGroup

MAX_CONSUMER_SERIES = 8  # consume-rate lines on a topic page; the rest are in the readers table
GROUP_FRAGMENTS = {"summary": "fragments/group_summary.html", "partitions": "fragments/group_partitions.html"}


def _cluster_or_404(name: str) -> Cluster:
    cluster = queries.find_cluster(name)
    if cluster is None:
        raise Http404(f"No cluster named {name!r}")
    return cluster


def _chart_range(request: HttpRequest) -> str:
    value = request.GET.get("range", lag_series.DEFAULT_CHART_RANGE)
    return value if value in lag_series.CHART_RANGES else lag_series.DEFAULT_CHART_RANGE


def _metric(request: HttpRequest) -> str:
    value = request.GET.get("metric", SeriesMetric.LAG)
    return value if value in SeriesMetric.values else SeriesMetric.LAG


def query_link(request: HttpRequest, **changes: str | None) -> str:
    """The current query string with ``changes`` applied (None removes a key)."""
    query = request.GET.copy()
    query.pop("part", None)
    for key, value in changes.items():
        if value is None:
            query.pop(key, None)
        else:
            query[key] = value
    return "?" + query.urlencode()


def chart_controls(request: HttpRequest, chart_range: str, metric: str) -> dict[str, object]:
    """Range buttons and the messages/seconds toggle as links: the choice lives in the URL."""
    return {
        "chart_range": chart_range,
        "metric": metric,
        "range_links": [(key, query_link(request, range=key), key == chart_range) for key in lag_series.CHART_RANGES],
        "metric_links": [
            (label, query_link(request, metric=value), value == metric) for value, label in SeriesMetric.choices
        ],
        "charts_url": query_link(request, range=chart_range, metric=metric, part="charts"),
    }


def _chart_events(group: ConsumerGroup, since: datetime, until: datetime) -> list[charts.ChartEvent]:
    lifecycle = [
        charts.ChartEvent(at=e.at, kind=e.kind, label=e.get_kind_display(), detail=e.detail, topic=e.topic)
        for e in queries.group_events(group, since, until)
    ]
    markers = [charts.ChartEvent(at=m.at, kind=m.kind, label=m.label, detail=m.detail, topic=m.topic)
               for m in group_markers(group.cluster.name, group.name, list(group.topics or []), since, until)]
    return lifecycle + markers


# --------------------------------------------------------------------------- pages


@dashboard_page
def overview(request: HttpRequest) -> HttpResponse:
    filters = queries.OverviewFilter.from_query(request.GET)
    data = queries.overview(filters, timezone.now())
    floor = sparkline_floor()
    query = request.GET.copy()
    query.pop("part", None)
    context = {
        "filters": filters,
        "overview": data,
        "rows": [{"group": r.group, "spark": charts.sparkline(r.sparkline, floor)} for r in data.rows],
        "statuses": GroupStatus.choices,
        "problem_count": sum(n for s, n in data.status_counts.items() if s in queries.PROBLEM_STATUSES),
        "sort_links": _sort_links(request, filters),
        "query_string": query.urlencode(),
        "status_links": [
            (value, label, data.status_counts.get(value, 0), query_link(request, status=value, page=None))
            for value, label in _by_severity(GroupStatus.choices)
            if data.status_counts.get(value)
        ],
        "previous_page": query_link(request, page=str(data.page - 1)) if data.page > 1 else "",
        "next_page": query_link(request, page=str(data.page + 1)) if data.page < data.pages else "",
    }
    if request.GET.get("part") == "incidents":
        return render(request, "fragments/incident_strip.html", {"now": timezone.now(), **incident_context()})
    if request.GET.get("part") == "table":
        return render(request, "fragments/overview_table.html", {"now": timezone.now(), **context})
    return page(request, "overview.html", {**context, **incident_context()}, "overview")


def _by_severity(choices: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted(choices, key=lambda choice: -STATUS_SEVERITY_RANK.get(choice[0], 0))


def _sort_links(request: HttpRequest, filters: queries.OverviewFilter) -> dict[str, str]:
    """Per column: the query string that sorts by it (toggling the direction when it is current)."""
    links = {}
    for key in queries.OverviewFilter.SORTS:
        query = request.GET.copy()
        query.pop("part", None)
        query["sort"] = key
        descending = not filters.descending if filters.sort == key else key in {"total_lag", "max_time_lag_seconds"}
        query["dir"] = "desc" if descending else "asc"
        query.pop("page", None)  # a new order starts on its first page
        links[key] = "?" + query.urlencode()
    return links


@dashboard_page
def cluster(request: HttpRequest, cluster: str) -> HttpResponse:
    found = _cluster_or_404(cluster)
    return redirect(links.path("overview", query={"cluster": found.name}))


@dashboard_page
def group(request: HttpRequest, cluster: str, group: str) -> HttpResponse:
    found_cluster = _cluster_or_404(cluster)
    found = queries.find_group(found_cluster, group)
    if found is None:
        raise Http404(f"No consumer group named {group!r} on {cluster!r}")
    chart_range = _chart_range(request)
    metric = _metric(request)
    breakdown = request.GET.get("breakdown") == "partition"
    part = request.GET.get("part")
    now = timezone.now()
    since = now - lag_series.CHART_RANGES[chart_range]

    if part == "charts":
        return JsonResponse({"charts": _group_charts(found, since, now, metric, breakdown)})

    context: dict[str, object] = {"cluster": found_cluster, "group": found}
    if part != "summary":
        context["partitions"] = queries.latest_partitions(found)
        context["events"] = list(reversed(queries.group_events(found, since, now)))
    if part in GROUP_FRAGMENTS:
        return render(request, GROUP_FRAGMENTS[part], {"now": now, **context})
    context.update(
        {
            "charts": _group_charts(found, since, now, metric, breakdown),
            "breakdown": breakdown,
            "breakdown_link": query_link(request, breakdown=None if breakdown else "partition"),
            "summary_url": query_link(request, part="summary"),
            "partitions_url": query_link(request, part="partitions"),
            **chart_controls(request, chart_range, metric),
            **alerts_for_group(found_cluster.name, found.name),
        }
    )
    return page(request, "group.html", context, "overview")


def _group_charts(
    group: ConsumerGroup, since: datetime, until: datetime, metric: str, breakdown: bool
) -> list[dict[str, object]]:
    series = lag_series.group_lag_series(group, since, until, until, points=lag_series.DEFAULT_POINTS, metric=metric)
    partitions = lag_series.partition_lag_series(group, since, until, points=200, metric=metric) if breakdown else {}
    events = _chart_events(group, since, until)
    topics = sorted({s.name for s in series} | set(partitions))
    by_name = {s.name: s for s in series}
    return [
        {
            "id": f"chart-{index}",
            "topic": topic,
            "url": reverse("topic", args=[group.cluster.name, topic]),
            "figure": charts.lag_figure(
                [by_name[topic]] if topic in by_name else [],
                metric,
                since,
                until,
                events=events,
                topic=topic,
                breakdown=partitions.get(topic, []),
            ),
        }
        for index, topic in enumerate(topics)
    ]


@dashboard_page
def topic(request: HttpRequest, cluster: str, topic: str) -> HttpResponse:
    found_cluster = _cluster_or_404(cluster)
    readers = queries.topic_readers(found_cluster, topic)
    known_topic = queries.find_topic(found_cluster, topic)
    chart_range = _chart_range(request)
    metric = _metric(request)
    now = timezone.now()
    since = now - lag_series.CHART_RANGES[chart_range]
    series = lag_series.topic_lag_series(found_cluster, topic, since, now, now, metric=metric)
    if not readers and known_topic is None and not series:
        raise Http404(f"No topic named {topic!r} on {cluster!r}")
    figure = charts.lag_figure(series, metric, since, now)
    if request.GET.get("part") == "charts":
        return JsonResponse({"charts": [{"id": "chart-readers", "topic": topic, "figure": figure}]})
    produced = throughput.produce_minutes(found_cluster.id, topic, since, now)
    usual = throughput.produce_minutes(found_cluster.id, topic, since - throughput.WEEK, now - throughput.WEEK)
    context = {
        "cluster": found_cluster,
        "topic_name": topic,
        "topic": known_topic,
        "readers": readers,
        "throughput": throughput.topic_produce_throughput(found_cluster.id, topic, now),
        "throughput_figure": pathway_charts.throughput_figure(
            {f"{topic} (produced)": produced,
             **{f"{r.group.name} (consumed)": throughput.consume_minutes(r.group.id, topic, since, now)
                for r in readers[:MAX_CONSUMER_SERIES]}},
            {m + throughput.WEEK: v for m, v in usual.items()}, since, now),
        "charts": [{"id": "chart-readers", "topic": topic, "figure": figure}],
        "event_topic_url": links.event_topic_path(topic),
        "findings_url": links.path("findings", query={"topic": topic}),
        **chart_controls(request, chart_range, metric),
    }
    return page(request, "topic.html", context, "overview")


@dashboard_page
def clusters(request: HttpRequest) -> HttpResponse:
    context = {"rows": queries.cluster_rows()}
    if request.GET.get("part") == "table":
        return render(request, "fragments/clusters_table.html", {"now": timezone.now(), **context})
    return page(request, "clusters.html", dict(context), "clusters")
