"""The OpenAPI 3.1 document of every contract endpoint, kept as a plain dict.

Served at ``GET /api/v1/openapi.json`` without authentication (it holds no data).
Adding an endpoint means adding its path here; tests check that every contract path is
described and that real responses validate against these schemas.
"""
from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

from monitor.api.auth import api_view
from monitor.choices import AlertState, ClusterStatus, GroupProtocol, GroupStatus, Operator, SeriesMetric, Severity, Stage, TimeLagMethod, TransactionState


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: object) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


TIME: dict[str, Any] = {"type": "string", "format": "date-time", "description": "ISO-8601 UTC with Z"}
NULLABLE_TIME: dict[str, Any] = {"type": ["string", "null"], "format": "date-time", "description": "ISO-8601 UTC with Z"}
PAGE_PARAMS: list[dict[str, Any]] = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "Page size. With it the answer is one page and, unless it is the last, a "
                       "Link: <URL>; rel=\"next\" header points at the next. Without it, everything.",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
    },
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "description": "Opaque: taken from the previous page's Link header (needs limit).",
        "schema": {"type": "string"},
    },
]
NEXT_LINK_HEADER: dict[str, Any] = {
    "Link": {
        "description": "<URL>; rel=\"next\": the next page (absent on the last page and without limit)",
        "schema": {"type": "string"},
    }
}


def _paged(schema: dict[str, object], description: str) -> dict[str, object]:
    return {**_json(schema, description), "headers": NEXT_LINK_HEADER}


READ_ERRORS: dict[str, Any] = {
    "401": _error("No valid credentials"),
    "403": _error("The token lacks the read scope"),
}
INGEST_ERRORS: dict[str, Any] = {
    "400": _error("Invalid input; errors[].loc names each bad event's index and field"),
    "401": _error("No valid credentials"),
    "403": _error("The token lacks the ingest scope"),
    "413": _error("Request body too large"),
    "422": _error("Invalid input; errors[].loc names each bad event's index and field"),
}
ACK_ERRORS: dict[str, Any] = {
    "401": _error("No valid credentials"),
    "403": _error("The token lacks the ack scope"),
}

def _otlp_status(description: str) -> dict[str, Any]:
    """An OTLP error: a google.rpc.Status, in the request's encoding."""
    status = {"type": "object", "required": ["code", "message"],
              "properties": {"code": {"type": "integer"}, "message": {"type": "string"}}}
    return {"description": description, "content": {
        "application/json": {"schema": status},
        "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}}}}


OTLP_ERRORS: dict[str, Any] = {
    "400": _otlp_status("Not an OTLP ExportTraceServiceRequest; the message says where"),
    "401": _error("No valid credentials"),
    "403": _error("The token lacks the ingest scope"),
    "411": _otlp_status("A chunked body the server did not de-chunk; send Content-Length"),
    "413": _otlp_status("Request body too large"),
    "415": _otlp_status("Content-Type is neither application/x-protobuf nor application/json"),
}
NOT_FOUND: dict[str, Any] = {"404": _error("Unknown cluster or group name")}
CLUSTER_PARAM: dict[str, Any] = {"name": "cluster", "in": "path", "required": True, "schema": {"type": "string"}}
GROUP_PARAM: dict[str, Any] = {"name": "group", "in": "path", "required": True, "schema": {"type": "string"}}
SINCE_PARAM: dict[str, Any] = {"name": "since", "in": "query", "required": False, "schema": TIME}
UNTIL_PARAM: dict[str, Any] = {"name": "until", "in": "query", "required": False, "schema": TIME}
PUBLIC: list[dict[str, list[str]]] = []

_GROUP_PROPERTIES: dict[str, Any] = {
    "group": {"type": "string"},
    "state": {"type": "string", "description": "Broker-reported group state, e.g. Stable, Empty"},
    "status": {"type": "string", "enum": GroupStatus.values},
    "status_reason": {"type": "string"},
    "total_lag": _nullable("integer", description="null when unknown, never 0 for unknown"),
    "max_time_lag_seconds": _nullable("number"),
    "topics": {"type": "array", "items": {"type": "string"}},
    "catch_up_seconds": _nullable("number", description="Forecast; null when not catching up"),
    "retention_risk_seconds": _nullable(
        "number", description="Forecast: time until retention deletes unread messages; null = no risk"
    ),
    "retention_risk_method": {
        "type": "string", "enum": ["", "retention_ms", "log_start_rate", "deleting"],
        "description": "How the retention forecast was made (empty when there is nothing to forecast)"},
    "lost_messages": {"type": "integer"},
    "partial_partitions": {
        "type": "integer",
        "description": "Partitions with a commit whose lag is unknown in the latest poll; when > 0, "
                       "total_lag is partial (sums the other partitions only)"},
    "stalled_partitions": {
        "type": "integer",
        "description": "Partitions whose committed offset has not moved for the status window while lagging"},
    "last_sample_at": NULLABLE_TIME,
    "first_seen_at": NULLABLE_TIME,
    "last_seen_at": NULLABLE_TIME,
    "gone_at": NULLABLE_TIME,
    "unread_since": {
        **NULLABLE_TIME,
        "description": "Set while the cluster lists the group but its committed offsets cannot be read (not "
                       "authorized, coordinator loading, a failed shard; status_reason says why): its figures are "
                       "null, and its partitions are those of the poll at last_sample_at"},
    "protocol": {"type": "string", "enum": GroupProtocol.values,
                 "description": "classic, consumer (KIP-848), share (KIP-932) or unknown"},
    "member_count": _nullable("integer", description="null when the broker did not tell"),
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["detail"],
        "properties": {
            "detail": {"type": "string"},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["loc", "msg"],
                    "properties": {
                        "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                        "msg": {"type": "string"},
                    },
                },
            },
        },
    },
    "Cluster": {
        "type": "object",
        "required": ["name", "status", "last_poll_at", "last_error"],
        "properties": {
            "name": {"type": "string"},
            "status": {"type": "string", "enum": ClusterStatus.values},
            "last_poll_at": NULLABLE_TIME,
            "last_error": _nullable("string", description="Never contains credentials"),
            "last_success_at": NULLABLE_TIME,
            "enabled": {"type": "boolean"},
            "poll_interval_seconds": {"type": "integer"},
        },
    },
    "GroupSummary": {
        "type": "object",
        "required": ["group", "state", "status", "total_lag", "max_time_lag_seconds", "topics"],
        "properties": {**_GROUP_PROPERTIES, "members": _nullable("integer", description="Member count; null = not told")},
    },
    "Member": {
        "type": "object",
        "required": ["member_id", "client_id", "host", "partitions"],
        "properties": {
            "member_id": {"type": "string"},
            "client_id": {"type": "string"},
            "host": {"type": "string"},
            "partitions": {"type": "array", "items": {
                "type": "object", "required": ["topic", "partition"],
                "properties": {"topic": {"type": "string"}, "partition": {"type": "integer"}},
            }},
            "partitions_known": {"type": "boolean",
                                 "description": "false: the broker did not say what this member owns"},
        },
    },
    "Partition": {
        "type": "object",
        "required": [
            "topic", "partition", "committed_offset", "log_start_offset", "log_end_offset",
            "lag", "time_lag_seconds", "time_lag_method",
        ],
        "properties": {
            "topic": {"type": "string"},
            "partition": {"type": "integer"},
            "committed_offset": _nullable("integer"),
            "log_start_offset": _nullable("integer"),
            "log_end_offset": _nullable("integer"),
            "lag": _nullable("integer", description="null when unknown, never 0 for unknown"),
            "time_lag_seconds": _nullable("number"),
            "time_lag_method": {"type": "string", "enum": TimeLagMethod.values},
            "time_lag_reason": {"type": "string"},
            "owner": _nullable("string", description="Member id owning the partition; null when unassigned or not told"),
            "owner_client_id": _nullable("string"),
            "owner_host": _nullable("string"),
            "stalled": {"type": "boolean",
                        "description": "The committed offset has not moved for the status window while lagging"},
        },
    },
    "GroupDetail": {
        "type": "object",
        "required": ["group", "state", "status", "status_reason", "total_lag", "max_time_lag_seconds", "topics",
                     "members", "protocol", "partitions"],
        "properties": {
            **_GROUP_PROPERTIES,
            "cluster": {"type": "string"},
            "members": {"type": "array", "items": _ref("Member"),
                        "description": "Empty when the broker does not tell (then member_count is null)"},
            "partitions": {"type": "array", "items": _ref("Partition")},
        },
    },
    "LagSeries": {
        "type": "object",
        "required": ["series"],
        "properties": {
            "cluster": {"type": "string"},
            "group": {"type": "string"},
            "metric": {"type": "string", "enum": SeriesMetric.values},
            "since": TIME,
            "until": TIME,
            "series": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["topic", "points"],
                    "properties": {
                        "topic": {"type": "string"},
                        "points": {
                            "type": "array",
                            "items": {
                                "type": "array",
                                "prefixItems": [TIME, {"type": ["number", "null"]}],
                                "minItems": 2,
                                "maxItems": 2,
                            },
                        },
                    },
                },
            },
        },
    },
    "Event": {
        "type": "object",
        "required": ["event_id", "type", "service", "stage", "timestamp"],
        "properties": {
            "event_id": {"type": "string"},
            "type": {"type": "string"},
            "service": {"type": "string", "description": "Who reports the event"},
            "stage": {"type": "string", "enum": Stage.values},
            "timestamp": TIME,
            "topic": {"type": "string"},
            "partition": {"type": "integer"},
            "offset": {"type": "integer"},
            "key": {"type": "string", "description": "Aggregate id"},
            "consumer_group": {"type": "string"},
            "schema_version": {"type": "integer"},
            "traceparent": {"type": "string", "description": "W3C traceparent"},
            "trace_id": {"type": "string"},
            "span_id": {"type": "string"},
            "parent_span_id": {"type": "string", "description": "Span of the publisher, for consumers"},
            "attributes": {"type": "object"},
        },
    },
    "EventBatch": {
        "type": "object",
        "required": ["events"],
        "properties": {"events": {"type": "array", "items": _ref("Event")}},
    },
    "IngestResult": {
        "type": "object",
        "required": ["accepted", "duplicates"],
        "properties": {"accepted": {"type": "integer"}, "duplicates": {"type": "integer"}},
    },
    "Trace": {
        "type": "object",
        "required": ["trace_id", "services", "duration_seconds", "events", "external_url"],
        "properties": {
            "trace_id": {"type": "string"},
            "external_url": _nullable("string", description="The trace in the backend named by "
                                                            "MONITOR_TRACE_URL_TEMPLATE; null when unset"),
            "services": {"type": "array", "items": {"type": "string"}},
            "duration_seconds": _nullable("number"),
            "events": {
                "type": "array",
                "description": "In causal/time order",
                "items": {
                    "allOf": [
                        _ref("Event"),
                        {"type": "object", "required": ["received_at"], "properties": {"received_at": TIME}},
                    ]
                },
            },
        },
    },
    "Pathway": {
        "type": "object",
        "required": ["services", "topics", "traces", "p50_seconds", "p95_seconds", "p99_seconds"],
        "properties": {
            "services": {"type": "array", "items": {"type": "string"}},
            "topics": {"type": "array", "items": {"type": "string"}},
            "traces": {"type": "integer", "minimum": 0},
            "p50_seconds": {"type": ["number", "null"]},
            "p95_seconds": {"type": ["number", "null"]},
            "p99_seconds": {"type": ["number", "null"]},
            "id": {"type": "integer"},
            "label": {"type": "string"},
        },
    },
    "Transaction": {
        "type": "object",
        "required": ["name", "key", "trace_id", "state", "started_at", "ended_at", "last_event_type", "last_service"],
        "properties": {
            "name": {"type": "string"},
            "key": {"type": "string"},
            "trace_id": {"type": ["string", "null"]},
            "state": {"enum": list(TransactionState.values)},
            "started_at": TIME,
            "ended_at": NULLABLE_TIME,
            "last_event_type": {"type": "string"},
            "last_service": {"type": "string"},
            "last_event_at": TIME,
            "compensations": {"type": "integer", "minimum": 0},
            "slo_seconds": {"type": "integer"},
        },
    },
    "Flow": {
        "type": "object",
        "required": ["nodes", "edges"],
        "properties": {
            "nodes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "kind", "name"],
                    "properties": {
                        "id": {"type": "string"},
                        "kind": {"type": "string", "enum": ["service", "topic"]},
                        "name": {"type": "string"},
                        "folded": {"type": "integer", "description": "0, or for the \"others\" node of a "
                                                                     "graph cut with top: the nodes it stands for"},
                    },
                },
            },
            "edges": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["source", "target", "events", "failed", "p95_latency_seconds"],
                    "properties": {
                        "source": {"type": "string"},
                        "target": {"type": "string"},
                        "events": {"type": "integer"},
                        "failed": {"type": "integer"},
                        "p95_latency_seconds": _nullable("number"),
                    },
                },
            },
        },
    },
    "Alert": {
        "type": "object",
        "required": ["id", "rule", "subject", "state", "value", "threshold", "started_at", "resolved_at"],
        "properties": {
            "id": {"type": "integer"},
            "rule": {"type": "string"},
            "subject": {"type": "string", "description": "What the alert is about: cluster/group/topic"},
            "state": {"type": "string", "enum": AlertState.values},
            "value": _nullable("number"),
            "threshold": _nullable("number"),
            "started_at": NULLABLE_TIME,
            "resolved_at": NULLABLE_TIME,
            "rule_id": {"type": "integer"},
            "severity": {"type": "string", "enum": Severity.values},
            "metric": {"type": "string"},
            "op": {"type": "string", "enum": Operator.values},
            "cluster": {"type": "string", "description": "Empty for event metrics"},
            "group": {"type": "string"},
            "topic": {"type": "string"},
            "value_text": {"type": "string", "description": "The value with its unit, e.g. '1,234 messages'"},
            "threshold_text": {"type": "string"},
            "fired_at": NULLABLE_TIME,
            "no_data": {"type": "boolean", "description": "The subject stopped reporting (group gone, cluster unreachable)"},
            "no_data_reason": {"type": "string"},
            "resolved_reason": {"type": "string"},
            "acknowledged_at": NULLABLE_TIME,
            "acknowledged_by": {"type": "string"},
            "acknowledgement_note": {"type": "string"},
            "url": {"type": "string", "description": "The alert's page"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}, "checks": {"type": "object"}},
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Kafka monitor API",
        "version": "1",
        "description": (
            "Consumer-lag monitoring, event and trace ingestion, event flow and alerts. "
            "Times are ISO-8601 UTC with Z; durations are seconds. Errors carry "
            '{"detail": "...", "errors": [{"loc": [...], "msg": "..."}]}.'
        ),
    },
    "servers": [{"url": "/"}],
    "security": [{"bearerAuth": []}, {"sessionCookie": []}],
    "paths": {
        "/api/v1/clusters": {
            "get": {
                "operationId": "listClusters",
                "summary": "Clusters and their poll status",
                "tags": ["lag"],
                "responses": {
                    "200": _json({"type": "array", "items": _ref("Cluster")}, "Every cluster"),
                    **READ_ERRORS,
                },
            }
        },
        "/api/v1/clusters/{cluster}/groups": {
            "get": {
                "operationId": "listGroups",
                "summary": "Consumer groups of a cluster with their latest lag",
                "tags": ["lag"],
                "parameters": [
                    CLUSTER_PARAM,
                    {
                        "name": "status",
                        "in": "query",
                        "required": False,
                        "description": "Only groups with these statuses, comma-separated",
                        "schema": {"type": "string"},
                        "example": "stalled,stopped",
                    },
                    *PAGE_PARAMS,
                ],
                "responses": {
                    "200": _paged({"type": "array", "items": _ref("GroupSummary")},
                                  "The cluster's groups by name (one page with limit)"),
                    "400": _error("A bad query parameter, named in errors[].loc"),
                    **READ_ERRORS,
                    **NOT_FOUND,
                },
            }
        },
        "/api/v1/clusters/{cluster}/groups/{group}": {
            "get": {
                "operationId": "getGroup",
                "summary": "One group with per-partition lag from the latest poll",
                "tags": ["lag"],
                "parameters": [CLUSTER_PARAM, GROUP_PARAM],
                "responses": {"200": _json(_ref("GroupDetail"), "The group"), **READ_ERRORS, **NOT_FOUND},
            }
        },
        "/api/v1/clusters/{cluster}/groups/{group}/lag": {
            "get": {
                "operationId": "getGroupLagSeries",
                "summary": "Lag history per topic, downsampled server-side",
                "tags": ["lag"],
                "parameters": [
                    CLUSTER_PARAM,
                    GROUP_PARAM,
                    {"name": "topic", "in": "query", "required": False, "schema": {"type": "string"}},
                    {**SINCE_PARAM, "description": "Default: one hour before until"},
                    {**UNTIL_PARAM, "description": "Default: now"},
                    {
                        "name": "points",
                        "in": "query",
                        "required": False,
                        "description": "Maximum points per series",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 5000, "default": 500},
                    },
                    {
                        "name": "metric",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": SeriesMetric.values, "default": SeriesMetric.LAG.value},
                    },
                ],
                "responses": {
                    "200": _json(_ref("LagSeries"), "One series per topic"),
                    "400": _error("A bad query parameter, named in errors[].loc"),
                    **READ_ERRORS,
                    **NOT_FOUND,
                },
            }
        },
        "/api/v1/events": {
            "post": {
                "operationId": "ingestEvents",
                "summary": "Report events; all or nothing, retries are stored once",
                "tags": ["events"],
                "security": [{"bearerAuth": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("EventBatch")}}},
                "responses": {"202": _json(_ref("IngestResult"), "Stored"), **INGEST_ERRORS},
            }
        },
        "/v1/traces": {
            "post": {
                "operationId": "ingestOtlpTraces",
                "summary": "OTLP/HTTP traces; messaging spans become events",
                "tags": ["events"],
                "security": [{"bearerAuth": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                        "application/json": {"schema": {"type": "object", "description": "ExportTraceServiceRequest"}},
                    },
                },
                "responses": {
                    "200": {
                        "description": "ExportTraceServiceResponse",
                        "content": {
                            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                            "application/json": {"schema": {"type": "object"}},
                        },
                    },
                    **OTLP_ERRORS,
                },
            }
        },
        "/api/v1/traces/{trace_id}": {
            "get": {
                "operationId": "getTrace",
                "summary": "A trace's events in causal/time order",
                "tags": ["events"],
                "parameters": [{"name": "trace_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": _json(_ref("Trace"), "The trace"),
                    **READ_ERRORS,
                    "404": _error("Unknown trace"),
                },
            }
        },
        "/api/v1/pathways": {
            "get": {
                "operationId": "listPathways",
                "summary": "Routes traces took from their first published to their last processed event, "
                           "with latency from the origin",
                "tags": ["events"],
                "parameters": [SINCE_PARAM, UNTIL_PARAM],
                "responses": {
                    "200": _json({"type": "array", "items": _ref("Pathway")}, "Every route taken in the range"),
                    "400": _error("A bad query parameter, named in errors[].loc"),
                    **READ_ERRORS,
                },
            }
        },
        "/api/v1/transactions": {
            "get": {
                "operationId": "listTransactions",
                "summary": "Business transactions of the declared flows, newest first",
                "tags": ["events"],
                "parameters": [
                    {"name": "name", "in": "query", "required": False, "schema": {"type": "string"}},
                    {"name": "state", "in": "query", "required": False,
                     "schema": {"enum": list(TransactionState.values)}},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": _json({"type": "array", "items": _ref("Transaction")},
                                 "One page; a Link header with rel=next points at the next"),
                    "400": _error("A bad query parameter, named in errors[].loc"),
                    **READ_ERRORS,
                },
            }
        },
        "/api/v1/flow": {
            "get": {
                "operationId": "getFlow",
                "summary": "Services and topics with the events between them",
                "tags": ["events"],
                "parameters": [
                    SINCE_PARAM, UNTIL_PARAM,
                    {"name": "top", "in": "query", "required": False,
                     "description": "Keep the n busiest nodes and fold the rest into one \"others\" service and "
                                    "topic (node field folded: how many nodes it stands for). Default: every node.",
                     "schema": {"type": "integer", "minimum": 2, "maximum": 10000}},
                ],
                "responses": {
                    "200": _json(_ref("Flow"), "The flow graph"),
                    "400": _error("A bad query parameter, named in errors[].loc"),
                    **READ_ERRORS,
                },
            }
        },
        "/api/v1/alerts": {
            "get": {
                "operationId": "listAlerts",
                "summary": "Alerts, optionally only those in one state",
                "tags": ["alerts"],
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": AlertState.values},
                    },
                    {
                        "name": "severity",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": Severity.values},
                    },
                    *[
                        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                        for name in ("cluster", "group", "topic", "rule")
                    ],
                    *PAGE_PARAMS,
                ],
                "responses": {
                    "200": _paged({"type": "array", "items": _ref("Alert")}, "Alerts, newest first (one page with limit)"),
                    "400": _error("A bad query parameter, named in errors[].loc"),
                    **READ_ERRORS,
                },
            }
        },
        "/api/v1/alerts/{alert_id}/ack": {
            "post": {
                "operationId": "acknowledgeAlert",
                "summary": "Acknowledge an alert (a session needs its CSRF token)",
                "tags": ["alerts"],
                "parameters": [{"name": "alert_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {"type": "object", "properties": {"note": {"type": "string"}}}
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("Alert"), "The acknowledged alert"),
                    "400": _error("A bad body, named in errors[].loc"),
                    **ACK_ERRORS,
                    "404": _error("Unknown alert"),
                    "409": _error("The alert cannot be acknowledged in its state"),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "getMetrics",
                "summary": "Prometheus text exposition of lag and poller health",
                "tags": ["lag"],
                "description": (
                    "kafka_consumergroup_lag{cluster,group,topic,partition}, "
                    "kafka_consumergroup_lag_seconds{cluster,group,topic,partition}, group status, "
                    "poll duration, requests per cycle and poll errors per cluster. "
                    "granularity (or the setting MONITOR_METRICS_GRANULARITY): partition (default: "
                    "per-partition and per-topic series), topic (kafka_consumergroup_topic_lag{cluster,group,topic} "
                    "and _seconds only) or group (per-group series only)."
                ),
                "parameters": [{"name": "granularity", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": ["partition", "topic", "group"]}}],
                "responses": {
                    "200": {
                        "description": "Prometheus text format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **READ_ERRORS,
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness: the web process is up",
                "tags": ["health"],
                "security": PUBLIC,
                "responses": {"200": _json(_ref("Health"), "Up")},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: the database and Redis answer",
                "tags": ["health"],
                "security": PUBLIC,
                "responses": {"200": _json(_ref("Health"), "Ready"), "503": _json(_ref("Health"), "Not ready")},
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "tags": ["meta"],
                "security": PUBLIC,
                "responses": {"200": {"description": "OpenAPI 3.1 document", "content": {"application/json": {}}}},
            }
        },
    },
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "A token from `manage.py issue_token NAME --scopes read,ingest`",
            },
            "sessionCookie": {
                "type": "apiKey",
                "in": "cookie",
                "name": "sessionid",
                "description": "A logged-in dashboard session (read only)",
            },
        },
    },
}


@api_view(scope=None)
def openapi_document(request: HttpRequest) -> JsonResponse:
    return JsonResponse(DOCUMENT)
