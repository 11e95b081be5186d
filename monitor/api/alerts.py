"""Alert endpoints: ``GET /api/v1/alerts`` (CONTRACT) and ``POST /api/v1/alerts/{id}/ack``.

``value`` and ``threshold`` are numbers (a status rule stores the status rank, see
monitor.alerts.metrics); ``value_text`` and ``threshold_text`` say them in words.
"""
from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse

from monitor import links
from monitor.alerts.engine import AcknowledgeError, acknowledge
from monitor.api.auth import api_view
from monitor.api.errors import ApiError, BadRequest, FieldError, NotFound
from monitor.choices import AlertState, Severity, TokenScope
from monitor.models import Alert
from monitor.notify import render

DEFAULT_LIMIT = 500
MAX_LIMIT = 5000


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
    limit = DEFAULT_LIMIT
    if request.GET.get("limit"):
        raw = request.GET["limit"]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            errors.append(FieldError(("query", "limit"), f"must be a whole number from 1 to {MAX_LIMIT}"))
        else:
            limit = int(raw)
    if errors:
        raise BadRequest("Invalid query parameters.", errors)
    rows = queryset.order_by("-started_at", "-id")[:limit]
    return JsonResponse([alert_json(alert) for alert in rows], safe=False)


def _note(request: HttpRequest) -> str:
    """The optional note: a JSON body ``{"note": "..."}`` or a form field ``note``."""
    if request.content_type != "application/json":
        note = request.POST.get("note", "")
        return note if isinstance(note, str) else ""
    if not request.body:
        return ""
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The body must be JSON, e.g. {\"note\": \"looking into it\"}.",
                         [FieldError(("body",), "not valid JSON")]) from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.", [FieldError(("body",), "must be an object")])
    note = body.get("note", "")
    if not isinstance(note, str):
        raise BadRequest("Invalid body.", [FieldError(("body", "note"), "must be text")])
    return note


@api_view(scope=TokenScope.READ, methods=("POST",))
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
