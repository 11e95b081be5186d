"""GET /api/v1/flow and GET /api/v1/traces/{trace_id}: thin: parse, query, serialise."""
from __future__ import annotations

import re
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from monitor.api.auth import api_view
from monitor.api.errors import FieldError, NotFound
from monitor.choices import TokenScope
from monitor.events.timeline import TraceEvent, causal_order
from monitor.events.traces import trace_events
from monitor.flow.graph import FlowGraph
from monitor.flow.queries import flow_graph
from monitor.flow.shaping import configured_tolerances, hidden_names, shape_graph
from monitor.redaction import redact_attributes
from monitor.timerange import format_iso, parse_time_range
from monitor.tracelinks import external_trace_url

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")


def serialise_graph(graph: FlowGraph) -> dict[str, Any]:
    """``since``/``until`` are the window the numbers describe (a live range may be
    served from numbers computed a moment ago)."""
    assert graph.since is not None and graph.until is not None
    return {
        "since": format_iso(graph.since),
        "until": format_iso(graph.until),
        "nodes": [
            {"id": n.id, "kind": n.kind, "name": n.name, "health": n.health, "hub": n.hub,
             "events_in": n.events_in, "events_out": n.events_out, "failed": n.failed, "folded": n.folded}
            for n in graph.nodes.values()
        ],
        "edges": [
            {"source": e.source, "target": e.target, "events": e.events, "failed": e.failed,
             "p95_latency_seconds": e.p95_latency_seconds, "kind": e.kind,
             "consumer_group": e.consumer_group or None, "rate_per_second": e.rate_per_second,
             "failed_share": e.failed_share, "lag": e.lag, "lag_status": e.lag_status,
             "health": e.health, "reasons": e.reasons, "examples": e.examples}
            for e in graph.edges
        ],
    }


@api_view(scope=TokenScope.READ)
def flow(request: HttpRequest) -> JsonResponse:
    time_range = parse_time_range(request.GET, timezone.now())
    tolerances = configured_tolerances(request.GET)
    graph = shape_graph(flow_graph(time_range, tolerances), request.GET, hidden_names(request.GET.getlist("hide")))
    return JsonResponse(serialise_graph(graph))


def traceparent(trace_id: str, span_id: str) -> str | None:
    """The W3C header rebuilt from the stored ids (sampled flag set)."""
    if _TRACE_ID.fullmatch(trace_id) and _SPAN_ID.fullmatch(span_id):
        return f"00-{trace_id}-{span_id}-01"
    return None


def serialise_event(event: TraceEvent) -> dict[str, Any]:
    """An EVENT as reported (optional fields only when known) plus ``received_at``,
    ``parent_span_id`` and the rebuilt ``traceparent``."""
    document: dict[str, Any] = {
        "event_id": event.event_id,
        "type": event.type,
        "service": event.service,
        "stage": event.stage,
        "timestamp": format_iso(event.timestamp),
        "received_at": format_iso(event.received_at) if event.received_at else None,
    }
    optional = {
        "topic": event.topic, "partition": event.partition, "offset": event.offset, "key": event.key,
        "consumer_group": event.consumer_group, "schema_version": event.schema_version,
        "trace_id": event.trace_id, "span_id": event.span_id, "parent_span_id": event.parent_span_id,
        "traceparent": traceparent(event.trace_id, event.span_id),
    }
    document.update({name: value for name, value in optional.items() if value not in (None, "")})
    # The pages' rule: values of secret-looking attributes (password, token ...) never leave.
    document["attributes"] = redact_attributes(event.attributes)
    return document


def trace_document(trace_id: str) -> dict[str, Any] | None:
    events, truncated = trace_events(trace_id)
    if not events and trace_id != trace_id.lower():
        trace_id = trace_id.lower()
        events, truncated = trace_events(trace_id)
    if not events:
        return None
    ordered = causal_order(events)
    first = min(e.timestamp for e in ordered)
    last = max(e.timestamp for e in ordered)
    return {
        "trace_id": trace_id,
        "external_url": external_trace_url(trace_id),
        "services": list(dict.fromkeys(e.service for e in ordered)),
        "duration_seconds": (last - first).total_seconds(),
        "truncated": truncated,
        "events": [serialise_event(e) for e in ordered],
    }


@api_view(scope=TokenScope.READ)
def trace(request: HttpRequest, trace_id: str) -> JsonResponse:
    document = trace_document(trace_id.strip())
    if document is None:
        raise NotFound(f"No events were reported for trace {trace_id!r}.",
                       [FieldError(("path", "trace_id"), "unknown trace")])
    return JsonResponse(document)
