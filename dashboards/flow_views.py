"""Pages of the flow area: the flow graph, trace search and timeline, service and topic
(event side) pages. Login required; query, chart, render.

Every page reads its time range from the URL (``?range=`` or ``?since=&until=``), so
any view can be shared as a link. Pages refresh in place: ``?part=figure`` (flow, trace)
answers JSON for the script, ``?part=body`` (service, topic) the HTML fragment.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from dashboards import flow_charts
from dashboards.flow_layout import layered_layout
from dashboards.pages import dashboard_page, page
from monitor import links as site_links
from monitor.errors import QueryError
from monitor.events import traces as trace_reads
from monitor.events.timeline import build_timeline, causal_order
from monitor.flow import stats as flow_stats
from monitor.flow.graph import DEFAULT_TOP_NODES, FlowEdge, FlowNode, Tolerances
from monitor.flow.queries import flow_graph
from monitor.flow.shaping import HIDE_HUBS, HIDE_NONE, configured_tolerances, focus_services, hidden_names, shape_graph
from monitor.readcache import CacheOutcome
from monitor.schemas.queries import topic_registry
from monitor.redaction import redact_attributes as redact
from monitor.timerange import TimeRange, TimeRangeError, parse_time_range
from monitor.choices import FlowEdgeKind, FlowNodeKind, Health
from monitor.models import ConsumerGroup, Finding

HEALTH_ORDER = {Health.CRITICAL: 0, Health.WARNING: 1, Health.OK: 2, Health.UNKNOWN: 3}
LIVE_TRACE_SECONDS = 600  # a trace with reports this recent may still grow: refresh it


# --------------------------------------------------------------------------- plumbing

def request_range(request: HttpRequest, problems: list[str]) -> TimeRange:
    """The URL's range; a bad one becomes a banner and the default range, never an error page."""
    now = timezone.now()
    try:
        return parse_time_range(request.GET, now)
    except TimeRangeError as error:
        problems.append(f"Ignored the time range in the link ({error.field} {error.message}); showing the last hour.")
        return parse_time_range({}, now)


def request_tolerances(request: HttpRequest, problems: list[str]) -> Tolerances:
    try:
        return configured_tolerances(request.GET)
    except QueryError as error:
        problems.append(f"Bad query parameter '{error.field}': {error.message}; using the configured tolerances.")
        return configured_tolerances({})


def with_range(path: str, time_range: TimeRange, **extra: str) -> str:
    params = {**time_range.query_params(), **{k: v for k, v in extra.items() if v}}
    return f"{path}?{urlencode(params)}"


def service_path(name: str) -> str:
    return reverse("flow-service", args=[name])


def event_topic_path(name: str) -> str:
    return reverse("flow-event-topic", args=[name])


def trace_path(trace_id: str) -> str:
    return reverse("flow-trace", args=[trace_id])


def group_paths(names: set[str]) -> dict[str, list[tuple[str, str]]]:
    """group name -> [(cluster, lag page URL)] for the groups the poller knows."""
    paths: dict[str, list[tuple[str, str]]] = {}
    for cluster, name in ConsumerGroup.objects.filter(name__in=names, gone_at=None).values_list(
        "cluster__name", "name"
    ):
        paths.setdefault(name, []).append((cluster, site_links.group_path(cluster, name)))
    return paths


def banner_list(problems: list[str], cache_outcome: CacheOutcome | None = None) -> list[dict[str, str]]:
    banners = [{"level": "warning", "text": text} for text in problems]
    if cache_outcome is not None and not cache_outcome.available:
        banners.append({"level": "warning", "text": "Redis is unreachable: figures are computed on every request "
                                                    "(slower) until it answers again."})
    return banners


def render_page(request: HttpRequest, template: str, context: dict[str, Any], active_nav: str) -> HttpResponse:
    """The shared page shell: its banners (clusters, Redis) come from ``page``; this
    area's own notes travel as ``flow_banners`` so they never replace those."""
    assert "banners" not in context
    return page(request, template, context, active_nav)


# --------------------------------------------------------------------------- flow graph

MAX_SERVICE_CHOICES = 300

def _flow_view_model(request: HttpRequest) -> dict[str, Any]:
    problems: list[str] = []
    time_range = request_range(request, problems)
    tolerances = request_tolerances(request, problems)
    outcome = CacheOutcome()
    full = flow_graph(time_range, tolerances, outcome)
    hidden = hidden_names(request.GET.getlist("hide")) or [HIDE_HUBS]  # the page starts without the hairball
    focus = (request.GET.get("focus") or "").strip()
    group = (request.GET.get("group") or "").strip() if not focus else ""
    try:
        graph = shape_graph(full, request.GET, hidden, default_top=DEFAULT_TOP_NODES)
    except QueryError as error:
        problems.append(f"Bad query parameter '{error.field}': {error.message}; showing the whole graph.")
        graph = shape_graph(full, {}, [], default_top=DEFAULT_TOP_NODES)
    if focus and not graph.nodes:
        problems.append(f"No service called {focus!r} reported events in this range.")
    if group and not graph.nodes:
        problems.append(f"No service reported consuming as group {group!r} in this range.")

    folded_names = {node.name for node in graph.nodes.values() if node.folded}

    def node_url(node: FlowNode) -> str:
        if node.folded:  # "N other services": the same page with more nodes drawn
            return with_range(reverse("flow"), time_range, top=str(min(10_000, 4 * max(len(graph.nodes), 2))))
        path = service_path(node.name) if node.kind == FlowNodeKind.SERVICE else event_topic_path(node.name)
        return with_range(path, time_range)

    def edge_url(edge: FlowEdge) -> str:
        return with_range(reverse("flow-traces"), time_range,
                          service="" if edge.service in folded_names else edge.service,
                          topic="" if edge.topic in folded_names else edge.topic, group=edge.consumer_group)

    layout = layered_layout(list(graph.nodes), [(e.source, e.target) for e in graph.edges])
    figure = flow_charts.flow_figure(graph, layout, node_url, edge_url)
    edges = sorted(graph.edges, key=lambda e: (HEALTH_ORDER[Health(e.health)], -e.events, e.id))
    rows = [{
        "edge": edge,
        "source": graph.nodes[edge.source],
        "target": graph.nodes[edge.target],
        "source_url": node_url(graph.nodes[edge.source]),
        "target_url": node_url(graph.nodes[edge.target]),
        "traces_url": edge_url(edge),
        "examples": [(t, with_range(trace_path(t), time_range)) for t in edge.examples],
    } for edge in edges]
    # The focus menu: every service on a small system, the busiest ones on a large one.
    busiest = sorted((n for n in full.nodes.values() if n.kind == FlowNodeKind.SERVICE),
                     key=lambda n: -(n.events_in + n.events_out))[:MAX_SERVICE_CHOICES]
    services = sorted({n.name for n in busiest} | ({focus} if focus else set()))
    hubs = sorted(full.nodes[k].name for k in full.nodes if full.nodes[k].hub)
    return {
        "time_range": time_range,
        "tolerances": tolerances,
        "figure": figure,
        "rows": rows,
        "services": services,
        "hubs": hubs,
        "focus": focus,
        "group": group,
        "group_services": focus_services(full, {"group": group}) if group else [],
        "hide_hubs": HIDE_HUBS in hidden,
        "hidden": [h for h in hidden if h not in (HIDE_HUBS, HIDE_NONE)],
        "node_count": len(graph.nodes),
        "edge_count": len(graph.edges),
        "critical_count": sum(1 for e in graph.edges if e.health == Health.CRITICAL),
        "warning_count": sum(1 for e in graph.edges if e.health == Health.WARNING),
        "flow_banners": banner_list(problems, outcome),
        "EDGE_CONSUME": FlowEdgeKind.CONSUME,
    }


@dashboard_page
def flow(request: HttpRequest) -> HttpResponse:
    model = _flow_view_model(request)
    if request.GET.get("part") == "figure":
        table = render_to_string("fragments/flow_edges.html", model, request=request)
        return JsonResponse({"figure": model["figure"], "table_html": table,
                             "banners": [b["text"] for b in model["flow_banners"]]})
    return render_page(request, "flow.html", model, "flow")


# --------------------------------------------------------------------------- traces

@dashboard_page
def traces(request: HttpRequest) -> HttpResponse:
    problems: list[str] = []
    time_range = request_range(request, problems)
    query = (request.GET.get("q") or "").strip()
    filters = trace_reads.TraceFilters(
        service=(request.GET.get("service") or "").strip(),
        topic=(request.GET.get("topic") or "").strip(),
        group=(request.GET.get("group") or "").strip(),
        failed_only=request.GET.get("failed") in ("1", "true", "on"),
    )
    search = trace_reads.search_traces(query) if query else None
    if search is not None and search.trace_id:
        return redirect(with_range(trace_path(search.trace_id), time_range))
    if search is not None:
        summaries = search.traces
    else:
        summaries = trace_reads.summarise_traces(
            trace_reads.recent_trace_ids(time_range.since, time_range.until, filters)
        )
    sort = request.GET.get("sort", "recent")
    sort = sort if sort in trace_reads.TRACE_SORTS else "recent"
    summaries = trace_reads.sort_summaries(summaries, sort)
    sort_query = request.GET.copy()
    sort_query["sort"] = "recent" if sort == "duration" else "duration"
    context = {
        "time_range": time_range,
        "query": query,
        "search": search,
        "filters": filters,
        "sort": sort,
        "sort_link": "?" + sort_query.urlencode(),
        "rows": [{"summary": s, "url": with_range(trace_path(s.trace_id), time_range),
                  "key_url": f"{reverse('flow-traces')}?{urlencode({'q': s.key})}" if s.key else ""}
                 for s in summaries],
        "flow_banners": banner_list(problems),
    }
    return render_page(request, "traces.html", context, "traces")


def _trace_view_model(request: HttpRequest, trace_id: str, time_range: TimeRange) -> dict[str, Any] | None:
    events, truncated = trace_reads.trace_events(trace_id)
    if not events:
        return None
    ordered = causal_order(events)
    expected = trace_reads.expected_groups({e.topic for e in ordered if e.topic})
    timeline = build_timeline(ordered, expected)
    groups = {e.consumer_group for e in ordered if e.consumer_group}
    group_links = group_paths(groups)
    rows = [{
        "event": event,
        "attributes": redact(event.attributes),
        "service_url": with_range(service_path(event.service), time_range),
        "topic_url": with_range(event_topic_path(event.topic), time_range) if event.topic else "",
        "group_links": group_links.get(event.consumer_group, []),
        "offset_seconds": (event.timestamp - timeline.start).total_seconds(),
    } for event in ordered]
    topics = sorted({e.topic for e in ordered if e.topic})
    last_report = max(e.timestamp for e in ordered)
    return {
        "trace_id": trace_id,
        "timeline": timeline,
        "figure": flow_charts.timeline_figure(timeline),
        "rows": rows,
        "truncated": truncated,
        "services": [(s, with_range(service_path(s), time_range)) for s in dict.fromkeys(e.service for e in ordered)],
        "topics": [(t, with_range(event_topic_path(t), time_range)) for t in topics],
        "groups": sorted((g, group_links.get(g, [])) for g in groups),
        "keys": sorted({e.key for e in ordered if e.key}),
        "live": (timezone.now() - last_report).total_seconds() < LIVE_TRACE_SECONDS,
        "time_range": time_range,
    }


@dashboard_page
def trace(request: HttpRequest, trace_id: str) -> HttpResponse:
    problems: list[str] = []
    time_range = request_range(request, problems)
    model = _trace_view_model(request, trace_id, time_range)
    if model is None and trace_id != trace_id.lower():
        return redirect(with_range(trace_path(trace_id.lower()), time_range))
    if model is None:
        raise Http404(f"No events were reported for trace {trace_id!r}.")
    if request.GET.get("part") == "figure":
        table = render_to_string("fragments/trace_events.html", model, request=request)
        return JsonResponse({"figure": model["figure"], "table_html": table})
    if model["truncated"]:
        problems.append(f"This trace has more than {trace_reads.TRACE_EVENT_LIMIT:,} reports; "
                        "only the first ones are shown.")
    model["flow_banners"] = banner_list(problems)
    return render_page(request, "trace.html", model, "traces")


# --------------------------------------------------------------------------- service and topic

def _lag_rows(lags: Mapping[tuple[str, str], Any], links: Mapping[str, list[tuple[str, str]]]) -> list[dict[str, Any]]:
    return [{"group": group, "topic": topic, "lag": lag.lag, "status": lag.status, "clusters": links.get(group, [])}
            for (group, topic), lag in sorted(lags.items())]


@dashboard_page
def service(request: HttpRequest, name: str) -> HttpResponse:
    problems: list[str] = []
    time_range = request_range(request, problems)
    outcome = CacheOutcome()
    stats = flow_stats.cached_service_stats(name, time_range, outcome)
    if not stats.known:
        raise Http404(f"No service called {name!r} has reported events.")
    links = group_paths({g.name for g in stats.groups})
    for row in stats.publishes:
        row["topic_url"] = with_range(event_topic_path(row["topic"]), time_range)
    for row in stats.consumes:
        row["topic_url"] = with_range(event_topic_path(row["topic"]), time_range)
        row["p95"] = stats.p95.get((row["topic"], name, row["consumer_group"]))
        lag = stats.lags.get((row["consumer_group"], row["topic"]))
        row["lag"] = lag.lag if lag else None
        row["traces_url"] = with_range(reverse("flow-traces"), time_range, service=name, topic=row["topic"],
                                       group=row["consumer_group"])
    context = {
        "name": name,
        "stats": stats,
        "time_range": time_range,
        "lag_rows": _lag_rows(stats.lags, links),
        "group_links": links,
        "failures": [{"event": e, "trace_url": with_range(trace_path(e.trace_id), time_range) if e.trace_id else ""}
                     for e in stats.recent_failures],
        "figure": flow_charts.rate_figure(stats.series, time_range.since, time_range.until,
                                           flow_stats.rate_bucket_seconds(time_range.since, time_range.until)),
        "flow_url": with_range(reverse("flow"), time_range, focus=name),
        "failed_traces_url": with_range(reverse("flow-traces"), time_range, service=name, failed="1"),
        "findings": finding_rows(stats.findings, time_range),
        "flow_banners": banner_list(problems, outcome),
    }
    if request.GET.get("part") == "body":
        return render(request, "fragments/service_body.html", context)
    return render_page(request, "service.html", context, "flow")


@dashboard_page
def event_topic(request: HttpRequest, name: str) -> HttpResponse:
    problems: list[str] = []
    time_range = request_range(request, problems)
    outcome = CacheOutcome()
    stats = flow_stats.cached_topic_stats(name, time_range, outcome)
    if not stats.known:
        raise Http404(f"No topic called {name!r} has been seen.")
    links = group_paths({row["consumer_group"] for row in stats.consumers if row["consumer_group"]})
    for row in stats.producers:
        row["service_url"] = with_range(service_path(row["service"]), time_range)
    for row in stats.consumers:
        row["service_url"] = with_range(service_path(row["service"]), time_range)
        lag = stats.lags.get((row["consumer_group"], name))
        row["lag"] = lag.lag if lag else None
        row["lag_status"] = lag.status if lag else None
        row["group_links"] = links.get(row["consumer_group"], [])
    context = {
        "name": name,
        "stats": stats,
        "time_range": time_range,
        "lag_topic_links": [(c, site_links.topic_path(c, t)) for c, t in stats.lag_pages],
        "figure": flow_charts.rate_figure(stats.series, time_range.since, time_range.until,
                                           flow_stats.rate_bucket_seconds(time_range.since, time_range.until)),
        "flow_url": with_range(reverse("flow"), time_range),
        "traces_url": with_range(reverse("flow-traces"), time_range, topic=name),
        "findings": finding_rows(stats.findings, time_range),
        "flow_banners": banner_list(problems, outcome),
        "registry": topic_registry(name, time_range.since, time_range.until),
    }
    if request.GET.get("part") == "body":
        return render(request, "fragments/event_topic_body.html", context)
    return render_page(request, "event_topic.html", context, "flow")


def finding_rows(findings: list[Finding], time_range: TimeRange) -> list[dict[str, Any]]:
    """Detector findings with links to their example traces."""
    rows = []
    for finding in findings:
        examples = finding.examples if isinstance(finding.examples, list) else []
        trace_ids = list(dict.fromkeys(str(e["trace_id"]) for e in examples
                                       if isinstance(e, Mapping) and e.get("trace_id")))
        rows.append({"finding": finding,
                     "traces": [(t, with_range(trace_path(t), time_range)) for t in trace_ids[:5]]})
    return rows
