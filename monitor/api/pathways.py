"""``GET /api/v1/pathways`` and ``GET /api/v1/transactions`` (CONTRACT): thin: parse,
read through :mod:`monitor.pathways.queries`, serialise.

Both reflect every event ingested before the request (the incremental updater runs
first; it reads only what was added since its last run).
"""
from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from monitor.api.auth import api_view
from monitor.api.errors import BadRequest, FieldError
from monitor.choices import TokenScope, TransactionState
from monitor.notify.render import iso
from monitor.pathways import queries, updater
from monitor.timerange import parse_time_range

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def _limit(request: HttpRequest) -> int:
    raw = request.GET.get("limit") or str(DEFAULT_LIMIT)
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest("Invalid query parameters.",
                         [FieldError(("query", "limit"), f"must be an integer from 1 to {MAX_LIMIT}")])
    return limit


def _cursor(request: HttpRequest) -> int | None:
    raw = request.GET.get("cursor")
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # "¹".isdigit() is True
        raise BadRequest("Invalid query parameters.", [FieldError(("query", "cursor"), "is not a cursor of this list")])
    return int(raw)


@api_view(scope=TokenScope.READ)
def pathways(request: HttpRequest) -> JsonResponse:
    now = timezone.now()
    time_range = parse_time_range(request.GET, now)
    updater.update(now)
    body = [
        {"services": s.services, "topics": s.topics, "traces": s.traces, "p50_seconds": s.p50_seconds,
         "p95_seconds": s.p95_seconds, "p99_seconds": s.p99_seconds, "id": s.id, "label": s.label}
        for s in queries.pathway_summaries(time_range.since, time_range.until)
    ]
    return JsonResponse(body, safe=False)


def transaction_json(row: queries.TransactionRow) -> dict[str, Any]:
    return {"name": row.name, "key": row.key, "trace_id": row.trace_id or None, "state": row.state,
            "started_at": iso(row.started_at), "ended_at": iso(row.ended_at),
            "last_event_type": row.last_event_type, "last_service": row.last_service,
            "last_event_at": iso(row.last_event_at), "compensations": row.compensations,
            "slo_seconds": row.slo_seconds}


@api_view(scope=TokenScope.READ)
def transactions(request: HttpRequest) -> JsonResponse:
    state = request.GET.get("state") or ""
    if state and state not in TransactionState.values:
        raise BadRequest("Invalid query parameters.", [FieldError(
            ("query", "state"), f"must be one of {', '.join(TransactionState.values)}")])
    limit, after = _limit(request), _cursor(request)
    now = timezone.now()
    updater.update(now)
    rows = queries.transactions(now, name=request.GET.get("name") or "", state=state, limit=limit + 1,
                                after_id=after)
    response = JsonResponse([transaction_json(r) for r in rows[:limit]], safe=False)
    if len(rows) > limit:
        params = request.GET.copy()
        params["cursor"] = str(rows[limit - 1].id)
        response["Link"] = f'<{request.build_absolute_uri(request.path)}?{params.urlencode()}>; rel="next"'
    return response
