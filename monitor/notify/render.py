"""What notifications say: plain data in, plain data out.

The engine stores a *payload* on each outbox row when the alert changes state::

    {"kind": "firing" | "reminder" | "resolved" | "test",
     "generated_at": ISO time, "muted_by": "" or why it was recorded but not sent,
     "items": [ITEM, ...]}          # several alerts of one rule (or an email digest)

    ITEM = {alert_id, rule_id, rule, severity, metric, unit, op, threshold, threshold_text,
            value, value_text, cluster, group, topic, subject, subject_label, state, started_at, fired_at,
            resolved_at, duration_seconds, no_data_reason, resolved_reason,
            acknowledged_by, acknowledged_at, acknowledgement_note, summary, traces: [{trace_id, url}],
            worst_partitions: [{topic, partition, lag, time_lag_seconds, owner}], group_url, alert_url}

Notifiers turn the payload into a Slack Block Kit message, an email (text + HTML) or a
generic webhook body at delivery time, with the functions below.
"""
from __future__ import annotations

import html
import math
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING


from monitor.alerts import metrics as metric_registry
from monitor import links as site_links
from monitor.humanize import duration as format_duration
from monitor.alerts.rules import RuleSpec
from monitor.choices import NotificationKind, Severity
from monitor.tracelinks import external_trace_url

if TYPE_CHECKING:
    from monitor.models import Alert

PRODUCT = "kafka-monitor"
MAX_ITEMS_IN_MESSAGE = 10
SEVERITY_COLOURS: dict[str, str] = {Severity.CRITICAL: "#d64545", Severity.WARNING: "#d98a00", Severity.INFO: "#5b6b8c"}
RESOLVED_COLOUR = "#1f9d55"
SEVERITY_ORDER: dict[str, int] = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
KIND_WORDS = {
    NotificationKind.FIRING: "FIRING",
    NotificationKind.REMINDER: "STILL FIRING",
    NotificationKind.RESOLVED: "RESOLVED",
    NotificationKind.TEST: "TEST",
}


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


base_url = site_links.base_url
group_path = site_links.group_path
alert_path = site_links.alert_path


def trace_link(trace_id: str) -> str:
    """The trace in the backend named by MONITOR_TRACE_URL_TEMPLATE, else our trace page."""
    return external_trace_url(trace_id) or site_links.absolute(site_links.trace_path(trace_id))


def _metric(name: str) -> metric_registry.Metric | None:
    try:
        return metric_registry.get(name)
    except KeyError:
        return None


def format_value(metric_name: str, value: float | None) -> str:
    metric = _metric(metric_name)
    if metric is not None:
        return metric.format_value(value)
    return "no data" if value is None else f"{value:g}"


def json_value(metric_name: str, value: float | None) -> float | str | None:
    metric = _metric(metric_name)
    if metric is not None:
        return metric.json_value(value)
    return value if value is None or math.isfinite(value) else None


def alert_item(a: Alert, rule: RuleSpec, now: datetime, worst_partitions: list[dict] | None = None) -> dict:
    """The payload entry of one alert, from the Alert row after this evaluation (no queries)."""
    detail = a.detail or {}
    value_text = detail.get("value_text") or format_value(rule.metric, a.value)
    end = a.resolved_at or now
    metric = _metric(rule.metric)
    item = {
        "alert_id": a.id,
        "rule_id": rule.id,
        "rule": rule.name,
        "severity": rule.severity,
        "metric": rule.metric,
        "unit": metric.unit if metric else "",
        "op": rule.op,
        "threshold": json_value(rule.metric, rule.threshold),
        "threshold_text": format_value(rule.metric, rule.threshold),
        "value": json_value(rule.metric, a.value),
        "value_text": value_text,
        "cluster": a.cluster, "group": a.group, "topic": a.topic,
        "subject": a.subject,
        "subject_label": a.subject_label,
        "state": a.state,
        "started_at": iso(a.started_at), "fired_at": iso(a.fired_at), "resolved_at": iso(a.resolved_at),
        "duration_seconds": max(0.0, (end - a.started_at).total_seconds()),
        "no_data_reason": detail.get("no_data_reason", "") if a.no_data else "",
        "resolved_reason": detail.get("resolved_reason", ""),
        "acknowledged_by": a.acknowledged_by, "acknowledged_at": iso(a.acknowledged_at),
        "acknowledgement_note": a.acknowledgement_note,
        "worst_partitions": [
            {"topic": p["topic"], "partition": p["partition"], "lag": p["lag"],
             "time_lag_seconds": p["time_lag_seconds"], "owner": p.get("owner") or ""}
            for p in (worst_partitions or [])
        ],
        "summary": detail.get("summary", ""),
        "traces": [{"trace_id": t, "url": trace_link(t)} for t in detail.get("traces") or []],
        "group_url": base_url() + group_path(a.cluster, a.group) if a.cluster and a.group else "",
        "alert_url": base_url() + alert_path(a.id),
    }
    return item


def payload(kind: str, items: list[dict], muted_by: str = "", now: datetime | None = None) -> dict:
    return {"kind": kind, "generated_at": iso(now or datetime.now(UTC)), "muted_by": muted_by, "items": items}


def test_payload(channel_name: str, now: datetime | None = None) -> dict:
    return {"kind": NotificationKind.TEST, "generated_at": iso(now or datetime.now(UTC)), "muted_by": "",
            "channel": channel_name, "items": []}


# -- text -----------------------------------------------------------------------------------

def where(item: dict) -> str:
    """``group billing, topic payments (cluster prod)`` for whatever the subject has."""
    parts = []
    if item.get("group"):
        parts.append(f"group {item['group']}")
    if item.get("topic"):
        parts.append(f"topic {item['topic']}")
    location = ", ".join(parts)
    if item.get("cluster"):
        return f"{location} (cluster {item['cluster']})" if location else f"cluster {item['cluster']}"
    return location or item.get("subject", "")


def summary_line(item: dict, kind: str) -> str:
    """One line: what is wrong, where, the value, the threshold and for how long."""
    duration = format_duration(item["duration_seconds"])
    condition = f"threshold {item['op']} {item['threshold_text']}"
    if kind == NotificationKind.RESOLVED:
        if item.get("resolved_reason"):
            return f"{where(item)}: resolved without data: {item['resolved_reason']} (last {item['metric']} " \
                   f"{item['value_text']}, {condition}); lasted {duration}"
        return f"{where(item)}: {item['metric']} back to {item['value_text']} ({condition}); lasted {duration}"
    if item.get("no_data_reason"):
        return (f"{where(item)}: NO DATA, {item['no_data_reason']}; last {item['metric']} {item['value_text']} "
                f"({condition}), firing for {duration}")
    return f"{where(item)}: {item['metric']} is {item['value_text']} ({condition}) for {duration}"


def title(payload_: dict) -> str:
    kind = payload_["kind"]
    if kind == NotificationKind.TEST:
        return f"Test notification from {PRODUCT}"
    items = payload_["items"]
    rules = Counter(item["rule"] for item in items)
    word = KIND_WORDS.get(kind, kind.upper())
    if len(rules) == 1:
        rule = next(iter(rules))
        count = f" ({len(items)} subjects)" if len(items) > 1 else ""
        return f"{word}: {rule}{count}"
    return f"{word}: {len(items)} alerts from {len(rules)} rules"


def worst_severity(items: list[dict]) -> str:
    if not items:
        return Severity.INFO
    return max((item["severity"] for item in items), key=lambda s: SEVERITY_ORDER.get(s, 0))


def colour_of(kind: str, items: list[dict]) -> str:
    if kind == NotificationKind.RESOLVED:
        return RESOLVED_COLOUR
    return SEVERITY_COLOURS.get(worst_severity(items), SEVERITY_COLOURS[Severity.INFO])


def fallback_text(payload_: dict) -> str:
    """Plain text naming the rule, group, topic, value and threshold of each alert."""
    if payload_["kind"] == NotificationKind.TEST:
        return f"Test notification from {PRODUCT} for channel {payload_.get('channel', '')}: delivery works."
    items = payload_["items"]
    lines = [f"[{KIND_WORDS.get(payload_['kind'], payload_['kind'])}] "
             + (f"{items[0]['rule']}: " if len(items) == 1 else f"{title(payload_)}\n")
             + (summary_line(items[0], payload_["kind"]) if len(items) == 1 else "")]
    if len(items) > 1:
        shown = items[:MAX_ITEMS_IN_MESSAGE]
        lines += [f"- {item['rule']}: {summary_line(item, payload_['kind'])}" for item in shown]
        if len(items) > len(shown):
            lines.append(f"... and {len(items) - len(shown)} more")
    return "\n".join(line for line in lines if line)


def partition_table(partitions: list[dict]) -> str:
    """A small fixed-width table of the worst partitions."""
    if not partitions:
        return ""
    owned = any(p.get("owner") for p in partitions)
    rows = [("topic/partition", "lag", "time lag") + (("owner",) if owned else ())]
    for p in partitions:
        rows.append((
            f"{p['topic']}/{p['partition']}",
            "unknown" if p["lag"] is None else f"{p['lag']:,}",
            "unknown" if p["time_lag_seconds"] is None else format_duration(p["time_lag_seconds"]),
        ) + ((p.get("owner") or "-",) if owned else ()))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join((f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}"
                       + (f"  {r[3]}" if owned else "")).rstrip() for r in rows)


# -- Slack ----------------------------------------------------------------------------------

def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(payload_: dict) -> dict:
    """Block Kit: a coloured attachment per message; ``text`` is the notification fallback."""
    kind = payload_["kind"]
    items = payload_["items"]
    text = fallback_text(payload_)
    if kind == NotificationKind.TEST:
        return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(text)}}]}
    colour = colour_of(kind, items)
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": title(payload_)[:150], "emoji": True}},
    ]
    shown = items[:MAX_ITEMS_IN_MESSAGE]
    for item in shown:
        line = f"*{_slack_escape(item['severity'])}* · {_slack_escape(summary_line(item, kind))}"
        if item.get("summary"):
            line += f"\n{_slack_escape(item['summary'])}"
        if item.get("traces"):
            line += "\ntraces: " + " ".join(f"<{_slack_escape(t['url'])}|{_slack_escape(t['trace_id'][:16])}>"
                                            for t in item["traces"])
        if item.get("acknowledged_by"):
            line += f"\n_acknowledged by {_slack_escape(item['acknowledged_by'])}_"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": line[:2900]}})
        table = partition_table(item.get("worst_partitions") or []) if kind != NotificationKind.RESOLVED else ""
        if table:
            code = f"```{_slack_escape(table)}```"[:2900]
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": code}})
        links = []
        if item.get("group_url"):
            links.append(f"<{item['group_url']}|Group page>")
        links.append(f"<{item['alert_url']}|Alert{' and acknowledge' if kind != NotificationKind.RESOLVED else ''}>")
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]})
    if len(items) > len(shown):
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"... and {len(items) - len(shown)} more: see {site_links.absolute_url('alerts')}"}]})
    # The fallback text is mrkdwn too: without "<" no name can open a link or a mention
    # (">" stays, so "threshold > 1,000" reads as written).
    return {"text": text.replace("<", "&lt;"), "attachments": [{"color": colour, "blocks": blocks}]}


# -- email ------------------------------------------------------------------------------------

def email_subject(payload_: dict) -> str:
    """``[kafka-monitor] <rule> | <subject> | FIRING critical``: the rule and subject lead, so
    an inbox sorted by subject keeps an incident's firing, reminders and resolved together
    (ASCII separators: no encoded, folded header)."""
    kind = payload_["kind"]
    if kind == NotificationKind.TEST:
        return f"[{PRODUCT}] test notification"
    items = payload_["items"]
    word = KIND_WORDS.get(kind, kind.upper())
    rules = sorted({item["rule"] for item in items})
    severity = worst_severity(items)
    if len(items) == 1:
        item = items[0]
        return f"[{PRODUCT}] {item['rule']} | {item.get('subject_label') or item['subject']} | {word} {severity}"
    if len(rules) == 1:
        return f"[{PRODUCT}] {rules[0]} | {len(items)} subjects | {word} {severity}"
    return f"[{PRODUCT}] digest | {len(items)} alerts from {len(rules)} rules | {word} {severity}"


def email_text(payload_: dict) -> str:
    kind = payload_["kind"]
    if kind == NotificationKind.TEST:
        return fallback_text(payload_) + "\n"
    out = [title(payload_), ""]
    for item in payload_["items"]:
        out.append(f"{item['rule']} ({item['severity']})")
        out.append(f"  {summary_line(item, kind)}")
        resolved = f", resolved {item['resolved_at']}" if item.get("resolved_at") else ""
        if item.get("summary"):
            out.append(f"  {item['summary']}")
        for trace in item.get("traces") or []:
            out.append(f"  trace {trace['trace_id']}: {trace['url']}")
        out.append(f"  since {item['started_at']}{resolved}")
        if item.get("acknowledged_by"):
            note = item.get("acknowledgement_note") or ""
            out.append(f"  acknowledged by {item['acknowledged_by']}" + (f": {note}" if note else ""))
        table = partition_table(item.get("worst_partitions") or []) if kind != NotificationKind.RESOLVED else ""
        if table:
            out.extend("    " + line for line in table.splitlines())
        if item.get("group_url"):
            out.append(f"  group: {item['group_url']}")
        out.append(f"  alert: {item['alert_url']}")
        out.append("")
    return "\n".join(out)


def email_html(payload_: dict) -> str:
    e = html.escape
    kind = payload_["kind"]
    if kind == NotificationKind.TEST:
        return f"<p>{e(fallback_text(payload_))}</p>"
    colour = colour_of(kind, payload_["items"])
    parts = ['<div style="font-family:sans-serif;font-size:14px">',
             f'<h2 style="border-left:6px solid {colour};padding-left:8px">{e(title(payload_))}</h2>']
    for item in payload_["items"]:
        parts.append(f'<h3 style="margin-bottom:4px">{e(item["rule"])} <small>({e(item["severity"])})</small></h3>')
        parts.append(f"<p>{e(summary_line(item, kind))}<br><small>since {e(item['started_at'] or '')}"
                     + (f", resolved {e(item['resolved_at'])}" if item.get("resolved_at") else "") + "</small></p>")
        if item.get("summary"):
            parts.append(f"<p>{e(item['summary'])}</p>")
        if item.get("traces"):
            parts.append("<p>Traces: " + " ".join(f'<a href="{e(t["url"])}"><code>{e(t["trace_id"])}</code></a>'
                                                 for t in item["traces"]) + "</p>")
        if item.get("acknowledged_by"):
            note = e(item.get("acknowledgement_note") or "")
            parts.append(f"<p><em>Acknowledged by {e(item['acknowledged_by'])}</em> {note}</p>")
        partitions = item.get("worst_partitions") or []
        if partitions and kind != NotificationKind.RESOLVED:
            parts.append('<table cellpadding="4" style="border-collapse:collapse">'
                         "<tr><th align=left>topic/partition</th><th align=right>lag</th>"
                         "<th align=right>time lag</th><th align=left>owner</th></tr>")
            for p in partitions:
                lag_text = "unknown" if p["lag"] is None else f"{p['lag']:,}"
                time_text = "unknown" if p["time_lag_seconds"] is None else format_duration(p["time_lag_seconds"])
                parts.append(f"<tr><td>{e(p['topic'])}/{p['partition']}</td><td align=right>{e(lag_text)}</td>"
                             f"<td align=right>{e(time_text)}</td><td>{e(p.get('owner') or '')}</td></tr>")
            parts.append("</table>")
        links = []
        if item.get("group_url"):
            links.append(f'<a href="{e(item["group_url"])}">Group page</a>')
        label = "Alert and acknowledge" if kind != NotificationKind.RESOLVED else "Alert"
        links.append(f'<a href="{e(item["alert_url"])}">{label}</a>')
        parts.append(f"<p>{' · '.join(links)}</p>")
    parts.append("</div>")
    return "\n".join(parts)


def email_thread_id(payload_: dict) -> str | None:
    """A Message-ID every message about the same single alert refers to, so mail clients
    thread an incident's firing, reminders and resolved together."""
    items = payload_["items"]
    if len(items) != 1:
        return None
    return f"<alert-{items[0]['alert_id']}@{PRODUCT}>"


def email_message_id(idempotency_key: str) -> str:
    """The Message-ID of one notification, the same on every attempt."""
    return f"<notification-{idempotency_key}@{PRODUCT}>"


# -- generic webhook ------------------------------------------------------------------------------

def webhook_body(payload_: dict) -> dict:
    return {
        "version": 1,
        "source": PRODUCT,
        "kind": payload_["kind"],
        "title": title(payload_),
        "text": fallback_text(payload_),
        "generated_at": payload_.get("generated_at"),
        "alerts": payload_["items"],
    }


def parse_time(text: str | None) -> datetime | None:
    return _parse_iso(text)


def json_number(value: float | None) -> float | None:
    """A float for JSON: null when missing or infinite (JSON has no Infinity)."""
    return value if value is not None and math.isfinite(value) else None
