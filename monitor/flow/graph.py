"""The flow graph as plain data, and the rules applied to it (no database, no UI).

Nodes are services and topics; edges are ``service -> topic`` (it publishes there) and
``topic -> service`` (one consumer group of that service reads it). The read side
(:mod:`monitor.flow.queries`) aggregates events into :class:`PublishAggregate` and
:class:`ConsumeAggregate` rows; :func:`build_flow_graph` turns them into a graph with
rates, failure shares, latency, lag and a health colour per edge and node.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from datetime import datetime

from monitor.collector import fewer_collections
from monitor.errors import QueryError
from monitor.choices import STATUS_SEVERITY, FlowEdgeKind, FlowNodeKind, GroupStatus, Health

_HEALTH_RANK: dict[str, int] = {Health.UNKNOWN: 0, Health.OK: 1, Health.WARNING: 2, Health.CRITICAL: 3}
# The severity order decides: the three worst statuses are critical, the next three a warning.
_CRITICAL_GROUP_STATUSES = frozenset(STATUS_SEVERITY[:3])
_WARNING_GROUP_STATUSES = frozenset(STATUS_SEVERITY[3:6])
_GRADED_GROUP_STATUSES = _CRITICAL_GROUP_STATUSES | _WARNING_GROUP_STATUSES


class InputError(QueryError):
    """A bad graph parameter (a tolerance); ``field`` names it."""


def node_id(kind: str, name: str) -> str:
    """Services and topics may share a name, so ids carry the kind."""
    return f"{kind}:{name}"


@dataclass(frozen=True)
class Tolerances:
    """Where an edge turns amber and red. Shares are fractions (0.05 = 5 %)."""

    failed_share_warning: float = 0.01
    failed_share_critical: float = 0.05
    p95_warning_seconds: float = 5.0
    p95_critical_seconds: float = 60.0
    lag_warning: int = 1_000
    lag_critical: int = 10_000

    # query parameter -> field; lets a deep link carry its own tolerances
    PARAMS = {
        "failed_warn": "failed_share_warning",
        "failed_crit": "failed_share_critical",
        "p95_warn": "p95_warning_seconds",
        "p95_crit": "p95_critical_seconds",
        "lag_warn": "lag_warning",
        "lag_crit": "lag_critical",
    }

    @classmethod
    def from_params(cls, params: Mapping[str, str], base: Tolerances | None = None) -> Tolerances:
        values: dict[str, Any] = {}
        for param, attribute in cls.PARAMS.items():
            raw = params.get(param)
            if raw is None or raw == "":
                continue
            try:
                number = float(raw)
            except ValueError:
                raise InputError(param, f"{raw!r} is not a number") from None
            if not math.isfinite(number) or number < 0:
                raise InputError(param, "must be a number >= 0")
            values[attribute] = int(number) if attribute.startswith("lag") else number
        tolerances = replace(base or cls(), **values)
        for warning, critical, param in (
            ("failed_share_warning", "failed_share_critical", "failed_crit"),
            ("p95_warning_seconds", "p95_critical_seconds", "p95_crit"),
            ("lag_warning", "lag_critical", "lag_crit"),
        ):
            if getattr(tolerances, critical) < getattr(tolerances, warning):
                raise InputError(param, "must be at least the warning tolerance")
        return tolerances

    @classmethod
    def from_mapping(cls, config: Mapping[str, float]) -> Tolerances:
        """From settings (``MONITOR_FLOW_TOLERANCES``, keyed by field name)."""
        unknown = set(config) - set(cls.PARAMS.values())
        if unknown:
            raise InputError("MONITOR_FLOW_TOLERANCES", f"unknown key(s): {', '.join(sorted(unknown))}")
        return cls.from_params({p: str(config[a]) for p, a in cls.PARAMS.items() if a in config})


@dataclass(frozen=True)
class PublishAggregate:
    service: str
    topic: str
    published: int
    failed: int = 0
    dead_lettered: int = 0


@dataclass(frozen=True)
class ConsumeAggregate:
    topic: str
    service: str
    consumer_group: str
    consumed: int
    processed: int = 0
    failed: int = 0
    dead_lettered: int = 0

    @property
    def deliveries(self) -> int:
        # Consumers that report only outcomes still carried every event they finished; a
        # dead-letter usually follows a failure of the same delivery, so it is not added.
        return max(self.consumed, self.processed + max(self.failed, self.dead_lettered))


@dataclass(frozen=True)
class GroupLag:
    lag: int | None
    status: str = GroupStatus.UNKNOWN
    clusters: tuple[str, ...] = ()


@dataclass(slots=True)  # 20,000 of them on a graph of 10,000 services: slots build faster
class FlowEdge:
    source: str
    target: str
    kind: str
    service: str
    topic: str
    consumer_group: str
    events: int
    failed: int
    rate_per_second: float
    failed_share: float
    p95_latency_seconds: float | None = None
    lag: int | None = None
    lag_status: str | None = None
    lag_clusters: tuple[str, ...] = ()
    health: str = Health.UNKNOWN
    reasons: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        suffix = f"#{self.consumer_group}" if self.consumer_group else ""
        return f"{self.source}->{self.target}{suffix}"


@dataclass(slots=True)
class FlowNode:
    id: str
    kind: str
    name: str
    events_in: int = 0
    events_out: int = 0
    failed: int = 0
    health: str = Health.UNKNOWN
    hub: bool = False
    folded: int = 0
    """For the "others" node of a folded graph: how many nodes it stands for (0 = a real node)."""


@dataclass
class FlowGraph:
    nodes: dict[str, FlowNode]
    edges: list[FlowEdge]
    span_seconds: float
    since: datetime | None = None  # the window the numbers describe, when known
    until: datetime | None = None

    def neighbours(self) -> dict[str, set[str]]:
        adjacent: dict[str, set[str]] = defaultdict(set)
        for edge in self.edges:
            adjacent[edge.source].add(edge.target)
            adjacent[edge.target].add(edge.source)
        return adjacent


def worst(healths: Iterable[str]) -> str:
    # Ranked by the plain value: a TextChoices member hashes as its string, and building
    # an enum member per edge cost a tenth of a second on a 20,000-edge graph.
    return max(healths, key=_HEALTH_RANK.__getitem__, default=Health.UNKNOWN)


def edge_health(edge: FlowEdge, tolerances: Tolerances) -> tuple[str, list[str]]:
    """Health of one edge and the reasons for anything not OK."""
    if edge.events <= 0:
        return Health.UNKNOWN, ["no events in the range"]
    if (edge.failed_share < tolerances.failed_share_warning and edge.lag_status not in _GRADED_GROUP_STATUSES
            and (edge.p95_latency_seconds is None or edge.p95_latency_seconds < tolerances.p95_warning_seconds)
            and (edge.lag is None or edge.lag < tolerances.lag_warning)):
        return Health.OK, []  # the common case, without grading each measure
    levels: list[tuple[str, str]] = []

    def grade(value: float | None, warning: float, critical: float, what: str, unit: str) -> None:
        if value is None:
            return
        if value >= critical:
            levels.append((Health.CRITICAL, f"{what} {value:{unit}} >= {critical:{unit}}"))
        elif value >= warning:
            levels.append((Health.WARNING, f"{what} {value:{unit}} >= {warning:{unit}}"))

    grade(edge.failed_share, tolerances.failed_share_warning, tolerances.failed_share_critical, "failed", ".1%")
    grade(edge.p95_latency_seconds, tolerances.p95_warning_seconds, tolerances.p95_critical_seconds, "p95", ".1f")
    grade(edge.lag, tolerances.lag_warning, tolerances.lag_critical, "lag", ",.0f")
    if edge.lag_status in _CRITICAL_GROUP_STATUSES:
        levels.append((Health.CRITICAL, f"group {GroupStatus(edge.lag_status).label.lower()}"))
    elif edge.lag_status in _WARNING_GROUP_STATUSES:
        levels.append((Health.WARNING, f"group {GroupStatus(edge.lag_status).label.lower()}"))
    if not levels:
        return Health.OK, []
    health = worst(level for level, _ in levels)
    return health, [reason for level, reason in levels if level == health]


@fewer_collections()
def build_flow_graph(
    publishes: Iterable[PublishAggregate],
    consumes: Iterable[ConsumeAggregate],
    span_seconds: float,
    p95_by_consumer: Mapping[tuple[str, str, str], float] | None = None,
    lag_by_group_topic: Mapping[tuple[str, str], GroupLag] | None = None,
    tolerances: Tolerances | None = None,
) -> FlowGraph:
    """Edges from the aggregates; ``p95_by_consumer`` is keyed (topic, service, group),
    ``lag_by_group_topic`` (group, topic). Nodes and edges come out in a stable order."""
    tolerances = tolerances or Tolerances()
    p95_by_consumer = p95_by_consumer or {}
    lag_by_group_topic = lag_by_group_topic or {}
    span = max(span_seconds, 1e-9)
    nodes: dict[str, FlowNode] = {}
    edges: list[FlowEdge] = []

    def node(kind: str, name: str) -> FlowNode:
        key = node_id(kind, name)
        if key not in nodes:
            nodes[key] = FlowNode(id=key, kind=kind, name=name)
        return nodes[key]

    for row in sorted(publishes, key=lambda r: (r.service, r.topic)):
        if not row.topic:
            continue
        producer, topic = node(FlowNodeKind.SERVICE, row.service), node(FlowNodeKind.TOPIC, row.topic)
        failed = row.failed + row.dead_lettered
        events = max(row.published, failed)
        edges.append(FlowEdge(
            source=producer.id, target=topic.id, kind=FlowEdgeKind.PUBLISH, service=row.service, topic=row.topic,
            consumer_group="", events=events, failed=failed, rate_per_second=events / span,
            failed_share=min(1.0, failed / events) if events else 0.0,
        ))
    for consume in sorted(consumes, key=lambda r: (r.topic, r.service, r.consumer_group)):
        if not consume.topic:
            continue
        topic, consumer = node(FlowNodeKind.TOPIC, consume.topic), node(FlowNodeKind.SERVICE, consume.service)
        failed = consume.failed + consume.dead_lettered
        events = consume.deliveries
        lag = lag_by_group_topic.get((consume.consumer_group, consume.topic)) if consume.consumer_group else None
        edges.append(FlowEdge(
            source=topic.id, target=consumer.id, kind=FlowEdgeKind.CONSUME, service=consume.service, topic=consume.topic,
            consumer_group=consume.consumer_group, events=events, failed=failed, rate_per_second=events / span,
            failed_share=min(1.0, failed / events) if events else 0.0,
            p95_latency_seconds=p95_by_consumer.get((consume.topic, consume.service, consume.consumer_group)),
            lag=lag.lag if lag else None, lag_status=lag.status if lag else None,
            lag_clusters=lag.clusters if lag else (),
        ))
    for edge in edges:
        edge.health, edge.reasons = edge_health(edge, tolerances)
        nodes[edge.source].events_out += edge.events
        nodes[edge.target].events_in += edge.events
        # A failure belongs to the service that reported it.
        nodes[node_id(FlowNodeKind.SERVICE, edge.service)].failed += edge.failed
    incident: dict[str, int] = defaultdict(int)  # the worst rank of the node's edges
    for edge in edges:
        rank = _HEALTH_RANK[edge.health]
        for key in (edge.source, edge.target):
            if rank > incident[key]:
                incident[key] = rank
    by_rank = {rank: health for health, rank in _HEALTH_RANK.items()}
    for key, item in nodes.items():
        item.health = by_rank[incident[key]]
    ordered = dict(sorted(nodes.items(), key=lambda kv: (kv[1].kind != FlowNodeKind.SERVICE, kv[1].name)))
    return FlowGraph(nodes=ordered, edges=edges, span_seconds=span_seconds)


def subgraph(graph: FlowGraph, keep: set[str]) -> FlowGraph:
    """The graph induced by ``keep``; topics left with no edge at all are dropped."""
    edges = [e for e in graph.edges if e.source in keep and e.target in keep]
    connected = {e.source for e in edges} | {e.target for e in edges}
    nodes = {
        key: node for key, node in graph.nodes.items()
        if key in keep and (key in connected or node.kind == FlowNodeKind.SERVICE)
    }
    return replace(graph, nodes=nodes, edges=edges)


def focus(graph: FlowGraph, services: str | Iterable[str], depth: int = 1) -> FlowGraph:
    """The neighbourhood of one service (or several): its topics and the services on
    their other side, ``depth`` service-hops out. Unknown services give an empty graph."""
    names = [services] if isinstance(services, str) else list(services)
    starts = {node_id(FlowNodeKind.SERVICE, name) for name in names} & set(graph.nodes)
    if not starts:
        return replace(graph, nodes={}, edges=[])
    adjacent = graph.neighbours()
    keep = set(starts)
    frontier = set(starts)
    for _ in range(max(1, depth) * 2):  # service -> topic -> service is two graph hops
        frontier = {n for f in frontier for n in adjacent[f]} - keep
        keep |= frontier
    return subgraph(graph, keep)


def consumers_of_group(graph: FlowGraph, consumer_group: str) -> list[str]:
    """The services that consume as ``consumer_group`` (what an alert on a group names)."""
    return sorted({e.service for e in graph.edges
                   if e.kind == FlowEdgeKind.CONSUME and e.consumer_group == consumer_group})


def find_hubs(graph: FlowGraph, min_degree: int | None = None) -> set[str]:
    """Services that touch so many topics that drawing them turns the graph into a
    hairball (loggers, auditors, CDC sinks). Default: at least 8 topics, or a quarter
    of all topics on a large graph."""
    topic_count = sum(1 for n in graph.nodes.values() if n.kind == FlowNodeKind.TOPIC)
    threshold = min_degree if min_degree is not None else max(8, math.ceil(topic_count / 4))
    adjacent = graph.neighbours()
    return {
        key for key, node in graph.nodes.items()
        if node.kind == FlowNodeKind.SERVICE and len(adjacent[key]) >= threshold
    }


def hide(graph: FlowGraph, node_ids: set[str]) -> FlowGraph:
    return subgraph(graph, set(graph.nodes) - node_ids)


DEFAULT_TOP_NODES = 60


def others_id(kind: str) -> str:
    """The id of the node that stands for the folded nodes of ``kind``: outside the
    ``kind:name`` ids of real nodes, so no service or topic name can collide with it."""
    return f"others:{kind}"


def fold_to_top(graph: FlowGraph, top: int = DEFAULT_TOP_NODES) -> FlowGraph:
    """The ``top`` nodes with the most traffic (events in + out) stay; the rest fold into
    one "others" service and one "others" topic, their edges to the kept nodes merged per
    (source, target, kind): events and failures summed, the slowest p95, the worst health.
    A graph with at most ``top`` nodes is returned unchanged. Pages with 10,000 services
    stay readable and small; the numbers of the folded part are still all there."""
    if len(graph.nodes) <= top:
        return graph
    ranked = sorted(graph.nodes.values(), key=lambda n: (-(n.events_in + n.events_out), n.kind, n.name))
    keep = {n.id for n in ranked[:top]}
    folded_count: dict[str, int] = defaultdict(int)
    for node in ranked[top:]:
        folded_count[node.kind] += 1
    nodes = {key: node for key, node in graph.nodes.items() if key in keep}
    for kind, count in folded_count.items():
        key = others_id(kind)
        noun = "services" if kind == FlowNodeKind.SERVICE else "topics"
        nodes[key] = FlowNode(id=key, kind=kind, name=f"{count:,} other {noun}", folded=count)

    def placed(key: str) -> str:
        return key if key in keep else others_id(graph.nodes[key].kind)

    merged: dict[tuple[str, str, str, str], FlowEdge] = {}
    merged_reasons: dict[tuple[str, str, str, str], set[str]] = {}
    edges: list[FlowEdge] = []
    for edge in graph.edges:
        source, target = placed(edge.source), placed(edge.target)
        if source == edge.source and target == edge.target:
            edges.append(edge)
            continue
        service_kept = node_id(FlowNodeKind.SERVICE, edge.service) in keep
        group = edge.consumer_group if service_kept else ""  # folded services: one edge, not one per group
        edge_key = (source, target, edge.kind, group)
        into = merged.get(edge_key)
        if into is None:
            service_node = nodes[placed(node_id(FlowNodeKind.SERVICE, edge.service))]
            topic_node = nodes[placed(node_id(FlowNodeKind.TOPIC, edge.topic))]
            merged[edge_key] = replace(
                edge, source=source, target=target, consumer_group=group, service=service_node.name,
                topic=topic_node.name, lag=None, lag_status=None, lag_clusters=(), reasons=list(edge.reasons),
                examples=[],
            )
            merged_reasons[edge_key] = set(edge.reasons)
            continue
        into.events += edge.events
        into.failed += edge.failed
        into.rate_per_second += edge.rate_per_second
        into.failed_share = min(1.0, into.failed / into.events) if into.events else 0.0
        if edge.p95_latency_seconds is not None:
            into.p95_latency_seconds = max(into.p95_latency_seconds or 0.0, edge.p95_latency_seconds)
        into.health = worst([into.health, edge.health])
        merged_reasons[edge_key].update(edge.reasons)
        into.reasons = []  # sorted once below, not once per edge merged
    for edge_key, into in merged.items():
        if not into.reasons:
            into.reasons = sorted(merged_reasons[edge_key])[:5]
    edges.extend(merged.values())
    for node in nodes.values():
        if node.folded:
            members = [n for n in ranked[top:] if n.kind == node.kind]
            node.events_in = sum(n.events_in for n in members)
            node.events_out = sum(n.events_out for n in members)
            node.failed = sum(n.failed for n in members)
            node.health = worst(n.health for n in members)
    return replace(graph, nodes=nodes, edges=edges)


@dataclass(frozen=True)
class PartitionShare:
    partition: int
    events: int
    share: float


@dataclass(frozen=True)
class PartitionSkew:
    partitions: list[PartitionShare]
    max_over_mean: float | None
    hot_partition: int | None


def partition_skew(counts: Mapping[int, int], hot_factor: float = 2.0, min_events: int = 20) -> PartitionSkew:
    """A partition is hot when it carries ``hot_factor`` times the mean of the partitions
    that carried anything (and there is enough traffic to tell)."""
    total = sum(counts.values())
    rows = [PartitionShare(p, n, n / total if total else 0.0) for p, n in sorted(counts.items())]
    if len(counts) < 2 or total == 0:
        return PartitionSkew(rows, None, None)
    mean = total / len(counts)
    busiest = max(rows, key=lambda r: (r.events, -r.partition))
    ratio = busiest.events / mean
    hot = busiest.partition if ratio >= hot_factor and total >= min_events else None
    return PartitionSkew(rows, ratio, hot)


@dataclass(frozen=True)
class KeyShare:
    key: str
    events: int
    share: float
    hot: bool


def hot_keys(top: Iterable[tuple[str, int]], total: int, hot_share: float = 0.25,
             min_events: int = 10) -> list[KeyShare]:
    """The busiest keys with their share of all keyed events; one key carrying a quarter
    of a topic's traffic pins one partition (and one consumer)."""
    return [
        KeyShare(key, count, count / total if total else 0.0,
                 bool(total) and count / total >= hot_share and count >= min_events)
        for key, count in top
    ]
