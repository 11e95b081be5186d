"""Pure functions: flow graph, trace timeline and rate series in, Plotly figure dicts out.

Colours are named by role ("ok", "critical", "muted", ...) in each trace's ``meta`` so
the browser can re-colour a figure from the page's CSS variables when the theme changes
(``static/js/flow.js``); the figure also carries the light palette so it renders as is.
"""
from __future__ import annotations

import math
from html import escape
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from dashboards.flow_layout import Layout
from monitor.flow.graph import FlowEdge, FlowGraph, FlowNode
from monitor.events.timeline import Step, Timeline
from monitor.choices import FlowEdgeKind, FlowNodeKind, Health, Stage, StepKind

Figure = dict[str, Any]

LIGHT: dict[str, str] = {
    "ok": "#1f9d55", "warning": "#d98a00", "critical": "#d64545", "unknown": "#5b6b8c",
    "fg": "#1d2330", "muted": "#6b7385", "bg": "#ffffff", "grid": "#dde1e8", "accent": "#2f6fde",
}
DARK: dict[str, str] = {
    "ok": "#3ecf7e", "warning": "#f0ad3a", "critical": "#ff6b6b", "unknown": "#9fb0d0",
    "fg": "#e3e7ef", "muted": "#98a1b3", "bg": "#1b2029", "grid": "#2c3340", "accent": "#6ea0ff",
}
HEALTH_ROLE = {Health.OK: "ok", Health.WARNING: "warning", Health.CRITICAL: "critical", Health.UNKNOWN: "unknown"}
# display class -> (role, pattern, pattern role, legend name); a pattern with a role
# draws over the bar's colour, one without replaces it (an outline of stripes or dots).
STEP_STYLE: dict[str, tuple[str, str, str, str]] = {
    StepKind.OUTBOX: ("muted", "-", "", "Waiting in the outbox"),
    StepKind.QUEUE_WAIT: ("muted", "", "", "Waiting in the topic"),
    StepKind.PROCESS: ("ok", "", "", "Processing"),
    StepKind.FAILED: ("critical", "", "", "Failed"),
    StepKind.DEAD_LETTERED: ("critical", "x", "bg", "Dead-lettered"),
    "duplicate": ("warning", "", "", "Duplicate delivery"),
    StepKind.GAP: ("muted", ".", "", "Nothing reported"),
    StepKind.MISSING: ("critical", "/", "", "Never consumed"),
}
MARK_STYLE: dict[str, tuple[str, str, str]] = {  # instants: (role, symbol, legend name)
    StepKind.OUTBOX: ("unknown", "square-open", "Written to the outbox"),
    StepKind.PUBLISH: ("accent", "diamond", "Published"),
    "republish": ("warning", "diamond-open", "Published again"),
    StepKind.CONSUMED: ("unknown", "circle-open", "Consumed, no outcome"),
    StepKind.PROCESS: ("ok", "circle", "Processed"),
    StepKind.FAILED: ("critical", "x", "Failed"),
    StepKind.DEAD_LETTERED: ("critical", "x-thin-open", "Dead-lettered"),
    "duplicate": ("warning", "circle", "Duplicate delivery"),
}
STAGE_ROLE = {Stage.OUTBOX: "unknown", Stage.PUBLISHED: "accent", Stage.CONSUMED: "unknown", Stage.PROCESSED: "ok",
              Stage.FAILED: "warning", Stage.DEAD_LETTERED: "critical"}


def _base_layout(theme: Mapping[str, str], height: int) -> dict[str, Any]:
    return {
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
        "paper_bgcolor": theme["bg"],
        "plot_bgcolor": theme["bg"],
        "font": {"color": theme["fg"], "size": 12},
        "hoverlabel": {"align": "left"},
        "meta": {"roles": {"paper_bgcolor": "bg", "plot_bgcolor": "bg", "font.color": "fg"}},
    }


def _fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _fmt_count(value: int | None) -> str:
    return "unknown" if value is None else f"{value:,}"


def edge_hover(edge: FlowEdge, graph: FlowGraph) -> str:
    source, target = escape(graph.nodes[edge.source].name), escape(graph.nodes[edge.target].name)
    lines = [f"<b>{source} → {target}</b>"]
    if edge.consumer_group:
        lines.append(f"group: {escape(edge.consumer_group)}")
    lines.append(f"events: {edge.events:,} ({edge.rate_per_second:.2f}/s)")
    lines.append(f"failed: {edge.failed:,} ({edge.failed_share:.1%})")
    if edge.kind == FlowEdgeKind.CONSUME:
        lines.append(f"p95 publish→consume: {_fmt_seconds(edge.p95_latency_seconds)}")
        if edge.consumer_group:
            lines.append(f"lag: {_fmt_count(edge.lag)}" + (f" ({escape(edge.lag_status)})" if edge.lag_status else ""))
    lines.append(f"health: {edge.health}" + (f" – {escape('; '.join(edge.reasons))}" if edge.reasons else ""))
    lines.append("<i>click for example traces</i>")
    return "<br>".join(lines)


def node_hover(node: FlowNode) -> str:
    kind = "service" if node.kind == FlowNodeKind.SERVICE else "topic"
    lines = [f"<b>{escape(node.name)}</b> ({kind}{', hub' if node.hub else ''})",
             f"in: {node.events_in:,} · out: {node.events_out:,}"]
    if node.failed:
        lines.append(f"failed: {node.failed:,}")
    lines.append(f"health: {node.health}")
    lines.append(f"<i>click for the {kind} page</i>")
    return "<br>".join(lines)


def _width(events: int, busiest: int) -> float:
    """Edge width 1..4 px, logarithmic so one busy edge does not dwarf the rest."""
    if events <= 0 or busiest <= 0:
        return 1.0
    return round(1.0 + 3.0 * math.log1p(events) / math.log1p(busiest), 1)


def _point_at(points: Sequence[tuple[float, float]], fraction: float) -> tuple[float, float]:
    """The point ``fraction`` of the way along a polyline (by length)."""
    lengths = [math.dist(a, b) for a, b in zip(points, points[1:])]
    total = sum(lengths)
    if total == 0:
        return points[0]
    left = fraction * total
    for (a, b), length in zip(zip(points, points[1:]), lengths):
        if left <= length and length > 0:
            share = left / length
            return (a[0] + (b[0] - a[0]) * share, a[1] + (b[1] - a[1]) * share)
        left -= length
    return points[-1]


HIT_STEP = 0.08  # layout units between the invisible hover points along an edge
HIT_MAX = 10  # at most this many per edge, so a page of a large graph stays small (each carries the hover text)
ARROW_FRACTIONS = (0.5, 0.38, 0.62)  # where an edge's arrow sits: spread so crossing edges' arrows part


def _hit_points(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points along an edge, clear of its end nodes, close enough that the whole edge hovers."""
    total = sum(math.dist(a, b) for a, b in zip(points, points[1:]))
    count = min(HIT_MAX, max(3, int(total / HIT_STEP)))
    return [_point_at(points, 0.1 + 0.8 * i / (count - 1)) for i in range(count)]


def _midpoint(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    middle = (len(points) - 1) / 2
    low, high = points[math.floor(middle)], points[math.ceil(middle)]
    return ((low[0] + high[0]) / 2, (low[1] + high[1]) / 2)


def flow_figure(
    graph: FlowGraph,
    layout: Layout,
    node_url: Callable[[FlowNode], str],
    edge_url: Callable[[FlowEdge], str],
    theme: Mapping[str, str] = LIGHT,
) -> Figure:
    """Edges as lines coloured by health (one trace per colour and width), a clickable
    arrow at each edge's middle carrying the hover details, nodes on top."""
    data: list[dict[str, Any]] = []
    busiest = max((e.events for e in graph.edges), default=0)
    lines: dict[tuple[str, float, bool], tuple[list, list]] = defaultdict(lambda: ([], []))
    arrows: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    # The whole length of every edge hovers and clicks (invisible points along it); the
    # hovered edge's path is drawn over the rest by flow.js from ``meta.paths``.
    hits: dict[str, list] = defaultdict(list)
    paths: list[tuple[list[float], list[float]]] = []
    # Parallel edges (one per consumer group) share their line; their arrows fan out.
    siblings: dict[tuple[str, str], int] = defaultdict(int)
    for edge in graph.edges:
        key = (edge.source, edge.target)
        points = layout.edge_points.get(key)
        if not points:
            continue
        back = key in layout.reversed_edges  # runs against the flow direction: drawn dotted
        xs, ys = lines[(edge.health, _width(edge.events, busiest), back)]
        xs.extend([p[0] for p in points] + [None])
        ys.extend([p[1] for p in points] + [None])
        offset = siblings[key]
        siblings[key] += 1
        x, y = _point_at(points, ARROW_FRACTIONS[len(paths) % len(ARROW_FRACTIONS)])
        for hx, hy in _hit_points(points):
            hits["x"].append(round(hx, 3))
            hits["y"].append(round(hy - 0.2 * offset, 3))
            hits["text"].append(edge_hover(edge, graph))
            hits["customdata"].append(edge_url(edge))
            hits["edge"].append(len(paths))
        paths.append(([round(p[0], 3) for p in points], [round(p[1] - 0.2 * offset, 3) for p in points]))
        marks = arrows[edge.health]
        marks["x"].append(x)
        marks["y"].append(y - 0.2 * offset)
        marks["symbol"].append("triangle-left" if key in layout.reversed_edges else "triangle-right")
        marks["text"].append(edge_hover(edge, graph))
        marks["customdata"].append(edge_url(edge))
    for (health, width, back), (xs, ys) in sorted(lines.items()):
        role = HEALTH_ROLE[Health(health)]
        data.append({
            "type": "scatter", "mode": "lines", "x": xs, "y": ys, "hoverinfo": "skip", "showlegend": False,
            "line": {"color": theme[role], "width": width, "dash": "dot" if back else "solid"}, "opacity": 0.7,
            "meta": {"role": role, "part": "edge", "back": back},
        })
    data.append({  # the hovered edge, drawn by flow.js
        "type": "scatter", "mode": "lines", "x": [], "y": [], "hoverinfo": "skip", "showlegend": False,
        "line": {"color": theme["fg"], "width": 4}, "opacity": 0.55,
        "meta": {"role": "fg", "part": "edge-highlight"},
    })
    if hits:
        data.append({
            "type": "scatter", "mode": "markers", "x": hits["x"], "y": hits["y"], "showlegend": False,
            "hovertext": hits["text"], "hoverinfo": "text", "customdata": hits["customdata"],
            "marker": {"size": 14, "opacity": 0, "color": theme["fg"]},
            "meta": {"role": "fg", "part": "edge-hit", "edge": hits["edge"], "paths": paths},
        })
    for health, marks in sorted(arrows.items()):
        role = HEALTH_ROLE[Health(health)]
        data.append({
            "type": "scatter", "mode": "markers", "x": marks["x"], "y": marks["y"], "showlegend": False,
            "hovertext": marks["text"], "hoverinfo": "text", "customdata": marks["customdata"],
            "marker": {"symbol": marks["symbol"], "size": 9, "color": theme[role]},
            "meta": {"role": role, "part": "edge-arrow"},
        })
    groups: dict[tuple[str, str], list[FlowNode]] = defaultdict(list)
    for node in graph.nodes.values():
        if node.id in layout.positions:
            groups[(node.kind, node.health)].append(node)
    busiest_node = max((max(n.events_in, n.events_out) for n in graph.nodes.values()), default=0)
    for (kind, health), nodes in sorted(groups.items()):
        role = HEALTH_ROLE[Health(health)]
        is_service = kind == FlowNodeKind.SERVICE
        data.append({
            "type": "scatter", "mode": "markers+text", "name": f"{kind} {health}", "showlegend": False,
            "x": [layout.positions[n.id][0] for n in nodes],
            "y": [layout.positions[n.id][1] for n in nodes],
            "text": [escape(n.name) for n in nodes],
            "textposition": "top center" if is_service else "bottom center",
            "textfont": {"color": theme["fg"], "size": 12 if is_service else 11},
            "hovertext": [node_hover(n) for n in nodes], "hoverinfo": "text",
            "customdata": [node_url(n) for n in nodes],
            "marker": {
                "symbol": "circle" if is_service else "square",
                "size": [round(10 + 3 * _width(max(n.events_in, n.events_out), busiest_node)) if is_service else 11
                         for n in nodes],
                "color": theme[role],
                "line": {"width": 2 if is_service else 1, "color": theme["bg"]},
            },
            "meta": {"role": role, "part": "node", "kind": kind, "textrole": "fg", "linerole": "bg"},
        })
    # About 56 px between two nodes of a layer and 150 px between layers keep labels
    # apart; a graph deeper than a laptop screen is wide scrolls sideways.
    figure_layout = _base_layout(theme, height=max(360, round(56 * layout.height) + 110))
    if len(layout.layers) > 8:
        figure_layout["width"] = 150 * len(layout.layers) + 100
        figure_layout["autosize"] = False
    figure_layout.update({
        "showlegend": False,
        "hovermode": "closest",
        "dragmode": "pan",
        "uirevision": "flow",
        "xaxis": {"visible": False, "fixedrange": False},
        "yaxis": {"visible": False, "fixedrange": False},
    })
    return {"data": data, "layout": figure_layout}


def _step_hover(step: Step, origin: datetime) -> str:
    offset = (step.start - origin).total_seconds()
    lines = [f"<b>{STEP_LABELS.get(step.kind, step.kind)}</b>" + (" · duplicate" if step.duplicate else ""),
             f"{escape(step.event_type)} {escape(step.event_id)}"]
    if step.topic:
        where = escape(step.topic) + (f" [{step.partition}]" if step.partition is not None else "")
        where += f" @{step.offset}" if step.offset is not None else ""
        lines.append(f"topic: {where}")
    if step.consumer_group:
        lines.append(f"group: {escape(step.consumer_group)}")
    lines.append(f"at +{_fmt_seconds(offset)}, took {_fmt_seconds(step.duration_seconds)}")
    if step.slowest:
        lines.append("<b>slowest step</b>")
    if step.detail:
        lines.append(escape(step.detail))
    return "<br>".join(lines)


STEP_LABELS = {kind.value: kind.label for kind in StepKind}


def timeline_figure(timeline: Timeline, theme: Mapping[str, str] = LIGHT) -> Figure:
    """A Gantt chart: one row per service (and consumer group), x in seconds since the
    first event; bars for steps that take time, marks for instants, the slowest step
    outlined and labelled."""
    origin = timeline.start
    bars: dict[str, list[Step]] = defaultdict(list)
    marks: dict[str, list[Step]] = defaultdict(list)
    for step in timeline.steps:
        if step.kind == StepKind.PUBLISH:
            marks["republish" if step.duplicate else StepKind.PUBLISH].append(step)
        elif step.duration_seconds > 0 or step.kind in (StepKind.GAP, StepKind.MISSING):
            bars["duplicate" if step.duplicate and step.kind == StepKind.PROCESS else step.kind].append(step)
        else:
            marks["duplicate" if step.duplicate else step.kind].append(step)
    data: list[dict[str, Any]] = []
    # Keep the legend short: a bar that is too thin to see still gets its own mark.
    minimum_width = max(timeline.duration_seconds, 1e-3) / 400
    for display in STEP_STYLE:
        steps = bars.get(display)
        if not steps:
            continue
        role, pattern, pattern_role, name = STEP_STYLE[display]
        marker: dict[str, Any] = {
            "color": theme[role],
            "line": {"color": [theme["fg"] if s.slowest else theme[role] for s in steps],
                     "width": [3 if s.slowest else 0.5 for s in steps]},
        }
        if pattern:
            marker["pattern"] = {"shape": pattern, "fgcolor": theme[pattern_role or role],
                                 "fillmode": "overlay" if pattern_role else "replace", "solidity": 0.3}
        data.append({
            "type": "bar", "orientation": "h", "name": name,
            "y": [escape(s.row) for s in steps],
            "base": [(s.start - origin).total_seconds() for s in steps],
            "x": [max(s.duration_seconds, minimum_width) for s in steps],
            "hovertext": [_step_hover(s, origin) for s in steps], "hoverinfo": "text",
            "customdata": [s.event_id for s in steps],
            "marker": marker, "width": 0.5,
            "meta": {"role": role, "part": "step", "kind": display, "patternrole": pattern_role or role},
        })
    for display in MARK_STYLE:
        steps = marks.get(display)
        if not steps:
            continue
        role, symbol, name = MARK_STYLE[display]
        data.append({
            "type": "scatter", "mode": "markers", "name": name,
            "y": [escape(s.row) for s in steps],
            "x": [(s.start - origin).total_seconds() for s in steps],
            "hovertext": [_step_hover(s, origin) for s in steps], "hoverinfo": "text",
            "customdata": [s.event_id for s in steps],
            "marker": {"symbol": symbol, "size": 12, "color": theme[role], "line": {"width": 2, "color": theme[role]}},
            "meta": {"role": role, "part": "mark", "kind": display},
        })
    annotations = []
    if timeline.slowest is not None:
        slowest = timeline.slowest
        annotations.append({
            "x": (slowest.end - origin).total_seconds(), "y": escape(slowest.row), "xref": "x", "yref": "y",
            "text": f"slowest: {_fmt_seconds(slowest.duration_seconds)}", "showarrow": True, "arrowhead": 2,
            "ax": 40, "ay": -24, "font": {"color": theme["fg"]}, "arrowcolor": theme["fg"],
        })
    figure_layout = _base_layout(theme, height=max(220, 44 * len(timeline.rows) + 110))
    figure_layout.update({
        "barmode": "overlay",
        "hovermode": "closest",
        "showlegend": True,
        # Above the plot: below it, the legend collides with the x-axis title.
        "legend": {"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 0},
        "margin": {"l": 10, "r": 30, "t": 40, "b": 50},
        "xaxis": {"title": {"text": "seconds since the first event"}, "zeroline": False,
                  "gridcolor": theme["grid"], "rangemode": "tozero"},
        "yaxis": {"type": "category", "categoryorder": "array", "categoryarray": [escape(r) for r in timeline.rows],
                  "autorange": "reversed", "automargin": True, "gridcolor": theme["grid"]},
        "annotations": annotations,
    })
    figure_layout["meta"]["roles"].update({"xaxis.gridcolor": "grid", "yaxis.gridcolor": "grid"})
    return {"data": data, "layout": figure_layout}


def rate_figure(series: Mapping[str, Sequence[tuple[datetime, int]]], since: datetime, until: datetime,
                bucket_seconds: int, theme: Mapping[str, str] = LIGHT, height: int = 260) -> Figure:
    """Reports per time bucket, one line per stage; empty buckets count as 0 so a quiet
    minute shows as a dip, not as a straight line to the next busy one."""
    first = datetime.fromtimestamp(since.timestamp() // bucket_seconds * bucket_seconds, tz=since.tzinfo)
    buckets = []
    at = first
    while at < until:
        buckets.append(at)
        at += timedelta(seconds=bucket_seconds)
    data = []
    for stage in Stage:
        points = series.get(stage.value)
        if not points:
            continue
        counts = {moment.timestamp(): count for moment, count in points}
        role = STAGE_ROLE[stage]
        data.append({
            "type": "scatter", "mode": "lines", "name": stage.label,
            "x": [moment.isoformat().replace("+00:00", "Z") for moment in buckets],
            "y": [counts.get(moment.timestamp(), 0) for moment in buckets],
            "line": {"color": theme[role], "width": 2, "shape": "hv"},
            "meta": {"role": role, "part": "series"},
        })
    figure_layout = _base_layout(theme, height=height)
    figure_layout.update({
        "showlegend": True,
        "legend": {"orientation": "h", "y": -0.2},
        "margin": {"l": 50, "r": 10, "t": 10, "b": 40},
        "xaxis": {"type": "date", "gridcolor": theme["grid"],
                  "range": [since.isoformat().replace("+00:00", "Z"), until.isoformat().replace("+00:00", "Z")]},
        "yaxis": {"title": {"text": "reports per bucket"}, "gridcolor": theme["grid"], "rangemode": "tozero"},
    })
    figure_layout["meta"]["roles"].update({"xaxis.gridcolor": "grid", "yaxis.gridcolor": "grid"})
    return {"data": data, "layout": figure_layout}
