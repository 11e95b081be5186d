"""The OpenAPI document is valid 3.1, covers every contract endpoint, and matches real responses."""
from __future__ import annotations

import pytest
from django.utils import timezone
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate

from monitor.api.openapi import DOCUMENT
from monitor.choices import TimeLagMethod
from tests.lag_rows import Part, make_group, record_poll

CONTRACT_OPERATIONS = [
    ("get", "/api/v1/clusters"),
    ("get", "/api/v1/clusters/{cluster}/groups"),
    ("get", "/api/v1/clusters/{cluster}/groups/{group}"),
    ("get", "/api/v1/clusters/{cluster}/groups/{group}/lag"),
    ("post", "/api/v1/events"),
    ("post", "/v1/traces"),
    ("get", "/api/v1/traces/{trace_id}"),
    ("get", "/api/v1/flow"),
    ("get", "/api/v1/alerts"),
    ("get", "/metrics"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/api/v1/openapi.json"),
]


def schema_validator(name: str) -> Draft202012Validator:
    """A validator for one component schema; its $refs resolve inside the document."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": DOCUMENT["components"]}
    return Draft202012Validator(schema, format_checker=FormatChecker())


def assert_valid(name: str, instance: object) -> None:
    errors = sorted(schema_validator(name).iter_errors(instance), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_document_is_valid_openapi_3_1():
    validate(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.1")


@pytest.mark.parametrize(("method", "path"), CONTRACT_OPERATIONS)
def test_every_contract_endpoint_is_described(method, path):
    operation = DOCUMENT["paths"][path][method]
    assert operation["responses"], path
    assert operation["operationId"]


def test_ingest_endpoints_need_a_token_and_health_probes_need_nothing():
    assert DOCUMENT["paths"]["/api/v1/events"]["post"]["security"] == [{"bearerAuth": []}]
    assert DOCUMENT["paths"]["/healthz"]["get"]["security"] == []
    assert "security" not in DOCUMENT["paths"]["/api/v1/clusters"]["get"]  # the default: token or session


def test_document_is_served_without_credentials(client, db):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.json() == DOCUMENT


def test_real_lag_responses_match_their_schemas(client, cluster, read_token):
    group = make_group(cluster, "billing", catch_up_seconds=30.0)
    record_poll(
        group,
        timezone.now(),
        [Part("orders", 0, 90, 100, 10, 4.5), Part("orders", 1, None, 5, None, None, TimeLagMethod.UNKNOWN)],
    )
    auth = {"Authorization": f"Bearer {read_token}"}
    base = f"/api/v1/clusters/{cluster.name}"

    clusters = client.get("/api/v1/clusters", headers=auth).json()
    groups = client.get(f"{base}/groups", headers=auth).json()
    detail = client.get(f"{base}/groups/billing", headers=auth).json()
    series = client.get(f"{base}/groups/billing/lag", headers=auth).json()

    for row in clusters:
        assert_valid("Cluster", row)
    for row in groups:
        assert_valid("GroupSummary", row)
    assert_valid("GroupDetail", detail)
    assert_valid("LagSeries", series)
    assert series["series"][0]["points"]  # a non-empty series was checked


def test_error_bodies_match_the_error_schema(client, cluster, read_token):
    response = client.get(f"/api/v1/clusters/{cluster.name}/groups/x/lag?points=0",
                          headers={"Authorization": f"Bearer {read_token}"})
    assert response.status_code == 404
    assert_valid("Error", response.json())
    make_group(cluster, "x")
    response = client.get(f"/api/v1/clusters/{cluster.name}/groups/x/lag?points=0",
                          headers={"Authorization": f"Bearer {read_token}"})
    assert response.status_code == 400
    assert_valid("Error", response.json())


def test_schemas_reject_what_the_contract_forbids():
    # A sanity check of the checker itself: a string lag and a time without Z-style offset fail.
    bad = {"topic": "t", "partition": 0, "committed_offset": 1, "log_start_offset": 0, "log_end_offset": 2,
           "lag": "1", "time_lag_seconds": None, "time_lag_method": "guessed"}
    errors = list(schema_validator("Partition").iter_errors(bad))
    assert {tuple(e.absolute_path) for e in errors} == {("lag",), ("time_lag_method",)}
    assert list(schema_validator("Cluster").iter_errors(
        {"name": "a", "status": "ok", "last_poll_at": "yesterday", "last_error": None}))


def test_real_alert_responses_match_their_schema(client, read_token):
    from monitor.choices import AlertState
    from monitor.models import Alert, AlertRule

    now = timezone.now()
    rule = AlertRule.objects.create(name="billing falls behind", group="billing*", metric="lag", threshold=1000)
    Alert.objects.create(rule=rule, subject="prod/billing/orders", cluster="prod", group="billing", topic="orders",
                         state=AlertState.FIRING, value=4500, threshold=1000, started_at=now, fired_at=now,
                         last_evaluated_at=now)
    alerts = client.get("/api/v1/alerts?state=firing", headers={"Authorization": f"Bearer {read_token}"}).json()
    assert len(alerts) == 1
    assert_valid("Alert", alerts[0])
