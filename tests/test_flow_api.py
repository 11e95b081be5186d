"""GET /api/v1/flow: the contract's shape, auth, time range, focus and hubs."""
from datetime import timedelta

import pytest
from django.utils import timezone
from jsonschema import Draft202012Validator

from monitor.api.openapi import DOCUMENT
from tests.flow_data import T0, cluster, event, group_with_lag, new_trace_id, order_saga, save

pytestmark = pytest.mark.django_db


def assert_valid(schema_name, instance):
    """The response matches its schema in the served OpenAPI document."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": DOCUMENT["components"]}
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in Draft202012Validator(schema).iter_errors(instance)]
    assert not errors, errors
WINDOW = {"since": "2024-05-01T11:55:00Z", "until": "2024-05-01T12:05:00Z"}


def get_flow(client, token, **params):
    return client.get("/api/v1/flow", params, HTTP_AUTHORIZATION=f"Bearer {token}")


def test_flow_requires_credentials(client):
    response = client.get("/api/v1/flow")
    assert response.status_code == 401
    assert response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_flow_rejects_an_unknown_token_and_a_token_without_read_scope(client, ingest_token):
    assert get_flow(client, "kmon_not-a-real-token").status_code == 401
    response = get_flow(client, ingest_token)
    assert response.status_code == 403
    assert "read" in response.json()["detail"]


def test_a_logged_in_session_may_read_the_flow(logged_in_client):
    assert logged_in_client.get("/api/v1/flow").status_code == 200


def test_flow_returns_services_and_topics_with_edges_per_the_contract(client, read_token):
    for n in range(4):
        save(*order_saga(new_trace_id(), start=n, fail_payment=n == 0))
    group_with_lag(cluster("prod"), "payments", {"orders.events": 17}, T0)
    response = get_flow(client, read_token, **WINDOW)
    assert response.status_code == 200
    body = response.json()
    assert (body["since"], body["until"]) == ("2024-05-01T11:55:00Z", "2024-05-01T12:05:00Z")
    nodes = {n["id"]: n for n in body["nodes"]}
    assert {(n["kind"], n["name"]) for n in body["nodes"]} == {
        ("service", "orders"), ("service", "payments"), ("service", "shipping"),
        ("topic", "orders.events"), ("topic", "payments.events")}
    assert nodes["topic:orders.events"]["kind"] == "topic"
    edges = {(e["source"], e["target"]): e for e in body["edges"]}
    publish = edges[("service:orders", "topic:orders.events")]
    assert {"source", "target", "events", "failed", "p95_latency_seconds"} <= set(publish)
    assert (publish["events"], publish["failed"], publish["p95_latency_seconds"]) == (4, 0, None)
    consume = edges[("topic:orders.events", "service:payments")]
    assert (consume["events"], consume["failed"], consume["consumer_group"]) == (4, 2, "payments")
    assert consume["p95_latency_seconds"] == pytest.approx(1.0, rel=0.05)  # a histogram bucket's middle
    assert consume["failed_share"] == pytest.approx(0.5)
    # Reports start at T0, half-way through the window: the rate is per second that has data.
    assert consume["rate_per_second"] == pytest.approx(4 / 300)
    assert consume["health"] == "critical" and consume["reasons"]
    assert len(consume["examples"]) == 1


def test_a_real_flow_matches_the_openapi_schema(client, read_token):
    save(*order_saga(new_trace_id()), *order_saga(new_trace_id(), start=3, fail_payment=True))
    assert_valid("Flow", get_flow(client, read_token, **WINDOW).json())


def test_lag_is_shown_on_the_topic_to_consumer_edge_for_a_live_range(client, read_token):
    now = timezone.now()
    save(event("e1", "published", "orders", now - timedelta(minutes=2), topic="orders.events"),
         event("e1", "consumed", "payments", now - timedelta(minutes=1), topic="orders.events", group="payments"))
    group_with_lag(cluster("prod"), "payments", {"orders.events": 17}, now - timedelta(seconds=20))
    body = get_flow(client, read_token, range="15m").json()
    consume = next(e for e in body["edges"] if e["target"] == "service:payments")
    assert (consume["lag"], consume["lag_status"]) == (17, "ok")


def test_the_default_range_is_the_last_hour(client, read_token):
    save(event("old", "published", "orders", timezone.now() - timedelta(hours=2), topic="orders.events"),
         event("new", "published", "orders", timezone.now() - timedelta(minutes=5), topic="orders.events"))
    body = get_flow(client, read_token).json()
    assert [e["events"] for e in body["edges"]] == [1]


@pytest.mark.parametrize(("params", "field"), [
    ({"since": "yesterday"}, "since"),
    ({"since": "2024-05-01T12:00:00Z", "until": "2024-05-01T11:00:00Z"}, "since"),
    ({"range": "forever"}, "range"),
    ({"failed_warn": "lots"}, "failed_warn"),
    ({"focus": "orders", "depth": "99"}, "depth"),
])
def test_bad_parameters_are_a_400_naming_the_parameter(client, read_token, params, field):
    response = get_flow(client, read_token, **params)
    assert response.status_code == 400
    assert response.json()["errors"] == [{"loc": ["query", field], "msg": response.json()["errors"][0]["msg"]}]


def test_focus_keeps_one_service_neighbourhood(client, read_token):
    save(*order_saga(new_trace_id()),
         event("x", "published", "catalogue", 1, topic="catalogue.events"),
         event("x", "consumed", "search", 2, topic="catalogue.events", group="search"))
    body = get_flow(client, read_token, focus="shipping", **WINDOW).json()
    assert {n["id"] for n in body["nodes"]} == {"service:shipping", "topic:payments.events", "service:payments"}


def test_a_consumer_group_focuses_on_the_services_consuming_as_it(client, read_token):
    save(*order_saga(new_trace_id()),
         event("x", "published", "catalogue", 1, topic="catalogue.events"),
         event("x", "consumed", "search", 2, topic="catalogue.events", group="search"))
    body = get_flow(client, read_token, group="shipping", **WINDOW).json()
    assert {n["id"] for n in body["nodes"]} == {"service:shipping", "topic:payments.events", "service:payments"}
    assert get_flow(client, read_token, group="nobody", **WINDOW).json()["nodes"] == []


def test_hubs_can_be_hidden(client, read_token):
    reports = []
    for n in range(9):
        reports.append(event(f"e{n}", "published", f"svc{n}", n, topic=f"t{n}"))
        reports.append(event(f"e{n}", "consumed", "audit", n + 1, topic=f"t{n}", group="audit"))
    save(*reports)
    shown = get_flow(client, read_token, **WINDOW).json()
    assert next(n for n in shown["nodes"] if n["id"] == "service:audit")["hub"] is True
    hidden = get_flow(client, read_token, hide="hubs", **WINDOW).json()
    assert "service:audit" not in {n["id"] for n in hidden["nodes"]}
    by_name = get_flow(client, read_token, hide="svc1,svc2", **WINDOW).json()
    assert not {"service:svc1", "service:svc2"} & {n["id"] for n in by_name["nodes"]}
    assert "topic:t1" in {n["id"] for n in by_name["nodes"]}  # audit still reads it


def test_url_tolerances_change_the_colours(client, read_token):
    save(*order_saga(new_trace_id()))
    strict = get_flow(client, read_token, p95_warn="0.5", p95_crit="0.9", **WINDOW).json()
    consume = next(e for e in strict["edges"] if e["target"] == "service:payments")
    assert consume["health"] == "critical"
    relaxed = get_flow(client, read_token, **WINDOW).json()
    assert next(e for e in relaxed["edges"] if e["target"] == "service:payments")["health"] == "ok"


def test_top_folds_the_quiet_nodes_into_others_and_a_bad_top_is_400(client, read_token):
    save(*[event(f"e{n}", "published", f"svc{n:02d}", 1.0, topic="orders.events") for n in range(12)])
    body = get_flow(client, read_token, top=5, **WINDOW).json()
    assert_valid("Flow", body)
    folded = [n for n in body["nodes"] if n["folded"]]
    assert len(body["nodes"]) == 6 and [n["folded"] for n in folded] == [8]
    assert len(get_flow(client, read_token, **WINDOW).json()["nodes"]) == 13  # without top: everything
    response = get_flow(client, read_token, top=1, **WINDOW)
    assert response.status_code == 400 and response.json()["errors"][0]["loc"] == ["query", "top"]
