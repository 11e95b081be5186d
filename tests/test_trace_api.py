"""GET /api/v1/traces/{trace_id}: every report of a trace in causal order."""
import pytest
from django.test import Client
from jsonschema import Draft202012Validator

from monitor.api.openapi import DOCUMENT
from tests.flow_data import event, new_span_id, new_trace_id, order_saga, save

pytestmark = pytest.mark.django_db


def assert_valid(schema_name, instance):
    """The response matches its schema in the served OpenAPI document."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": DOCUMENT["components"]}
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in Draft202012Validator(schema).iter_errors(instance)]
    assert not errors, errors


def get_trace(client, token, trace_id):
    return client.get(f"/api/v1/traces/{trace_id}", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_a_trace_lists_its_services_duration_and_events_in_causal_order(client, read_token):
    trace_id = new_trace_id()
    save(*reversed(order_saga(trace_id)))
    response = get_trace(client, read_token, trace_id)
    assert response.status_code == 200
    body = response.json()
    assert body["trace_id"] == trace_id
    assert body["services"] == ["orders", "payments", "shipping"]
    assert body["duration_seconds"] == 4.5
    assert [(e["service"], e["stage"]) for e in body["events"]] == [
        ("orders", "published"), ("payments", "consumed"), ("payments", "published"), ("payments", "processed"),
        ("shipping", "consumed"), ("shipping", "processed")]


def test_each_event_has_the_contract_fields_received_at_and_a_rebuilt_traceparent(client, read_token):
    trace_id, span_id = new_trace_id(), new_span_id()
    save(event("e1", "published", "orders", 0, topic="orders.events", trace_id=trace_id, span_id=span_id,
               key="order-1", partition=3, offset=42, schema_version=2, attributes={"amount": 10}),
         event("e1", "consumed", "payments", 1, topic="orders.events", group="payments", trace_id=trace_id))
    published, consumed = get_trace(client, read_token, trace_id).json()["events"]
    assert published == {
        "event_id": "e1", "type": "OrderPlaced", "service": "orders", "stage": "published",
        "timestamp": "2024-05-01T12:00:00Z", "received_at": "2024-05-01T12:00:00.050000Z",
        "topic": "orders.events", "partition": 3, "offset": 42, "key": "order-1",
        "schema_version": 2, "trace_id": trace_id, "span_id": span_id,
        "traceparent": f"00-{trace_id}-{span_id}-01", "attributes": {"amount": 10},
    }
    assert consumed["consumer_group"] == "payments"
    assert "traceparent" not in consumed and "key" not in consumed  # not reported, not invented
    assert consumed["attributes"] == {}


def test_a_real_trace_matches_the_openapi_schema(client, read_token):
    trace_id = new_trace_id()
    save(*order_saga(trace_id, fail_payment=True))
    assert_valid("Trace", get_trace(client, read_token, trace_id).json())


def test_an_unknown_trace_is_a_404_with_a_json_error(client, read_token):
    response = get_trace(client, read_token, new_trace_id())
    assert response.status_code == 404
    assert response.json()["errors"][0]["loc"] == ["path", "trace_id"]


def test_a_trace_id_in_capitals_is_found(client, read_token):
    trace_id = new_trace_id()
    save(*order_saga(trace_id))
    body = get_trace(client, read_token, trace_id.upper()).json()
    assert body["trace_id"] == trace_id


def test_traces_need_a_read_token_or_a_session(ingest_token, user):
    trace_id = new_trace_id()
    save(*order_saga(trace_id))
    anonymous = Client()
    assert anonymous.get(f"/api/v1/traces/{trace_id}").status_code == 401
    assert get_trace(anonymous, ingest_token, trace_id).status_code == 403
    session = Client()
    session.force_login(user)
    assert session.get(f"/api/v1/traces/{trace_id}").status_code == 200


def test_only_get_is_allowed(client, read_token):
    response = client.post(f"/api/v1/traces/{new_trace_id()}", HTTP_AUTHORIZATION=f"Bearer {read_token}")
    assert response.status_code == 405


def test_secret_looking_attributes_are_redacted_as_on_the_pages(client, read_token):
    trace_id, span_id = new_trace_id(), new_span_id()
    save(event("e1", "published", "orders", 0, topic="orders", trace_id=trace_id, span_id=span_id,
               attributes={"password": "hunter2", "nested": {"api_key": "k-123"}, "amount": 10}))
    body = get_trace(client, read_token, trace_id).json()
    attributes = body["events"][0]["attributes"]
    assert attributes["amount"] == 10
    assert "hunter2" not in str(body) and "k-123" not in str(body)


def test_a_trace_links_to_the_trace_backend_when_a_template_is_set(client, read_token, settings):
    trace_id = new_trace_id()
    save(*order_saga(trace_id))
    assert get_trace(client, read_token, trace_id).json()["external_url"] is None
    settings.MONITOR_TRACE_URL_TEMPLATE = "https://jaeger.example/trace/{trace_id}"
    body = get_trace(client, read_token, trace_id).json()
    assert body["external_url"] == f"https://jaeger.example/trace/{trace_id}"
    assert_valid("Trace", body)
