"""Pages of pathways and business transactions. Login required; read, chart, render."""
from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone

from dashboards import pathway_charts
from dashboards.flow_views import banner_list, render_page, request_range, with_range
from dashboards.pages import dashboard_page
from monitor.choices import TransactionState
from monitor.pathways import queries, updater


@dashboard_page
def pathways(request: HttpRequest) -> HttpResponse:
    problems: list[str] = []
    time_range = request_range(request, problems)
    updater.update(timezone.now())
    rows = [
        {"summary": summary, "url": with_range(reverse("pathway", args=[summary.id]), time_range)}
        for summary in queries.pathway_summaries(time_range.since, time_range.until)
    ]
    return render_page(request, "pathways.html", {
        "rows": rows, "time_range": time_range, "flow_banners": banner_list(problems),
        "transactions_url": reverse("transactions"),
    }, "flow")


@dashboard_page
def pathway(request: HttpRequest, pathway_id: int) -> HttpResponse:
    problems: list[str] = []
    time_range = request_range(request, problems)
    updater.update(timezone.now())
    detail = queries.pathway_detail(pathway_id, time_range.since, time_range.until)
    if detail is None:
        raise Http404("No such pathway")
    service_links = [(service, with_range(reverse("flow-service", args=[service]), time_range))
                     for service in detail.summary.services]
    return render_page(request, "pathway.html", {
        "detail": detail, "time_range": time_range, "flow_banners": banner_list(problems),
        "service_links": service_links,
        "figure": pathway_charts.latency_figure(detail.minutes, time_range.since, time_range.until),
        "traces_url": with_range(reverse("flow-traces"), time_range, service=detail.summary.services[0]),
    }, "flow")


@dashboard_page
def transactions(request: HttpRequest) -> HttpResponse:
    problems: list[str] = []
    time_range = request_range(request, problems)
    now = timezone.now()
    updater.update(now)
    name = (request.GET.get("name") or "").strip()
    state = (request.GET.get("state") or TransactionState.STUCK).strip()
    if state not in TransactionState.values:
        problems.append(f"Unknown state {state!r}; showing stuck transactions.")
        state = TransactionState.STUCK
    rows = [
        {"row": row, "trace_url": reverse("flow-trace", args=[row.trace_id]) if row.trace_id else "",
         "age_seconds": (now - row.started_at).total_seconds()}
        for row in queries.transactions(now, name=name, state=state, limit=200)
    ]
    return render_page(request, "transactions.html", {
        "flows": queries.flow_summaries(now, time_range.since), "rows": rows, "state": state, "name": name,
        "states": TransactionState.choices, "time_range": time_range, "flow_banners": banner_list(problems),
    }, "flow")
