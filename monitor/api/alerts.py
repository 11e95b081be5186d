"""Alert endpoints: ``GET /api/v1/alerts`` (CONTRACT) and ``POST /api/v1/alerts/{id}/ack``.

``value`` and ``threshold`` are numbers (a status rule stores the status rank, see
monitor.alerts.metrics); ``value_text`` and ``threshold_text`` say them in words.
"""
from __future__ import annotations

import json
from datetime import datetime

from django.db.models import Q
from django.http import HttpRequest, JsonResponse

from monitor import links
from monitor.events.ingest import text_problem
from monitor.alerts.engine import AcknowledgeError, acknowledge
from monitor.api import paging as pages
from monitor.api.auth import api_view
from monitor.api.errors import ApiError, BadRequest, FieldError, NotFound
from monitor.choices import AlertState, Severity, TokenScope
from monitor.models import Alert
from monitor.notify import render



def alert_json(alert: Alert) -> dict[str, object]:
    rule = alert.rule
    detail = alert.detail or {}
    return {
        "id": alert.id,
        "rule": rule.name,
        "subject": alert.subject,
        "state": alert.state,
        "value": render.json_number(alert.value),
        "threshold": render.json_number(alert.threshold),
        "started_at": render.iso(alert.started_at),
        "resolved_at": render.iso(alert.resolved_at),
        "rule_id": rule.id,
        "severity": rule.severity,
        "metric": rule.metric,
        "op": rule.op,
        "cluster": alert.cluster,
        "group": alert.group,
        "topic": alert.topic,
        "value_text": detail.get("value_text") or render.format_value(rule.metric, alert.value),
        "threshold_text": render.format_value(rule.metric, alert.threshold),
        "fired_at": render.iso(alert.fired_at),
        "no_data": alert.no_data,
        "no_data_reason": detail.get("no_data_reason", "") if alert.no_data else "",
        "resolved_reason": detail.get("resolved_reason", ""),
        "acknowledged_at": render.iso(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by,
        "acknowledgement_note": alert.acknowledgement_note,
        "url": links.absolute(links.alert_path(alert.id)),
    }


@api_view(scope=TokenScope.READ)
def alerts(request: HttpRequest) -> JsonResponse:
    errors: list[FieldError] = []
    queryset = Alert.objects.select_related("rule")
    state = request.GET.get("state")
    if state:
        if state not in AlertState.values:
            errors.append(FieldError(("query", "state"), f"must be one of {', '.join(AlertState.values)}"))
        queryset = queryset.filter(state=state)
    severity = request.GET.get("severity")
    if severity:
        if severity not in Severity.values:
            errors.append(FieldError(("query", "severity"), f"must be one of {', '.join(Severity.values)}"))
        queryset = queryset.filter(rule__severity=severity)
    for name, lookup in (("cluster", "cluster"), ("group", "group"), ("topic", "topic"), ("rule", "rule__name")):
        value = request.GET.get(name)
        if value:
            queryset = queryset.filter(**{lookup: value})
    paging = pages.parse(request.GET, "alerts", errors)
    after = _cursor_key(paging.after, errors)
    if errors:
        raise BadRequest("Invalid query parameters.", errors)
    if after is not None:
        started_at, alert_id = after
        queryset = queryset.filter(Q(started_at__lt=started_at) | Q(started_at=started_at, id__lt=alert_id))
    queryset = queryset.order_by("-started_at", "-id")
    if paging.limit is None:
        return JsonResponse([alert_json(alert) for alert in queryset], safe=False)
    rows = list(queryset[:paging.limit + 1])
    more = len(rows) > paging.limit
    rows = rows[:paging.limit]
    response = JsonResponse([alert_json(alert) for alert in rows], safe=False)
    last = rows[-1] if more and rows else None
    return pages.add_next_link(response, request, "alerts",
                               [last.started_at.isoformat(), last.id] if last is not None else None)


def _cursor_key(after: list[object] | None, errors: list[FieldError]) -> tuple[datetime, int] | None:
    """The alerts cursor's key: the previous page's last (started_at, id)."""
    if after is None:
        return None
    try:
        started_at, alert_id = after
        if not isinstance(started_at, str) or not isinstance(alert_id, int):
            raise ValueError
        return datetime.fromisoformat(started_at), alert_id
    except ValueError:
        errors.append(FieldError(("query", "cursor"), "is not a cursor of this list (take it from the Link header)"))
        return None


def _note(request: HttpRequest) -> str:
    """The optional note: a JSON body ``{"note": "..."}`` or a form field ``note``."""
    if request.content_type != "application/json":
        note = request.POST.get("note", "")
        return note if isinstance(note, str) else ""
    if not request.body:
        return ""
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("The body must be JSON, e.g. {\"note\": \"looking into it\"}.",
                         [FieldError(("body",), "not valid JSON")]) from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.", [FieldError(("body",), "must be an object")])
    note = body.get("note", "")
    if not isinstance(note, str):
        raise BadRequest("Invalid body.", [FieldError(("body", "note"), "must be text")])
    problem = text_problem(note, name_rules=False)  # NUL or a lone surrogate cannot be stored
    if problem is not None:
        raise BadRequest("Invalid body.", [FieldError(("body", "note"), problem)])
    return note


@api_view(scope=TokenScope.ACK, methods=("POST",))
def acknowledge_alert(request: HttpRequest, alert_id: int) -> JsonResponse:
    note = _note(request)
    token = getattr(request, "api_token", None)
    by = f"token {token.name}" if token is not None else request.user.get_username()
    try:
        alert = acknowledge(alert_id, by=by, note=note)
    except AcknowledgeError as exc:
        if exc.not_found:
            raise NotFound(str(exc)) from None
        raise ApiError(str(exc), status=409) from None
    return JsonResponse(alert_json(alert))
