"""Template helpers of the flow area.

``{% load flow_tags %}{% range_picker %}`` renders the global time-range picker for the
current request (any page may include it); ``{{ 0.053|share }}`` -> ``5.3 %``.
"""
from __future__ import annotations

from datetime import UTC, datetime

from django import template
from django.utils import timezone

from monitor.timerange import CUSTOM, PRESETS, TimeRangeError, parse_time_range
from monitor.tracelinks import external_trace_url

register = template.Library()
_RANGE_PARAMS = {"range", "since", "until", "part"}


def _local_input(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


@register.inclusion_tag("fragments/range_picker.html", takes_context=True)
def range_picker(context: template.Context) -> dict[str, object]:
    request = context.get("request")
    params = request.GET if request is not None else {}
    try:
        current = parse_time_range(params, timezone.now())
    except TimeRangeError:
        current = parse_time_range({}, timezone.now())
    keep = [(key, value) for key in params if key not in _RANGE_PARAMS for value in params.getlist(key)]  # type: ignore[union-attr]
    presets = list(PRESETS.items())
    if current.key not in PRESETS and current.key != CUSTOM:
        presets.append((current.key, current.label))
    return {
        "presets": presets,
        "current": current,
        "is_custom": current.key == CUSTOM,
        "since_value": _local_input(current.since),
        "until_value": _local_input(current.until),
        "keep": keep,
        "action": request.path if request is not None else "",
    }


@register.filter
def share(value: float | None) -> str:
    if value is None:
        return "—"
    percent = value * 100
    return f"{percent:.1f} %" if percent < 10 else f"{percent:.0f} %"


@register.filter
def rate(value: float | None) -> str:
    """Events per second with enough digits to tell a trickle from nothing: ``0.0042``."""
    if value is None:
        return "—"
    if value == 0:
        return "0"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


@register.inclusion_tag("fragments/trace_backend_link.html")
def trace_backend_link(trace_id: str | None, label: str = "↗") -> dict[str, object]:
    """A link to the trace in the external backend (MONITOR_TRACE_URL_TEMPLATE); nothing
    when unset. Usage: ``{% trace_backend_link event.trace_id %}``."""
    return {"url": external_trace_url(trace_id), "trace_id": trace_id or "", "label": label}
