"""POST /v1/traces: OTLP/HTTP trace export (protobuf or JSON, optionally gzip), scope ``ingest``.

Kafka producer and consumer spans become event reports; other spans are accepted and
ignored. Spans that look like Kafka events but cannot be stored are counted in the OTLP
``partial_success`` (``rejected_spans`` with an ``error_message``), as OTLP specifies;
the rest of the request is stored.
"""
from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from monitor.api.auth import api_view
from monitor.api.errors import ApiError
from monitor.api.events import token_id_of, decode_json, read_body
from monitor.api.limits import LimitExceeded, check_new_names, check_request_rate
from monitor.choices import TokenScope
from monitor.events import otlp
from monitor.events.config import IngestLimits
from monitor.events.store import store_rows

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def _content_type(request: HttpRequest) -> str:
    return (request.content_type or "").split(";")[0].strip().lower()


def _status_response(status: int, message: str, content_type: str,
                     headers: dict[str, str] | None = None) -> HttpResponse:
    """An OTLP error: a google.rpc.Status in the request's encoding (code 8,
    RESOURCE_EXHAUSTED, for a limit; 3, INVALID_ARGUMENT, otherwise)."""
    code = 8 if status == 429 else 3
    if content_type == PROTOBUF:
        from google.rpc.status_pb2 import Status

        response = HttpResponse(Status(code=code, message=message).SerializeToString(), status=status,
                                content_type=PROTOBUF)
    else:
        response = HttpResponse(json.dumps({"code": code, "message": message}), status=status, content_type=JSON)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _export_response(rejected: int, message: str, content_type: str) -> HttpResponse:
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTracePartialSuccess,
        ExportTraceServiceResponse,
    )

    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.CopyFrom(ExportTracePartialSuccess(rejected_spans=rejected, error_message=message))
    if content_type == PROTOBUF:
        return HttpResponse(response.SerializeToString(), content_type=PROTOBUF)
    return HttpResponse(json.dumps(MessageToDict(response)), content_type=JSON)


@api_view(scope=TokenScope.INGEST, methods=("POST",))
def export_traces(request: HttpRequest) -> HttpResponse:
    content_type = _content_type(request)
    if content_type not in (PROTOBUF, JSON):
        return _status_response(415, f"Content-Type must be {PROTOBUF} or {JSON}", JSON)
    limits = IngestLimits.from_settings()
    now = timezone.now()
    token_id = token_id_of(request)
    try:
        check_request_rate(token_id, now)
        body = read_body(request, limits.max_bytes)
        spans = otlp.decode_protobuf(body) if content_type == PROTOBUF else otlp.decode_json(decode_json(body))
    except ApiError as error:
        return _status_response(error.status, error.detail, content_type, error.headers)
    except otlp.OtlpDecodeError as exc:
        return _status_response(400, str(exc), content_type)
    except RecursionError:
        return _status_response(400, "attribute values are nested too deeply", content_type)
    mapped = otlp.span_events(spans, limits, now)
    try:
        check_new_names(token_id, mapped.rows, now)
    except LimitExceeded as error:
        return _status_response(error.status, error.detail, content_type, error.headers)
    store_rows(mapped.rows, now)
    message = ""
    if mapped.rejected:
        message = f"{mapped.rejected} Kafka span(s) could not become events: " + " | ".join(mapped.messages)
    return _export_response(mapped.rejected, message, content_type)
