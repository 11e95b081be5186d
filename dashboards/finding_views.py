"""The Findings page: every detector finding, filtered by kind, service, topic and time,
newest first. The query lives in :mod:`monitor.events.findings`."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from dashboards.pages import dashboard_page, page
from monitor import links
from monitor.choices import FindingKind
from monitor.errors import QueryError
from monitor.events import findings as finding_queries


@dashboard_page
def findings_page(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    problems: list[str] = []
    try:
        filters = finding_queries.FindingFilter.from_query(request.GET)
    except QueryError as error:
        problems.append(f"Bad query parameter '{error.field}': {error.message}; showing all findings.")
        filters = finding_queries.FindingFilter()
    rows = [{
        "finding": finding,
        "traces": [(t, links.trace_path(t)) for t in finding_queries.example_trace_ids([finding], 3)],
        "service_url": links.service_path(finding.service) if finding.service else "",
        "topic_url": links.event_topic_path(finding.topic) if finding.topic else "",
    } for finding in finding_queries.find_findings(filters, now)]
    status = 400 if problems else 200
    response = page(request, "findings.html", {
        "filters": filters, "rows": rows, "kinds": FindingKind.choices,
        "windows": list(finding_queries.TIME_WINDOWS), "services": finding_queries.finding_services(now),
        "problems": problems, "max_rows": finding_queries.MAX_ROWS,
    }, "findings")
    response.status_code = status
    return response
