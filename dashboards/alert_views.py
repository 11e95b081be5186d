"""Alert pages: the alerts overview (firing, pending, recently resolved, silences), one
alert with its notifications and the acknowledge form (the target of the link in every
message), and the fragment the group page includes (``alerts_for_group``)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib import messages
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from dashboards import charts
from dashboards.pages import dashboard_page, page
from monitor import humanize, links
from monitor.alerts import incidents
from monitor.alerts.engine import AcknowledgeError, acknowledge
from monitor.alerts.rules import Subject, literal_glob
from monitor.alerts.silences import (
    UNTIL_RESOLVED, SilenceError, active_mutes, muted_by, parse_weekdays, silence_alert, window_active,
)
from monitor.choices import AlertState, Severity
from monitor.models import Alert, Cluster, MaintenanceWindow, Silence
from monitor.notify import render as message_render

RECENT_RESOLVED = timedelta(hours=24)
PAGE_SIZE = 100


@dataclass(frozen=True)
class AlertRow:
    alert: Alert
    severity: str
    value_text: str
    threshold_text: str
    since: datetime
    group_path: str
    no_data_reason: str
    silenced_by: str = ""
    subject_url: str = ""  # the subject's page: the group, or for detector alerts the service or event topic
    worst_text: str = ""  # the worst value while open: a resolved alert shows its peak
    keep_firing_note: str = ""  # why a firing alert whose condition cleared still fires

    @property
    def id(self) -> int:
        return self.alert.id


def alert_row(alert: Alert, silenced_by: str = "") -> AlertRow:
    rule = alert.rule
    detail = alert.detail or {}
    return AlertRow(
        alert=alert,
        severity=rule.severity,
        value_text=detail.get("value_text") or message_render.format_value(rule.metric, alert.value),
        threshold_text=f"{rule.op} {message_render.format_value(rule.metric, alert.threshold)}",
        since=alert.fired_at or alert.started_at,
        group_path=message_render.group_path(alert.cluster, alert.group) if alert.cluster and alert.group else "",
        no_data_reason=detail.get("no_data_reason", "") if alert.no_data else "",
        silenced_by=silenced_by,
        subject_url=incidents.subject_path(alert),
        worst_text=message_render.format_value(rule.metric, detail["worst"])
        if isinstance(detail.get("worst"), (int, float)) else "",
        keep_firing_note=_keep_firing_note(alert),
    )


def _keep_firing_note(alert: Alert) -> str:
    if alert.state != AlertState.FIRING or alert.clear_since is None:
        return ""
    rule = alert.rule
    left = max(0.0, rule.keep_firing_seconds - (timezone.now() - alert.clear_since).total_seconds())
    return (f"the condition has been clear since {humanize.ago(alert.clear_since, timezone.now())}; it keeps "
            f"firing until clear for {humanize.duration(rule.keep_firing_seconds)} (keep_firing), about "
            f"{humanize.duration(left)} more")


def incident_context() -> dict[str, Any]:
    """Context for ``fragments/incident_strip.html`` (the overview's incident strip)."""
    found = incidents.incidents(timezone.now())
    return {"incidents": found, "incidents_url": f"{reverse('overview')}?part=incidents",
            "incident_firing": sum(1 for i in found if i.kind == "alert" and not i.silenced_by)}


def alerts_for_group(cluster: str, group: str, resolved_limit: int = 5) -> dict[str, Any]:
    """Context for ``fragments/alerts_group.html`` on a group page: the group's open
    alerts and its last few resolved ones (two queries)."""
    base = Alert.objects.select_related("rule").filter(cluster=cluster, group=group)
    open_rows = [alert_row(a) for a in base.filter(state__in=[AlertState.FIRING, AlertState.PENDING])
                 .order_by("state", "-started_at")[:100]]
    resolved = base.filter(state=AlertState.RESOLVED).order_by("-resolved_at")[:resolved_limit]
    resolved_rows = [alert_row(a) for a in resolved]
    return {"group_alerts": open_rows, "group_resolved_alerts": resolved_rows,
            "group_alerts_url": links.path("alerts", query={"cluster": cluster})}


def _filters(request: HttpRequest) -> tuple[str, str]:
    cluster = request.GET.get("cluster", "")
    severity = request.GET.get("severity", "")
    return cluster, severity if severity in Severity.values else ""


def _alerts_context(request: HttpRequest) -> dict[str, Any]:
    now = timezone.now()
    cluster, severity = _filters(request)
    base = Alert.objects.select_related("rule")
    if cluster:
        base = base.filter(cluster=cluster)
    if severity:
        base = base.filter(rule__severity=severity)
    # A silenced alert is still firing, but nobody is being paged for it: shown apart, muted.
    silenced_by = _silenced_firing(base, now)
    firing_alerts = base.filter(state=AlertState.FIRING)
    firing = _table(request, "firing", firing_alerts.exclude(pk__in=list(silenced_by)).order_by("-fired_at", "-id"))
    silenced = _table(request, "silenced", firing_alerts.filter(pk__in=list(silenced_by)).order_by("-fired_at", "-id"),
                      silenced_by)
    pending = _table(request, "pending", base.filter(state=AlertState.PENDING).order_by("-started_at", "-id"))
    resolved = _table(request, "resolved", base.filter(state=AlertState.RESOLVED, resolved_at__gte=now - RECENT_RESOLVED)
                      .order_by("-resolved_at", "-id"))
    firing_by_severity = dict(firing_alerts.exclude(pk__in=list(silenced_by)).order_by().values("rule__severity")
                              .annotate(n=Count("id")).values_list("rule__severity", "n"))
    silences = list(Silence.objects.select_related("rule").filter(ends_at__gt=now).order_by("starts_at"))
    windows = []
    for window in MaintenanceWindow.objects.filter(enabled=True):
        try:
            active = window_active(parse_weekdays(window.weekdays), window.start_time, window.duration_minutes, now)
        except ValueError:
            active = False
        windows.append({"window": window, "active": active})
    return {
        "firing": firing, "silenced": silenced, "pending": pending, "resolved": resolved, "silences": silences,
        "windows": windows,
        "cluster": cluster, "severity": severity, "severities": Severity.choices,
        "clusters": list(Cluster.objects.values_list("name", flat=True)),
        "counts": {s: firing_by_severity.get(s, 0) for s in Severity.values},
        "now": now,
    }


@dataclass(frozen=True)
class AlertTable:
    """One page of one of the alerts page's tables; the page is in the URL (``{state}_page``)."""

    rows: list[AlertRow]
    total: int
    page: int
    pages: int
    previous_link: str
    next_link: str


def _silenced_firing(base: QuerySet[Alert], now: datetime, limit: int = 10_000) -> dict[int, str]:
    """Firing alert id -> the silence or window muting it (globs are matched here, not in SQL)."""
    mutes = active_mutes(now)
    if not mutes:
        return {}
    rows = base.filter(state=AlertState.FIRING).values_list("id", "rule_id", "cluster", "group", "topic")[:limit]
    found = {pk: muted_by(mutes, rule_id, Subject(cluster, group, topic)) for pk, rule_id, cluster, group, topic in rows}
    return {pk: label for pk, label in found.items() if label}


def _table(request: HttpRequest, state: str, alerts: QuerySet[Alert],
           silenced_by: dict[int, str] | None = None) -> AlertTable:
    key = f"{state}_page"
    raw = request.GET.get(key, "1")
    total = alerts.count()
    pages = max(1, -(-total // PAGE_SIZE))
    number = min(int(raw), pages) if raw.isdigit() and int(raw) > 0 else 1
    offset = (number - 1) * PAGE_SIZE

    def link(target: int) -> str:
        query = request.GET.copy()
        query.pop("part", None)
        query[key] = str(target)
        return "?" + query.urlencode()

    return AlertTable(
        rows=[alert_row(a, (silenced_by or {}).get(a.id, "")) for a in alerts[offset:offset + PAGE_SIZE]],
        total=total,
        page=number,
        pages=pages,
        previous_link=link(number - 1) if number > 1 else "",
        next_link=link(number + 1) if number < pages else "",
    )


@dashboard_page
def alerts_page(request: HttpRequest) -> HttpResponse:
    context = _alerts_context(request)
    if request.GET.get("part") == "tables":
        return render(request, "fragments/alerts_tables.html", context)
    query = request.GET.urlencode()
    context["tables_url"] = f"{reverse('alerts')}?{query + '&' if query else ''}part=tables"
    return page(request, "alerts.html", context, active_nav="alerts")


@dashboard_page
def alert_detail(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = Alert.objects.select_related("rule").filter(pk=alert_id).first()
    if alert is None:
        raise Http404(f"No alert {alert_id}")
    now = timezone.now()
    notifications = list(alert.notifications.select_related("channel").order_by("created_at", "id")[:200])
    chart = incidents.alert_chart(alert, now)
    evidence = incidents.alert_evidence(alert)
    charts_list = [] if chart is None else [{
        "id": "chart-alert", "topic": alert.topic or alert.group,
        "figure": charts.alert_figure(chart.series, chart.metric, chart.since, chart.until, chart.onset,
                                      chart.threshold, chart.resolved),
    }]
    silenced_by = muted_by(active_mutes(now), alert.rule_id, Subject(alert.cluster, alert.group, alert.topic))
    return page(request, "alerts_detail.html", {
        "row": alert_row(alert), "alert": alert, "rule": alert.rule, "notifications": notifications,
        "can_acknowledge": alert.state != AlertState.RESOLVED and alert.acknowledged_at is None,
        "cause_links": incidents.alert_links(alert), "evidence": evidence,
        "example_traces": [(t, links.trace_path(t)) for t in evidence.trace_ids],
        "charts": charts_list, "silenced_by": silenced_by,
        "silence_presets": [("1h", "1 hour"), ("4h", "4 hours"), ("24h", "24 hours"),
                            (UNTIL_RESOLVED, "until resolved")],
        "silence_url": silence_url(alert),
    }, active_nav="alerts")


def silence_url(alert: Alert) -> str:
    """"Silence this subject": the admin's new-silence form for exactly this subject.

    Names are hostile: each is a glob matching only itself, and the query string is
    encoded, so ``billing&rule=&group=*`` silences that group and nothing else."""
    return links.path("admin:monitor_silence_add", query={
        "rule": alert.rule_id,
        "cluster": literal_glob(alert.cluster) if alert.cluster else "*",
        "group": literal_glob(alert.group) if alert.group else "*",
        "topic": literal_glob(alert.topic) if alert.topic else "*",
    })


@require_POST
@dashboard_page
def silence_view(request: HttpRequest, alert_id: int) -> HttpResponse:
    """Silence this alert's rule and subject from the alert page (a preset duration or until
    it resolves, with a reason)."""
    try:
        silence = silence_alert(alert_id, request.POST.get("duration", ""), request.POST.get("reason", ""),
                                by=request.user.get_username(), now=timezone.now())
    except SilenceError as exc:
        if exc.field == "alert" and "there is no alert" in exc.message:
            raise Http404(exc.message) from None
        messages.error(request, f"Not silenced: {exc.field}: {exc.message}")
    else:
        until = "until it resolves" if silence.until_resolved_id else f"until {silence.ends_at:%Y-%m-%d %H:%M} UTC"
        messages.success(request, f"Silenced {until}: notifications are recorded, not sent.")
    return redirect(reverse("alert", args=[alert_id]))


@require_POST
@dashboard_page
def acknowledge_view(request: HttpRequest, alert_id: int) -> HttpResponse:
    note = request.POST.get("note", "")
    try:
        acknowledge(alert_id, by=request.user.get_username(), note=note)
        messages.success(request, "Acknowledged: reminders stop; the resolved message will still be sent.")
    except AcknowledgeError as exc:
        if exc.not_found:
            raise Http404(str(exc)) from None
        messages.error(request, str(exc))
    target = request.POST.get("next") or reverse("alert", args=[alert_id])
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = reverse("alert", args=[alert_id])
    return redirect(target)
