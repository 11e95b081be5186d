"""Shaping a flow graph for a reader: the configured tolerances with a URL's overrides,
a focus on a service or a consumer group's neighbourhood, hidden hubs or services.

Shared by the JSON API and the flow page, which read the same parameters; bad values
raise :class:`monitor.errors.QueryError` naming the parameter.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.conf import settings

from monitor.choices import FlowNodeKind
from monitor.collector import fewer_collections
from monitor.errors import QueryError
from monitor.flow import graph as flow_graph
from monitor.flow.graph import FlowGraph, Tolerances

HIDE_HUBS = "hubs"
HIDE_NONE = "none"  # explicit "hide nothing" (the dashboard hides hubs by default)


def configured_tolerances(params: Mapping[str, str]) -> Tolerances:
    """Settings (``MONITOR_FLOW_TOLERANCES``) first, then the URL's own overrides."""
    base = Tolerances.from_mapping(settings.MONITOR_FLOW_TOLERANCES)
    return Tolerances.from_params(params, base)


def focus_services(graph: FlowGraph, params: Mapping[str, str]) -> list[str]:
    """``focus=<service>``, or ``group=<consumer group>`` for the services consuming as
    that group (a link from a group or an alert knows the group, not the service)."""
    focus = (params.get("focus") or "").strip()
    if focus:
        return [focus]
    group = (params.get("group") or "").strip()
    return flow_graph.consumers_of_group(graph, group) if group else []


def top_nodes(params: Mapping[str, str], default: int | None) -> int | None:
    """``top=<n>``: keep the n busiest nodes and fold the rest into "others"
    (``top=all``: fold nothing); ``default`` when absent (None: fold nothing)."""
    raw = (params.get("top") or "").strip()
    if not raw:
        return default
    if raw == "all":
        return None
    if not raw.isdigit() or not 2 <= int(raw) <= 10_000:
        raise QueryError("top", "must be a whole number from 2 to 10000, or all")
    return int(raw)


@fewer_collections()
def shape_graph(graph: FlowGraph, params: Mapping[str, str], hidden: list[str],
                default_top: int | None = None) -> FlowGraph:
    """Apply ``focus=<service>`` / ``group=<consumer group>`` (a neighbourhood),
    ``hide=hubs`` / ``hide=<service>`` (``hide=none`` hides nothing) and ``top=<n>``
    (the busiest nodes; the rest folded into "others", by default ``default_top``)."""
    top = top_nodes(params, default_top)
    hubs = flow_graph.find_hubs(graph)
    for key in hubs:
        graph.nodes[key].hub = True
    focused = focus_services(graph, params)
    asked = bool(focused or (params.get("group") or "").strip())
    drop: set[str] = set()
    for name in hidden:
        if name == HIDE_HUBS:
            drop |= hubs
        elif name != HIDE_NONE:
            drop.add(flow_graph.node_id(FlowNodeKind.SERVICE, name))
    drop -= {flow_graph.node_id(FlowNodeKind.SERVICE, name) for name in focused}  # never hide what was asked for
    if drop:
        graph = flow_graph.hide(graph, drop)
    if asked:
        try:
            depth = int(params.get("depth") or 1)
        except ValueError:
            raise QueryError("depth", "must be a whole number") from None
        if not 1 <= depth <= 5:
            raise QueryError("depth", "must be between 1 and 5")
        graph = flow_graph.focus(graph, focused, depth)
    if top is not None:
        graph = flow_graph.fold_to_top(graph, top)
    return graph


def hidden_names(values: Iterable[str]) -> list[str]:
    """``hide`` may repeat or be comma separated."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]
