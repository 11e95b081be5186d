"""Pure chart builders: plain data in, a Plotly figure dict (or SVG path) out.

No database, no request: the views fetch with :mod:`monitor.lag.queries` and hand the
results here; the browser draws the dicts with the vendored partial Plotly bundle (scatter and bar).
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone as dt_timezone
from typing import Protocol

from monitor import humanize
from monitor.choices import GroupEventKind, SeriesMetric

Value = int | float | None
Point = tuple[datetime, Value]


class SeriesLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def points(self) -> Sequence[Point]: ...


@dataclass(frozen=True)
class ChartEvent:
    """A lifecycle event to mark on a chart; ``topic`` empty means the whole group."""

    at: datetime
    kind: str
    label: str
    detail: str = ""
    topic: str = ""


EVENT_COLORS: dict[str, str] = {
    GroupEventKind.GROUP_CREATED: "#1f9d55",
    GroupEventKind.GROUP_DELETED: "#6b7385",
    GroupEventKind.TOPIC_ADDED: "#2f6fde",
    GroupEventKind.TOPIC_DROPPED: "#6b7385",
    GroupEventKind.PARTITIONS_ADDED: "#2f6fde",
    GroupEventKind.OFFSET_RESET: "#d98a00",
    GroupEventKind.DATA_LOSS: "#d64545",
    "alert": "#d64545",  # alert onsets and resolutions (monitor.alerts.incidents.group_markers)
    "finding": "#8e44ad",  # detector findings about the group
    "schema": "#0f8b8d",  # first publication of a schema version on the group's topics
}
AXIS_TITLES = {SeriesMetric.LAG: "messages behind", SeriesMetric.TIME_LAG_SECONDS: "seconds behind"}


def plot_text(text: str) -> str:
    """A string for a Plotly name, legend, hover text, tick or annotation.

    Plotly renders a subset of HTML in those (``<a href>``, ``<b>``, ``<br>``) and decodes
    entities, so escaping shows a hostile group name as the text it is, never as a link.
    """
    return html.escape(text, quote=False)


def plot_time(value: datetime) -> str:
    """Plotly ignores time zones in date strings, so send UTC wall time and label the axis."""
    return value.astimezone(dt_timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _hover_text(value: Value, metric: str) -> str:
    if value is None:
        return "unknown"
    if metric == SeriesMetric.TIME_LAG_SECONDS:
        return humanize.duration(value)
    return f"{humanize.count(value)} messages"


def _line_trace(series: SeriesLike, metric: str, width: float, dash: str = "solid") -> dict[str, object]:
    return {
        "type": "scatter",
        "mode": "lines",
        "name": plot_text(series.name),
        "x": [plot_time(ts) for ts, _ in series.points],
        "y": [value for _, value in series.points],
        "customdata": [_hover_text(value, metric) for _, value in series.points],
        "hovertemplate": "%{x|%Y-%m-%d %H:%M:%S} UTC<br>%{customdata}<extra>%{fullData.name}</extra>",
        "connectgaps": False,  # unknown lag is a gap, never a dip to 0
        "line": {"width": width, "dash": dash},
    }


def _event_layers(events: Sequence[ChartEvent], topic: str | None) -> tuple[list[dict], dict | None]:
    """Dotted vertical lines plus a hoverable marker per event (on a hidden 0..1 axis)."""
    relevant = [e for e in events if topic is None or not e.topic or e.topic == topic]
    if not relevant:
        return [], None
    shapes = [
        {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": plot_time(e.at),
            "x1": plot_time(e.at),
            "y0": 0,
            "y1": 1,
            "line": {"color": EVENT_COLORS.get(e.kind, "#6b7385"), "width": 1, "dash": "dot"},
        }
        for e in relevant
    ]
    markers = {
        "type": "scatter",
        "mode": "markers",
        "name": "events, alerts, findings",
        "x": [plot_time(e.at) for e in relevant],
        "y": [1.0] * len(relevant),
        "yaxis": "y2",
        "text": [plot_text(f"{e.label}{': ' + e.detail if e.detail else ''}") for e in relevant],
        "hovertemplate": "%{text}<extra></extra>",
        "marker": {"symbol": "triangle-down", "size": 11, "color": [EVENT_COLORS.get(e.kind, "#6b7385") for e in relevant]},
    }
    return shapes, markers


def lag_figure(
    series: Sequence[SeriesLike],
    metric: str,
    since: datetime,
    until: datetime,
    events: Sequence[ChartEvent] = (),
    topic: str | None = None,
    breakdown: Sequence[SeriesLike] = (),
) -> dict[str, object]:
    """A lag chart: one line per series (bold), optional per-partition lines (thin),
    and the lifecycle events of ``topic`` (or all events when ``topic`` is None)."""
    metric = SeriesMetric(metric)
    data: list[dict[str, object]] = [_line_trace(s, metric, 2.5) for s in series]
    data += [_line_trace(s, metric, 1, "dot") for s in breakdown]
    shapes, markers = _event_layers(events, topic)
    if markers:
        data.append(markers)
    layout: dict[str, object] = {
        "height": 320,
        "margin": {"l": 70, "r": 20, "t": 10, "b": 40},
        "showlegend": True,
        "legend": {"orientation": "h", "y": -0.2},
        "hovermode": "closest",
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        # Fitted to the data (autorange) rather than to the whole range asked for, so three
        # minutes of samples do not sit in the right 3 % of a one-hour axis; constant across
        # refreshes, which with ``uirevision`` keeps a user's drag-zoom over the 30 s refresh.
        "xaxis": {"type": "date", "autorange": True, "title": {"text": "UTC"}},
        "uirevision": f"lag:{topic or ''}:{metric}",
        "yaxis": {
            "title": {"text": AXIS_TITLES[metric]},
            "rangemode": "tozero",
            "tickformat": ",d" if metric == SeriesMetric.LAG else "",
        },
        "yaxis2": {"overlaying": "y", "range": [0, 1.05], "visible": False, "fixedrange": True},
        "shapes": shapes,
    }
    if not any(s.points for s in series) and not any(s.points for s in breakdown):
        layout["xaxis"] = {"type": "date", "range": [plot_time(since), plot_time(until)], "title": {"text": "UTC"}}
        layout["annotations"] = [
            {"text": "No samples in this range", "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
             "showarrow": False, "font": {"size": 14}}
        ]
    return {"data": data, "layout": layout}


@dataclass(frozen=True)
class Sparkline:
    """A row's sparkline: the path, its peak (labelled next to it) and whether it stayed
    below the floor (drawn as a flat grey line: nothing to see)."""

    path: str
    peak: float | None
    quiet: bool


def sparkline(values: Sequence[Value], floor: float, width: int = 120, height: int = 24) -> Sparkline:
    """Every row on one scale: 0 to the larger of its peak and ``floor`` (the lowest lag
    threshold), so a group at lag 0-1 draws a flat line, not a climb as steep as a real
    spike."""
    known = [v for v in values if v is not None]
    peak = max(known) if known else None
    quiet = peak is None or peak < floor
    return Sparkline(path=sparkline_path(values, width, height, top=max(peak or 0, floor)), peak=peak, quiet=quiet)


def sparkline_path(values: Sequence[Value], width: int = 120, height: int = 24, top: float | None = None) -> str:
    """An SVG path for a tiny inline chart; unknown values break the line. Empty when
    fewer than two values are known (nothing worth drawing). ``top`` is the value at the
    top of the box (default: the largest value)."""
    known = [v for v in values if v is not None]
    if len(known) < 2 or len(values) < 2:
        return ""
    top = max(max(known), 0) if top is None else top
    step = width / (len(values) - 1)
    usable = height - 2  # keep the stroke inside the box

    def y(value: float) -> float:
        return height - 1 - (value / top * usable if top > 0 else 0)

    commands: list[str] = []
    pen_down = False
    for index, value in enumerate(values):
        if value is None:
            pen_down = False
            continue
        commands.append(f"{'L' if pen_down else 'M'}{index * step:.1f},{y(value):.1f}")
        pen_down = True
    return "".join(commands)


def alert_figure(
    series: Sequence[SeriesLike],
    metric: str,
    since: datetime,
    until: datetime,
    onset: datetime,
    threshold: float | None,
    resolved: datetime | None = None,
) -> dict[str, object]:
    """The lag chart of an alert's subject: the threshold as a dashed red line (when the
    rule's metric is the plotted one), the onset (condition began) and the resolution as
    vertical lines."""
    figure = lag_figure(series, metric, since, until)
    layout = figure["layout"]
    assert isinstance(layout, dict)
    shapes: list[dict[str, object]] = list(layout.get("shapes") or [])
    annotations: list[dict[str, object]] = list(layout.get("annotations") or [])
    if threshold is not None:
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": threshold,
                       "y1": threshold, "line": {"color": "#d64545", "width": 1.5, "dash": "dash"}})
        annotations.append({"text": f"threshold {humanize.count(threshold)}", "xref": "paper", "x": 0,
                            "xanchor": "left", "yref": "y", "y": threshold, "yanchor": "bottom",
                            "showarrow": False, "font": {"size": 11, "color": "#d64545"}})
    for at, label, color in ((onset, "onset", "#d98a00"), (resolved, "resolved", "#1f9d55")):
        if at is None:
            continue
        shapes.append({"type": "line", "xref": "x", "x0": plot_time(at), "x1": plot_time(at), "yref": "paper",
                       "y0": 0, "y1": 1, "line": {"color": color, "width": 1.5}})
        annotations.append({"text": f"{label} {plot_time(at)[11:19]} UTC", "xref": "x", "x": plot_time(at),
                            "yref": "paper", "y": 1, "yanchor": "bottom", "showarrow": False,
                            "font": {"size": 11, "color": color}})
    layout["shapes"] = shapes
    layout["annotations"] = annotations
    layout["margin"] = {"l": 70, "r": 20, "t": 24, "b": 40}
    if threshold is not None:
        # The threshold stays in view even when the lag is far below it.
        known = [v for s in series for _, v in s.points if v is not None]
        yaxis = layout["yaxis"]
        assert isinstance(yaxis, dict)
        yaxis["range"] = [0, max([threshold * 1.2, *[v * 1.1 for v in known]])]
    return figure
