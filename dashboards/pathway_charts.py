"""Plotly figures of pathways and throughput (pure: data in, figure dict out). Names are
hostile: every string handed to Plotly is escaped."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

from dashboards.flow_charts import LIGHT, _base_layout

Figure = dict[str, Any]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def latency_figure(minutes: Sequence[tuple[datetime, int, float | None, float | None, float | None]],
                   since: datetime, until: datetime, theme: Mapping[str, str] = LIGHT, height: int = 300) -> Figure:
    """p50/p95/p99 of latency from the origin per minute (lines), traces per minute (bars)."""
    x = [_iso(m[0]) for m in minutes]
    data: list[dict[str, Any]] = [{
        "type": "bar", "name": "traces per minute", "x": x, "y": [m[1] for m in minutes], "yaxis": "y2",
        "marker": {"color": theme["muted"]}, "opacity": 0.4, "meta": {"role": "muted"},
        "hovertemplate": "%{x|%H:%M} UTC: %{y} traces<extra></extra>",
    }]
    for index, (name, role) in enumerate((("p50", "ok"), ("p95", "warning"), ("p99", "critical")), start=2):
        data.append({
            "type": "scatter", "mode": "lines+markers", "name": name, "x": x, "y": [m[index] for m in minutes],
            "line": {"color": theme[role], "width": 2}, "marker": {"size": 4, "color": theme[role]},
            "meta": {"role": role}, "connectgaps": False,
            "hovertemplate": f"%{{x|%H:%M}} UTC: {name} %{{y:.3f}} s<extra></extra>",
        })
    layout = _base_layout(theme, height=height)
    layout.update({
        "showlegend": True, "legend": {"orientation": "h", "y": -0.2},
        "margin": {"l": 55, "r": 55, "t": 10, "b": 40},
        "xaxis": {"type": "date", "range": [_iso(since), _iso(until)], "gridcolor": theme["grid"]},
        "yaxis": {"title": {"text": "seconds from the origin"}, "rangemode": "tozero", "gridcolor": theme["grid"]},
        "yaxis2": {"title": {"text": "traces"}, "overlaying": "y", "side": "right", "rangemode": "tozero",
                   "showgrid": False},
    })
    return {"data": data, "layout": layout}


def throughput_figure(series: Mapping[str, Mapping[datetime, float]], baseline: Mapping[datetime, float],
                      since: datetime, until: datetime, theme: Mapping[str, str] = LIGHT, height: int = 260) -> Figure:
    """Messages per second per minute, one line per series, the baseline dashed."""
    data: list[dict[str, Any]] = []
    for index, (name, minutes) in enumerate(series.items()):
        ordered = sorted(minutes.items())
        role = "accent" if index == 0 else "ok"  # produced first, then each group's consumption
        data.append({
            "type": "scatter", "mode": "lines", "name": escape(name), "x": [_iso(m) for m, _ in ordered],
            "y": [v / 60 for _, v in ordered], "line": {"color": theme[role], "width": 2 if index == 0 else 1,
                                                        "shape": "hv"},
            "meta": {"role": role},
        })
    if baseline:
        ordered = sorted(baseline.items())
        data.append({
            "type": "scatter", "mode": "lines", "name": "usual (same time last week)",
            "x": [_iso(m) for m, _ in ordered], "y": [v / 60 for _, v in ordered],
            "line": {"color": theme["muted"], "width": 1, "dash": "dash", "shape": "hv"}, "meta": {"role": "muted"},
        })
    layout = _base_layout(theme, height=height)
    layout.update({
        "showlegend": True, "legend": {"orientation": "h", "y": -0.25},
        "margin": {"l": 55, "r": 10, "t": 10, "b": 40},
        "xaxis": {"type": "date", "range": [_iso(since), _iso(until)], "gridcolor": theme["grid"]},
        "yaxis": {"title": {"text": "messages/s"}, "rangemode": "tozero", "gridcolor": theme["grid"]},
    })
    return {"data": data, "layout": layout}
