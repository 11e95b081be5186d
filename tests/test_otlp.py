"""POST /v1/traces: OTLP/HTTP (protobuf and JSON, gzip) -> events, every generation of
the messaging semantic conventions, span links, partial success."""
import datetime as dt
import gzip
import json

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from monitor.events import store

PRODUCER_TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
PRODUCER_SPAN = bytes.fromhex("b7ad6b7169203331")
CONSUMER_TRACE = bytes.fromhex("11111111111111111111111111111111")
START = int(dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc).timestamp() * 1e9)


@pytest.fixture(autouse=True)
def _fresh_registry_cache():
    store.forget_registry_cache()
    yield


def value(raw):
    if isinstance(raw, bool):
        return AnyValue(bool_value=raw)
    if isinstance(raw, int):
        return AnyValue(int_value=raw)
    return AnyValue(string_value=str(raw))


def span(name, kind, attributes, span_id, trace_id=PRODUCER_TRACE, parent=b"", links=(), error=False,
         start=START):
    return Span(
        trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name, kind=kind,
        start_time_unix_nano=start, end_time_unix_nano=start + 1_000_000,
        attributes=[KeyValue(key=k, value=value(v)) for k, v in attributes.items()],
        links=[Span.Link(trace_id=t, span_id=s) for t, s in links],
        status=Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_UNSET),
    )


def export(service, *spans):
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))]),
        scope_spans=[ScopeSpans(spans=list(spans))],
    )])


def post_protobuf(client, token, request, gzipped=False):
    body = request.SerializeToString()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    if gzipped:
        body = gzip.compress(body)
        headers["HTTP_CONTENT_ENCODING"] = "gzip"
    return client.post("/v1/traces", body, content_type="application/x-protobuf", **headers)


def events():
    from monitor.models import Event

    return list(Event.objects.order_by("timestamp", "stage", "event_id").values(
        "event_id", "type", "service", "stage", "topic", "partition", "offset", "key", "consumer_group",
        "trace_id", "span_id", "parent_span_id"))


PRODUCER_NEW = {  # semantic conventions 1.26+
    "messaging.system": "kafka", "messaging.operation.type": "send", "messaging.destination.name": "orders",
    "messaging.destination.partition.id": "2", "messaging.kafka.offset": 41, "messaging.kafka.message.key": "order-7",
}


@pytest.mark.django_db
def test_producer_and_linked_consumer_spans_become_events_in_the_producers_trace(client, ingest_token):
    consumer_span = bytes.fromhex("c0c0c0c0c0c0c0c0")
    response = post_protobuf(client, ingest_token, export(
        "orders", span("orders send", Span.SPAN_KIND_PRODUCER, PRODUCER_NEW, PRODUCER_SPAN)))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-protobuf"
    parsed = ExportTraceServiceResponse.FromString(response.content)
    assert parsed.partial_success.rejected_spans == 0

    consumer = span("orders process", Span.SPAN_KIND_CONSUMER, {
        "messaging.system": "kafka", "messaging.operation.type": "process", "messaging.destination.name": "orders",
        "messaging.consumer.group.name": "billing", "messaging.destination.partition.id": "2",
        "messaging.kafka.offset": 41,
    }, consumer_span, trace_id=CONSUMER_TRACE, links=[(PRODUCER_TRACE, PRODUCER_SPAN)], start=START + 10**9)
    assert post_protobuf(client, ingest_token, export("billing", consumer), gzipped=True).status_code == 200

    assert events() == [
        {"event_id": PRODUCER_SPAN.hex(), "type": "orders", "service": "orders", "stage": "published",
         "topic": "orders", "partition": 2, "offset": 41, "key": "order-7", "consumer_group": "",
         "trace_id": PRODUCER_TRACE.hex(), "span_id": PRODUCER_SPAN.hex(), "parent_span_id": ""},
        {"event_id": PRODUCER_SPAN.hex(), "type": "orders", "service": "billing", "stage": "processed",
         "topic": "orders", "partition": 2, "offset": 41, "key": "", "consumer_group": "billing",
         "trace_id": PRODUCER_TRACE.hex(), "span_id": consumer_span.hex(), "parent_span_id": PRODUCER_SPAN.hex()},
    ]


@pytest.mark.django_db
def test_older_semantic_conventions_are_read_too(client, ingest_token):
    old_producer = span("orders publish", Span.SPAN_KIND_PRODUCER, {
        "messaging.system": "kafka", "messaging.operation": "publish", "messaging.destination": "orders",
        "messaging.kafka.partition": 1, "messaging.kafka.message_key": "k1", "messaging.message_id": "evt-9",
    }, PRODUCER_SPAN)
    receive = span("orders receive", Span.SPAN_KIND_CONSUMER, {
        "messaging.system": "kafka", "messaging.operation": "receive", "messaging.source.name": "orders",
        "messaging.kafka.consumer.group": "shipping", "messaging.kafka.source.partition": 1,
        "messaging.kafka.message.offset": 5, "messaging.message.id": "evt-9",
    }, bytes.fromhex("d1d1d1d1d1d1d1d1"), parent=PRODUCER_SPAN, start=START + 1000)
    oldest = span("orders", Span.SPAN_KIND_CONSUMER, {  # no operation at all: the span kind decides
        "messaging.system": "kafka", "messaging.destination": "orders",
        "messaging.kafka.consumer_group": "audit", "messaging.message_id": "evt-9",
    }, bytes.fromhex("e1e1e1e1e1e1e1e1"), parent=PRODUCER_SPAN, start=START + 2000)
    assert post_protobuf(client, ingest_token, export("mixed", old_producer, receive, oldest)).status_code == 200
    rows = {(e["stage"], e["consumer_group"]): e for e in events()}
    assert set(rows) == {("published", ""), ("consumed", "shipping"), ("consumed", "audit")}
    assert {e["event_id"] for e in rows.values()} == {"evt-9"}
    assert rows[("published", "")]["partition"] == 1 and rows[("published", "")]["key"] == "k1"
    assert rows[("consumed", "shipping")]["offset"] == 5 and rows[("consumed", "shipping")]["partition"] == 1


@pytest.mark.django_db
def test_consumer_without_link_names_the_message_by_its_remote_producer_parent(client, ingest_token):
    process = span("orders process", Span.SPAN_KIND_CONSUMER, {
        "messaging.system": "kafka", "messaging.operation.type": "process", "messaging.destination.name": "orders",
        "messaging.consumer.group.name": "billing",
    }, bytes.fromhex("f1f1f1f1f1f1f1f1"), parent=PRODUCER_SPAN)
    post_protobuf(client, ingest_token, export("billing", process))
    [row] = events()
    assert (row["event_id"], row["parent_span_id"], row["trace_id"]) == (
        PRODUCER_SPAN.hex(), PRODUCER_SPAN.hex(), PRODUCER_TRACE.hex())


@pytest.mark.django_db
def test_failed_processing_and_override_stage_and_batch_receive(client, ingest_token):
    base = {"messaging.system": "kafka", "messaging.destination.name": "orders",
            "messaging.consumer.group.name": "billing"}
    failed = span("process", Span.SPAN_KIND_CONSUMER, {**base, "messaging.operation.type": "process",
                                                         "messaging.message.id": "a"},
                  bytes.fromhex("0101010101010101"), error=True)
    dead = span("dlq", Span.SPAN_KIND_CONSUMER, {**base, "messaging.operation.type": "process",
                                                   "messaging.message.id": "b", "event.stage": "dead_lettered"},
                bytes.fromhex("0202020202020202"))
    batch = span("receive", Span.SPAN_KIND_CONSUMER, {**base, "messaging.operation.type": "receive",
                                                        "messaging.batch.message_count": 2},
                 bytes.fromhex("0303030303030303"),
                 links=[(PRODUCER_TRACE, bytes.fromhex("aaaaaaaaaaaaaaaa")),
                        (CONSUMER_TRACE, bytes.fromhex("bbbbbbbbbbbbbbbb"))])
    post_protobuf(client, ingest_token, export("billing", failed, dead, batch))
    got = sorted((e["event_id"], e["stage"], e["trace_id"]) for e in events())
    assert got == [
        ("a", "failed", PRODUCER_TRACE.hex()),
        ("aaaaaaaaaaaaaaaa", "consumed", PRODUCER_TRACE.hex()),
        ("b", "dead_lettered", PRODUCER_TRACE.hex()),
        ("bbbbbbbbbbbbbbbb", "consumed", CONSUMER_TRACE.hex()),
    ]


@pytest.mark.django_db
def test_spans_that_are_not_kafka_messages_are_accepted_and_ignored(client, ingest_token):
    http = span("GET /orders", Span.SPAN_KIND_SERVER, {"http.method": "GET"}, bytes.fromhex("0404040404040404"))
    rabbit = span("publish", Span.SPAN_KIND_PRODUCER, {"messaging.system": "rabbitmq"},
                  bytes.fromhex("0505050505050505"))
    settle = span("ack", Span.SPAN_KIND_CLIENT, {"messaging.system": "kafka", "messaging.operation.type": "settle"},
                  bytes.fromhex("0606060606060606"))
    response = post_protobuf(client, ingest_token, export("web", http, rabbit, settle))
    assert response.status_code == 200
    assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")
    assert events() == []


@pytest.mark.django_db
def test_invalid_kafka_spans_are_rejected_as_partial_success_and_the_rest_is_stored(client, ingest_token):
    good = span("send", Span.SPAN_KIND_PRODUCER, PRODUCER_NEW, PRODUCER_SPAN)
    bad_topic = span("send", Span.SPAN_KIND_PRODUCER, {**PRODUCER_NEW, "messaging.destination.name": "bad topic"},
                     bytes.fromhex("0707070707070707"))
    zero_trace = span("send", Span.SPAN_KIND_PRODUCER, PRODUCER_NEW, bytes.fromhex("0808080808080808"),
                      trace_id=bytes(16))
    response = post_protobuf(client, ingest_token, export("orders", good, bad_topic, zero_trace))
    assert response.status_code == 200
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == 2
    assert "topic" in partial.error_message and "trace_id" in partial.error_message
    assert [e["span_id"] for e in events()] == [PRODUCER_SPAN.hex()]


@pytest.mark.django_db
def test_otlp_json_encoding_with_hex_ids_is_accepted(client, ingest_token):
    request = export("orders", span("send", Span.SPAN_KIND_PRODUCER, PRODUCER_NEW, PRODUCER_SPAN),
                     span("bad", Span.SPAN_KIND_PRODUCER, {**PRODUCER_NEW, "messaging.kafka.offset": -3},
                          bytes.fromhex("0909090909090909")))
    payload = MessageToDict(request)
    for resource_spans in payload["resourceSpans"]:
        for scope in resource_spans["scopeSpans"]:
            for item in scope["spans"]:  # OTLP/JSON: ids are hex, not base64
                item["traceId"] = PRODUCER_TRACE.hex()
                item["spanId"] = PRODUCER_SPAN.hex() if item["name"] == "send" else "0909090909090909"
                item["kind"] = 4
    response = client.post("/v1/traces", json.dumps(payload), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {ingest_token}")
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"  # int64 is a string in OTLP/JSON
    assert "offset" in partial["errorMessage"]
    [row] = events()
    assert (row["event_id"], row["partition"], row["offset"]) == (PRODUCER_SPAN.hex(), 2, 41)


@pytest.mark.django_db
def test_same_export_sent_twice_is_stored_once(client, ingest_token):
    from monitor.models import Event

    request = export("orders", span("send", Span.SPAN_KIND_PRODUCER, PRODUCER_NEW, PRODUCER_SPAN))
    post_protobuf(client, ingest_token, request)
    post_protobuf(client, ingest_token, request)
    assert Event.objects.count() == 1


@pytest.mark.django_db
def test_undecodable_body_and_wrong_content_type_are_refused(client, ingest_token):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {ingest_token}"}
    garbage = client.post("/v1/traces", b"\xff\xff\xff not protobuf", content_type="application/x-protobuf", **auth)
    assert garbage.status_code == 400
    from google.rpc.status_pb2 import Status

    assert Status.FromString(garbage.content).message
    assert client.post("/v1/traces", "{not json", content_type="application/json", **auth).status_code == 400
    assert client.post("/v1/traces", "x", content_type="text/plain", **auth).status_code == 415


@pytest.mark.django_db
def test_otlp_needs_a_token_with_the_ingest_scope(client, read_token):
    request = export("orders", span("send", Span.SPAN_KIND_PRODUCER, PRODUCER_NEW, PRODUCER_SPAN))
    assert client.post("/v1/traces", request.SerializeToString(),
                       content_type="application/x-protobuf").status_code == 401
    assert post_protobuf(client, read_token, request).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_real_opentelemetry_sdk_exporter_delivers_kafka_spans(live_server):
    from opentelemetry import trace as otel_trace
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource as SdkResource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from monitor.models import ApiToken, Event

    _, token = ApiToken.issue("otel-sdk", ["ingest"])
    exporter = OTLPSpanExporter(endpoint=f"{live_server.url}/v1/traces", headers={"Authorization": f"Bearer {token}"},
                                compression=Compression.Gzip)
    provider = TracerProvider(resource=SdkResource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("orders send", kind=otel_trace.SpanKind.PRODUCER, attributes={
            "messaging.system": "kafka", "messaging.operation.type": "send", "messaging.destination.name": "orders",
            "messaging.message.id": "evt-sdk-1"}) as producer:
        producer_context = producer.get_span_context()
    with tracer.start_as_current_span("orders process", kind=otel_trace.SpanKind.CONSUMER,
                                      context=otel_trace.set_span_in_context(otel_trace.INVALID_SPAN),
                                      links=[otel_trace.Link(producer_context)], attributes={
            "messaging.system": "kafka", "messaging.operation.type": "process",
            "messaging.destination.name": "orders", "messaging.consumer.group.name": "billing",
            "messaging.message.id": "evt-sdk-1"}):
        pass
    provider.shutdown()
    rows = list(Event.objects.order_by("stage").values_list("event_id", "stage", "service", "trace_id"))
    trace_hex = f"{producer_context.trace_id:032x}"
    assert rows == [("evt-sdk-1", "processed", "checkout", trace_hex), ("evt-sdk-1", "published", "checkout", trace_hex)]


# -- limits and hostile shapes (issue 11) --------------------------------------------------

def _json_post(client, token, body):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/v1/traces", data, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.mark.django_db
def test_a_span_with_more_links_than_the_limit_is_rejected_as_partial_success(client, ingest_token):
    links = [(PRODUCER_TRACE, (i + 1).to_bytes(8, "big")) for i in range(100_000)]
    consumer = span("orders receive", Span.SPAN_KIND_CONSUMER, {
        "messaging.system": "kafka", "messaging.operation.type": "receive", "messaging.destination.name": "orders",
        "messaging.consumer.group.name": "billing"}, bytes.fromhex("c1c1c1c1c1c1c1c1"), links=links)
    response = post_protobuf(client, ingest_token, export("billing", consumer))
    assert response.status_code == 200
    parsed = ExportTraceServiceResponse.FromString(response.content)
    assert parsed.partial_success.rejected_spans == 1
    assert "100000 links; at most 128 per span" in parsed.partial_success.error_message
    assert events() == []


@pytest.mark.django_db
def test_an_export_stores_at_most_the_events_per_request_limit(client, ingest_token, settings):
    settings.MONITOR_INGEST_MAX_EVENTS = 3
    producers = [span("send", Span.SPAN_KIND_PRODUCER, PRODUCER_NEW | {"messaging.kafka.offset": i},
                      (i + 1).to_bytes(8, "big")) for i in range(5)]
    response = post_protobuf(client, ingest_token, export("orders", *producers))
    parsed = ExportTraceServiceResponse.FromString(response.content)
    assert parsed.partial_success.rejected_spans == 2
    assert "at most 3 events per request" in parsed.partial_success.error_message
    assert len(events()) == 3


MALFORMED_JSON_SHAPES = [
    {"resourceSpans": {"a": 1}},
    {"resourceSpans": [1]},
    {"resourceSpans": [{"resource": "orders"}]},
    {"resourceSpans": [{"resource": {"attributes": 7}}]},
    {"resourceSpans": [{"scopeSpans": 5}]},
    {"resourceSpans": [{"scopeSpans": [{"spans": 3}]}]},
    {"resourceSpans": [{"scopeSpans": [{"spans": ["x"]}]}]},
    {"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": {"a": 1}}]}]}]},
    {"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": [4]}]}]}]},
    {"resourceSpans": [{"scopeSpans": [{"spans": [{"status": "ERROR"}]}]}]},
    {"resourceSpans": [{"scopeSpans": [{"spans": [{"links": {"traceId": "x"}}]}]}]},
    {"resourceSpans": [{"scopeSpans": [{"spans": [{"links": [7]}]}]}]},
    {"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": "k=v"}]}]}]},
]


@pytest.mark.django_db
@pytest.mark.parametrize("body", MALFORMED_JSON_SHAPES)
def test_malformed_otlp_json_shapes_are_400_naming_where(client, ingest_token, body):
    response = _json_post(client, ingest_token, body)
    assert response.status_code == 400, response.content
    assert "resourceSpans" in response.json()["message"]


@pytest.mark.django_db
@pytest.mark.parametrize("raw", [
    '{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": 1e999}]}]}]}',
    '[' * 100_000,
    '{"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": "k", "value": ' + '{"kvlistValue": {"values": [{"key": "k", "value": ' * 400 + '{}' + '}]}}' * 400 + '}]}]}]}]}',
])
def test_overflowing_numbers_and_deep_nesting_are_400_not_500(client, ingest_token, raw):
    response = _json_post(client, ingest_token, raw)
    assert response.status_code == 400, response.content


@pytest.mark.django_db
def test_otlp_service_names_with_control_characters_are_rejected_naming_the_field(client, ingest_token):
    response = post_protobuf(client, ingest_token, export(
        "billing\nworker", span("orders send", Span.SPAN_KIND_PRODUCER, PRODUCER_NEW, PRODUCER_SPAN)))
    parsed = ExportTraceServiceResponse.FromString(response.content)
    assert parsed.partial_success.rejected_spans == 1
    assert "service must not contain control characters" in parsed.partial_success.error_message
    assert events() == []


# -- properties: any body is refused (400) or mapped, never raises (issue 11) --------------------

from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st  # noqa: E402

from monitor.events import otlp as otlp_module  # noqa: E402
from monitor.events.config import IngestLimits  # noqa: E402

_TEXT = st.text(st.characters(exclude_categories=()), max_size=20)
_SCALAR = st.none() | st.booleans() | st.integers() | st.floats() | _TEXT
_JSON = st.recursive(_SCALAR, lambda c: st.lists(c, max_size=3) | st.dictionaries(_TEXT, c, max_size=3), max_leaves=15)
_VALUE = st.fixed_dictionaries({}, optional={"stringValue": _JSON, "intValue": _JSON, "boolValue": _JSON,
                                             "doubleValue": _JSON, "bytesValue": _JSON, "arrayValue": _JSON,
                                             "kvlistValue": _JSON}) | _JSON
_ATTRS = st.lists(st.fixed_dictionaries({"key": st.sampled_from(
    ["messaging.system", "messaging.operation.type", "messaging.destination.name", "messaging.kafka.offset",
     "messaging.consumer.group.name", "service.name", "event.stage"]) | _TEXT, "value": _VALUE}), max_size=6) | _JSON
_SPAN = st.fixed_dictionaries({}, optional={
    "traceId": st.from_regex(r"[0-9a-f]{32}", fullmatch=True) | _JSON, "spanId": st.from_regex(
        r"[0-9a-f]{16}", fullmatch=True) | _JSON, "parentSpanId": _JSON, "name": _JSON,
    "kind": st.sampled_from([4, 5, "SPAN_KIND_PRODUCER"]) | _JSON, "startTimeUnixNano": st.integers() | _JSON,
    "status": _JSON, "attributes": _ATTRS, "links": st.lists(_JSON | st.fixed_dictionaries(
        {"traceId": _JSON, "spanId": _JSON}), max_size=3) | _JSON}) | _JSON
_EXPORT = st.fixed_dictionaries({"resourceSpans": st.lists(st.fixed_dictionaries({}, optional={
    "resource": st.fixed_dictionaries({"attributes": _ATTRS}) | _JSON,
    "scopeSpans": st.lists(st.fixed_dictionaries({"spans": st.lists(_SPAN, max_size=3)}) | _JSON, max_size=2) | _JSON,
}) | _JSON, max_size=2) | _JSON}) | _JSON


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=_EXPORT)
def test_any_otlp_json_is_refused_or_mapped_never_raises(payload):
    try:
        spans = otlp_module.decode_json(payload)
    except otlp_module.OtlpDecodeError:
        return
    otlp_module.span_events(spans, IngestLimits(1000, 10**6, 8192), dt.datetime.now(dt.timezone.utc))


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=300) | _EXPORT.map(lambda _: export(
    "orders", span("send", Span.SPAN_KIND_PRODUCER, PRODUCER_NEW, PRODUCER_SPAN)).SerializeToString()))
def test_any_bytes_are_refused_or_mapped_never_raise(body):
    try:
        spans = otlp_module.decode_protobuf(body)
    except otlp_module.OtlpDecodeError:
        return
    otlp_module.span_events(spans, IngestLimits(1000, 10**6, 8192), dt.datetime.now(dt.timezone.utc))
