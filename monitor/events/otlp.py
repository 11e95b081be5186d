"""OTLP traces -> event reports: Kafka producer and consumer spans become events.

Both OTLP/HTTP encodings are decoded into one plain form (:class:`SpanRecord`), then
mapped by :func:`span_events`, which reads every generation of the messaging semantic
conventions:

* stage: ``messaging.operation.type`` (1.26+: create/send/receive/process/settle) or
  ``messaging.operation`` (before: publish/receive/process), else the span kind
  (PRODUCER -> published, CONSUMER -> consumed); a consumer span with status ERROR is
  ``failed``; the ``event.stage`` attribute overrides (e.g. ``dead_lettered``);
* topic: ``messaging.destination.name``, ``messaging.source.name``, ``messaging.destination``;
* consumer group: ``messaging.consumer.group.name``, ``messaging.kafka.consumer.group``,
  ``messaging.kafka.consumer_group``;
* offset: ``messaging.kafka.offset``, ``messaging.kafka.message.offset``;
* partition: ``messaging.destination.partition.id``, ``messaging.kafka.destination.partition``,
  ``messaging.kafka.source.partition``, ``messaging.kafka.partition``;
* key: ``messaging.kafka.message.key``, ``messaging.kafka.message_key``;
* event id: ``messaging.message.id``, ``messaging.message_id``, ``cloudevents.event_id``;
  without one, the span id of the producer: the producer's own span id, and on the
  consumer side the linked (or remote parent) producer context. Both sides then name
  the message alike.

Span links connect a consumer to the producer's context: a consumer event is stored in
the producer's trace with the producer span as its parent. A batch receive with one
link per message becomes one event per link.
"""
from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from monitor.choices import Stage
from monitor.events.config import IngestLimits
from monitor.events.ingest import EventRow, FieldError, validate_event

SPAN_KIND_PRODUCER = 4
SPAN_KIND_CONSUMER = 5
STATUS_CODE_ERROR = 2
_SPAN_KIND_NAMES = {"SPAN_KIND_PRODUCER": SPAN_KIND_PRODUCER, "SPAN_KIND_CONSUMER": SPAN_KIND_CONSUMER}

_OPERATION_STAGE = {
    "publish": Stage.PUBLISHED, "send": Stage.PUBLISHED, "create": Stage.PUBLISHED,
    "receive": Stage.CONSUMED,
    "process": Stage.PROCESSED, "deliver": Stage.PROCESSED,
}
_TOPIC_KEYS = ("messaging.destination.name", "messaging.source.name", "messaging.destination")
_GROUP_KEYS = ("messaging.consumer.group.name", "messaging.kafka.consumer.group", "messaging.kafka.consumer_group")
_OFFSET_KEYS = ("messaging.kafka.offset", "messaging.kafka.message.offset")
_PARTITION_KEYS = ("messaging.destination.partition.id", "messaging.kafka.destination.partition",
                   "messaging.kafka.source.partition", "messaging.kafka.partition")
_KEY_KEYS = ("messaging.kafka.message.key", "messaging.kafka.message_key")
_ID_KEYS = ("messaging.message.id", "messaging.message_id", "cloudevents.event_id")
_TYPE_KEYS = ("event.type", "cloudevents.event_type", "messaging.message.type")
_SCHEMA_KEYS = ("event.schema_version", "messaging.message.schema_version")
UNKNOWN_SERVICE = "unknown_service"


class OtlpDecodeError(ValueError):
    """The body is not an OTLP trace export request."""


@dataclass
class SpanRecord:
    service: str
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_unix_nano: int
    error: bool
    attributes: dict[str, Any] = field(default_factory=dict)
    links: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class MappedSpans:
    rows: list[EventRow]
    rejected: int
    messages: list[str]


# -- decoding -----------------------------------------------------------------------------

def decode_protobuf(body: bytes) -> list[SpanRecord]:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpDecodeError(f"not an OTLP ExportTraceServiceRequest: {exc}") from None
    spans: list[SpanRecord] = []
    for resource_spans in request.resource_spans:
        resource = _pb_attributes(resource_spans.resource.attributes)
        service = str(resource.get("service.name") or UNKNOWN_SERVICE)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(SpanRecord(
                    service=service,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    name=span.name,
                    kind=span.kind,
                    start_unix_nano=span.start_time_unix_nano,
                    error=span.status.code == STATUS_CODE_ERROR,
                    attributes=_pb_attributes(span.attributes),
                    links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                ))
    return spans


def _pb_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_pb_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: _pb_value(item.value) for item in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def _pb_attributes(attributes: Iterable[Any]) -> dict[str, Any]:
    return {item.key: _pb_value(item.value) for item in attributes}


def decode_json(payload: object) -> list[SpanRecord]:
    """OTLP/JSON: lowerCamelCase keys, ids as hex strings, enums as integers
    (names and snake_case keys are accepted too). A value of the wrong shape is an
    OtlpDecodeError naming where it is (``resourceSpans[0].scopeSpans[0].spans[3].kind``)."""
    if not isinstance(payload, dict):
        raise OtlpDecodeError("body must be a JSON object with resourceSpans")
    spans: list[SpanRecord] = []
    for index, item in enumerate(_list(payload, "resourceSpans", ("resourceSpans", "resource_spans"))):
        where = f"resourceSpans[{index}]"
        if not isinstance(item, dict):
            raise OtlpDecodeError(f"{where} must be an object")
        resource = _object(item, f"{where}.resource", ("resource",))
        resource_attributes = _json_attributes(_list(resource, f"{where}.resource.attributes", ("attributes",)))
        service_name = resource_attributes.get("service.name")
        service = service_name if isinstance(service_name, str) and service_name else UNKNOWN_SERVICE
        scopes = _list(item, f"{where}.scopeSpans", ("scopeSpans", "scope_spans")) + \
            _list(item, f"{where}.instrumentationLibrarySpans",
                  ("instrumentationLibrarySpans", "instrumentation_library_spans"))
        for scope_index, scope in enumerate(scopes):
            if not isinstance(scope, dict):
                raise OtlpDecodeError(f"{where}.scopeSpans[{scope_index}] must be an object")
            for span_index, span in enumerate(_list(scope, f"{where}.scopeSpans[{scope_index}].spans", ("spans",))):
                spans.append(_json_span(span, f"{where}.scopeSpans[{scope_index}].spans[{span_index}]", service))
    return spans


def _json_span(span: object, where: str, service: str) -> SpanRecord:
    if not isinstance(span, dict):
        raise OtlpDecodeError(f"{where} must be an object")
    kind = _get(span, "kind")
    if kind is None:
        kind_number = 0
    elif isinstance(kind, str):
        kind_number = _SPAN_KIND_NAMES.get(kind, 0)
    elif type(kind) is int:
        kind_number = kind
    else:
        raise OtlpDecodeError(f"{where}.kind must be an integer or a SpanKind name")
    status = _object(span, f"{where}.status", ("status",))
    code = status.get("code", 0)
    start = _get(span, "startTimeUnixNano", "start_time_unix_nano")
    try:
        start_unix_nano = 0 if start is None else _json_int(start)
    except ValueError:
        raise OtlpDecodeError(f"{where}.startTimeUnixNano must be an integer number of nanoseconds") from None
    links = []
    for link_index, link in enumerate(_list(span, f"{where}.links", ("links",))):
        if not isinstance(link, dict):
            raise OtlpDecodeError(f"{where}.links[{link_index}] must be an object")
        links.append((_json_id(_get(link, "traceId", "trace_id")), _json_id(_get(link, "spanId", "span_id"))))
    name = _get(span, "name")
    return SpanRecord(
        service=service,
        trace_id=_json_id(_get(span, "traceId", "trace_id")),
        span_id=_json_id(_get(span, "spanId", "span_id")),
        parent_span_id=_json_id(_get(span, "parentSpanId", "parent_span_id")),
        name=name if isinstance(name, str) else "",
        kind=kind_number,
        start_unix_nano=start_unix_nano,
        error=code in (STATUS_CODE_ERROR, "STATUS_CODE_ERROR"),
        attributes=_json_attributes(_list(span, f"{where}.attributes", ("attributes",))),
        links=links,
    )


def _get(mapping: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in mapping:
            return mapping[name]
    return None


def _list(mapping: Mapping[str, Any], where: str, names: tuple[str, ...]) -> list[Any]:
    value = _get(mapping, *names)
    if value is None:
        return []
    if not isinstance(value, list):
        raise OtlpDecodeError(f"{where} must be a list")
    return value


def _object(mapping: Mapping[str, Any], where: str, names: tuple[str, ...]) -> dict[str, Any]:
    value = _get(mapping, *names)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise OtlpDecodeError(f"{where} must be an object")
    return value


def _json_id(value: object) -> str:
    # OTLP/JSON carries ids as hex; a base64 id (proto3 JSON mapping) is converted.
    if not value or not isinstance(value, str):
        return ""
    lowered = value.lower()
    if all(ch in "0123456789abcdef" for ch in lowered) and len(lowered) in (16, 32):
        return lowered
    try:
        return base64.b64decode(value, validate=True).hex()
    except ValueError:
        return value  # validation rejects it with a message


def _json_int(value: object) -> int:
    """An int64 as OTLP/JSON writes it (a string or a number); ValueError otherwise."""
    if type(value) is int:
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdecimal() and len(text) <= 40:
            return int(text)
    if type(value) is float and math.isfinite(value) and value.is_integer():
        return int(value)
    raise ValueError(f"{value!r} is not an integer")


def _json_value(value: object) -> Any:
    if not isinstance(value, dict):
        return None
    if "stringValue" in value or "string_value" in value:
        text = _get(value, "stringValue", "string_value")
        return text if isinstance(text, str) else None
    if "intValue" in value or "int_value" in value:
        try:
            return _json_int(_get(value, "intValue", "int_value"))
        except ValueError:
            return None
    if "boolValue" in value or "bool_value" in value:
        return _get(value, "boolValue", "bool_value") is True
    if "doubleValue" in value or "double_value" in value:
        number = _get(value, "doubleValue", "double_value")
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            return None
        return number if math.isfinite(number) else None
    if "arrayValue" in value or "array_value" in value:
        array = _get(value, "arrayValue", "array_value")
        items = array.get("values") if isinstance(array, dict) else None
        return [_json_value(v) for v in items] if isinstance(items, list) else []
    if "kvlistValue" in value or "kvlist_value" in value:
        kvlist = _get(value, "kvlistValue", "kvlist_value")
        return _json_attributes(kvlist.get("values") if isinstance(kvlist, dict) else None)
    if "bytesValue" in value or "bytes_value" in value:
        encoded = _get(value, "bytesValue", "bytes_value")
        try:
            return base64.b64decode(encoded).hex() if isinstance(encoded, str) else None
        except ValueError:
            return None
    return None


def _json_attributes(items: object) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {item["key"]: _json_value(item.get("value")) for item in items
            if isinstance(item, dict) and isinstance(item.get("key"), str)}


# -- mapping ------------------------------------------------------------------------------------

def _first(attributes: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        value = attributes.get(key)
        if value is not None and value != "":
            return value
    return None


def _as_int(value: Any) -> Any:
    """Partitions arrive as strings in newer conventions; keep anything else for validation."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return value


def _stage(span: SpanRecord) -> str | None:
    override = span.attributes.get("event.stage")
    if isinstance(override, str) and override in Stage.values:
        return override
    operation = _first(span.attributes, ("messaging.operation.type", "messaging.operation"))
    if isinstance(operation, str) and operation.lower() in _OPERATION_STAGE:
        stage = _OPERATION_STAGE[operation.lower()]
    elif operation is not None:
        return None  # settle, ack, ...: not a delivery of an event
    elif span.kind == SPAN_KIND_PRODUCER:
        stage = Stage.PUBLISHED
    elif span.kind == SPAN_KIND_CONSUMER:
        stage = Stage.CONSUMED
    else:
        return None
    if span.error:
        # A failed send published nothing; a failed receive or process is a failed delivery.
        return None if stage == Stage.PUBLISHED else Stage.FAILED
    return stage


def is_kafka_span(span: SpanRecord) -> bool:
    system = span.attributes.get("messaging.system")
    return isinstance(system, str) and system.lower() == "kafka"


def span_events(spans: Iterable[SpanRecord], limits: IngestLimits | None = None,
                now: dt.datetime | None = None) -> MappedSpans:
    """Events of the Kafka producer/consumer spans; other spans are ignored (not rejected)."""
    limits = limits or IngestLimits.from_settings()
    now = now or dt.datetime.now(dt.timezone.utc)
    spans = list(spans)
    by_id = {span.span_id: span for span in spans}
    rows: list[EventRow] = []
    rejected = 0
    over_limit = False
    messages: list[str] = []
    for span in spans:
        if not is_kafka_span(span):
            continue
        stage = _stage(span)
        if stage is None:
            continue
        if len(span.links) > limits.max_links_per_span:
            rejected += 1
            if len(messages) < 5:
                messages.append(f"span {span.span_id or '?'}: {len(span.links)} links; "
                                f"at most {limits.max_links_per_span} per span")
            continue
        errors: list[FieldError] = []
        span_rows = []
        for raw in _raw_events(span, stage, by_id):
            row = validate_event(raw, 0, now, limits, errors)
            if row is not None:
                span_rows.append(row)
        if errors:
            rejected += 1
            if len(messages) < 5:
                detail = "; ".join(f"{error.loc[-1]} {error.msg}" for error in errors[:3])
                messages.append(f"span {span.span_id or '?'} ({span.name}): {detail}")
            continue
        if len(rows) + len(span_rows) > limits.max_events:
            # The JSON API's cap per request holds here too: the rest is rejected, not stored.
            rejected += 1
            if not over_limit:
                over_limit = True
                messages.append(f"at most {limits.max_events} events per request; later spans were rejected")
            continue
        rows.extend(span_rows)
    return MappedSpans(rows=rows, rejected=rejected, messages=messages)


def _raw_events(span: SpanRecord, stage: str, by_id: Mapping[str, SpanRecord]) -> list[dict[str, Any]]:
    attributes = span.attributes
    topic = _first(attributes, _TOPIC_KEYS)
    partition = _as_int(_first(attributes, _PARTITION_KEYS))
    offset = _as_int(_first(attributes, _OFFSET_KEYS))
    message_id = _first(attributes, _ID_KEYS)
    event_type = _first(attributes, _TYPE_KEYS) or topic or span.name
    base: dict[str, Any] = {
        "type": str(event_type),
        "service": span.service,
        "stage": stage,
        "timestamp": _iso(span.start_unix_nano),
    }
    for name, value in (("topic", topic), ("partition", partition), ("offset", offset),
                        ("key", _first(attributes, _KEY_KEYS)),
                        ("schema_version", _as_int(_first(attributes, _SCHEMA_KEYS)))):
        if value is not None:
            base[name] = value if name not in ("topic", "key") else str(value)
    if stage != Stage.PUBLISHED:
        group = _first(attributes, _GROUP_KEYS)
        if group is not None:
            base["consumer_group"] = str(group)

    if stage == Stage.PUBLISHED:
        raw = {**base, "event_id": str(message_id) if message_id is not None else span.span_id,
               "trace_id": span.trace_id, "span_id": span.span_id}
        if span.parent_span_id:
            raw["parent_span_id"] = span.parent_span_id
        return [raw]

    links = [link for link in span.links if link[0] and link[1]]
    if message_id is None and len(links) > 1:
        # A batch receive: each link is the context of one message.
        return [{**base, "event_id": link_span, "trace_id": link_trace, "span_id": span.span_id,
                 "parent_span_id": link_span} for link_trace, link_span in links]
    if links:
        producer_trace, producer_span = links[0]
    else:
        producer_trace, producer_span = span.trace_id, _producer_parent(span, by_id)
    if message_id is not None:
        event_id = str(message_id)
    elif producer_span:
        event_id = producer_span
    elif topic is not None and partition is not None and offset is not None:
        event_id = f"{topic}/{partition}/{offset}"
    else:
        event_id = span.span_id
    raw = {**base, "event_id": event_id, "trace_id": producer_trace, "span_id": span.span_id}
    if producer_span or span.parent_span_id:
        raw["parent_span_id"] = producer_span or span.parent_span_id
    return [raw]


def _producer_parent(span: SpanRecord, by_id: Mapping[str, SpanRecord]) -> str:
    """The producer span a consumer span descends from, following consumer parents
    (process under receive) within this request; a parent outside the request is the
    remote context extracted from the message, i.e. the producer's."""
    seen = set()
    current = span
    while current.parent_span_id and current.parent_span_id not in seen:
        seen.add(current.parent_span_id)
        parent = by_id.get(current.parent_span_id)
        if parent is None:
            return current.parent_span_id
        if parent.kind == SPAN_KIND_PRODUCER or (is_kafka_span(parent) and _stage(parent) == Stage.PUBLISHED):
            return parent.span_id
        if parent.kind != SPAN_KIND_CONSUMER:
            return ""
        if parent.links:
            return parent.links[0][1]
        current = parent
    return ""


def _iso(unix_nano: int) -> str:
    if not unix_nano:
        return ""
    seconds, nanos = divmod(unix_nano, 1_000_000_000)
    try:
        moment = dt.datetime.fromtimestamp(seconds, dt.timezone.utc) + dt.timedelta(microseconds=nanos // 1000)
    except (OverflowError, OSError, ValueError):
        return f"{unix_nano} ns"  # validation rejects it, naming the timestamp
    return moment.isoformat()
