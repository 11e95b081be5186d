"""GET /api/v1/alerts (CONTRACT) and POST /api/v1/alerts/{id}/ack."""
from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from monitor.alerts.metrics import STATUS_RANK
from monitor.choices import AlertState
from monitor.models import Alert, AlertRule

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def rule(db):
    return AlertRule.objects.create(name="billing falls behind", cluster="prod", group="billing*", metric="lag",
                                    op=">", threshold=1000, severity="critical")


def make_alert(rule, state=AlertState.FIRING, group="billing", minutes=0, **fields) -> Alert:
    values = {"rule": rule, "subject": f"prod/{group}/payments", "cluster": "prod", "group": group,
              "topic": "payments", "state": state, "value": 12345.0, "threshold": rule.threshold,
              "started_at": T0 + timedelta(minutes=minutes), "last_evaluated_at": T0,
              "fired_at": T0 + timedelta(minutes=minutes + 2) if state != AlertState.PENDING else None}
    return Alert.objects.create(**{**values, **fields})


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_alerts_are_listed_with_the_contract_fields(client, read_token, rule):
    firing = make_alert(rule)
    resolved = make_alert(rule, AlertState.RESOLVED, group="billing-eu", minutes=-60,
                          resolved_at=T0 - timedelta(minutes=30))
    response = client.get("/api/v1/alerts", **bearer(read_token))
    assert response.status_code == 200
    body = response.json()
    assert [a["id"] for a in body] == [firing.id, resolved.id]  # newest first
    first = body[0]
    assert {k: first[k] for k in ("id", "rule", "subject", "state", "value", "threshold", "started_at",
                                  "resolved_at")} == {
        "id": firing.id, "rule": "billing falls behind", "subject": "prod/billing/payments", "state": "firing",
        "value": 12345.0, "threshold": 1000.0, "started_at": "2025-03-01T12:00:00Z", "resolved_at": None}
    assert (first["severity"], first["value_text"], first["threshold_text"]) == (
        "critical", "12,345 messages", "1,000 messages")
    assert first["url"].endswith(f"/alerts/{firing.id}/")
    assert body[1]["resolved_at"] == "2025-03-01T11:30:00Z"


def test_alerts_can_be_filtered_by_state(client, read_token, rule):
    make_alert(rule)
    make_alert(rule, AlertState.PENDING, group="billing-2")
    make_alert(rule, AlertState.RESOLVED, group="billing-3")
    for state in AlertState.values:
        body = client.get(f"/api/v1/alerts?state={state}", **bearer(read_token)).json()
        assert [a["state"] for a in body] == [state]


def test_other_filters_narrow_the_list(client, read_token, rule):
    make_alert(rule)
    make_alert(rule, group="billing-eu")
    assert len(client.get("/api/v1/alerts?group=billing-eu", **bearer(read_token)).json()) == 1
    assert len(client.get("/api/v1/alerts?severity=info", **bearer(read_token)).json()) == 0
    assert len(client.get("/api/v1/alerts?limit=1", **bearer(read_token)).json()) == 1


def test_bad_query_parameters_are_400_naming_each(client, read_token, db):
    response = client.get("/api/v1/alerts?state=burning&limit=0", **bearer(read_token))
    assert response.status_code == 400
    assert [e["loc"] for e in response.json()["errors"]] == [["query", "state"], ["query", "limit"]]
    response = client.get("/api/v1/alerts?limit=1001&cursor=bogus", **bearer(read_token))
    assert [e["loc"] for e in response.json()["errors"]] == [["query", "limit"], ["query", "cursor"]]


def test_alerts_page_with_limit_and_a_cursor_in_the_link_header(client, read_token, rule):
    # Two alerts share a start time: the cursor's tie-break on id keeps both.
    made = [make_alert(rule, group=f"billing-{i}", minutes=i // 2) for i in range(5)]
    expected = [a.id for a in sorted(made, key=lambda a: (a.started_at, a.id), reverse=True)]
    response = client.get("/api/v1/alerts?limit=2", **bearer(read_token))
    seen = [a["id"] for a in response.json()]
    while "Link" in response.headers:
        url = response.headers["Link"].removeprefix("<").removesuffix('>; rel="next"')
        response = client.get(url.removeprefix("http://testserver"), **bearer(read_token))
        seen += [a["id"] for a in response.json()]
    assert seen == expected
    everything = client.get("/api/v1/alerts", **bearer(read_token))
    assert [a["id"] for a in everything.json()] == expected and "Link" not in everything.headers


def test_status_rules_show_names_beside_the_ranks(client, read_token, db):
    rule = AlertRule.objects.create(name="stopped", metric="status", op="==", threshold=STATUS_RANK["stopped"])
    make_alert(rule, value=float(STATUS_RANK["stopped"]), topic="", subject="prod/billing/")
    [alert] = client.get("/api/v1/alerts", **bearer(read_token)).json()
    assert (alert["value"], alert["value_text"], alert["threshold_text"]) == (6.0, "stopped", "stopped")


def test_a_value_of_never_is_null_in_json(client, read_token, db):
    rule = AlertRule.objects.create(name="slow", metric="catch_up_seconds", op=">", threshold=3600)
    make_alert(rule, value=None, detail={"value_text": "not catching up"})
    [alert] = client.get("/api/v1/alerts", **bearer(read_token)).json()
    assert alert["value"] is None and alert["value_text"] == "not catching up"
    assert not math.isnan(alert["threshold"])


def test_reading_needs_credentials_and_the_read_scope(client, ingest_token, db):
    assert client.get("/api/v1/alerts").status_code == 401
    assert client.get("/api/v1/alerts", **bearer("kmon_wrong")).status_code == 401
    assert client.get("/api/v1/alerts", **bearer(ingest_token)).status_code == 403


def test_a_logged_in_session_may_read(logged_in_client, rule):
    make_alert(rule)
    assert len(logged_in_client.get("/api/v1/alerts").json()) == 1


def test_acknowledging_with_a_token_records_who_when_and_the_note(client, ack_token, rule):
    alert = make_alert(rule)
    response = client.post(f"/api/v1/alerts/{alert.id}/ack", {"note": "on it"}, content_type="application/json",
                           **bearer(ack_token))
    assert response.status_code == 200
    body = response.json()
    assert (body["acknowledged_by"], body["acknowledgement_note"]) == ("token acknowledger", "on it")
    assert body["acknowledged_at"] is not None
    alert.refresh_from_db()
    assert alert.acknowledged_by == "token acknowledger"


def test_acknowledging_needs_the_ack_scope_not_read(client, read_token, ingest_token, rule):
    alert = make_alert(rule)
    for token in (read_token, ingest_token):
        response = client.post(f"/api/v1/alerts/{alert.id}/ack", **bearer(token))
        assert response.status_code == 403 and "'ack' scope" in response.json()["detail"]
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_acknowledging_with_a_session_needs_the_csrf_token(rule, user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    alert = make_alert(rule)
    assert client.post(f"/api/v1/alerts/{alert.id}/ack", content_type="application/json").status_code == 403
    client.get("/alerts/")  # sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    response = client.post(f"/api/v1/alerts/{alert.id}/ack", content_type="application/json",
                           HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200 and response.json()["acknowledged_by"] == "oncall"


def test_acknowledging_a_resolved_alert_is_409_and_an_unknown_one_404(client, ack_token, rule):
    resolved = make_alert(rule, AlertState.RESOLVED)
    assert client.post(f"/api/v1/alerts/{resolved.id}/ack", **bearer(ack_token)).status_code == 409
    response = client.post("/api/v1/alerts/987654/ack", **bearer(ack_token))
    assert response.status_code == 404 and response.json()["detail"] == "there is no alert 987654"


def test_a_bad_acknowledgement_body_is_400(client, ack_token, rule):
    alert = make_alert(rule)
    response = client.post(f"/api/v1/alerts/{alert.id}/ack", "{not json", content_type="application/json",
                           **bearer(ack_token))
    assert response.status_code == 400
    response = client.post(f"/api/v1/alerts/{alert.id}/ack", {"note": 5}, content_type="application/json",
                           **bearer(ack_token))
    assert response.status_code == 400 and response.json()["errors"] == [{"loc": ["body", "note"],
                                                                           "msg": "must be text"}]
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_acknowledging_is_a_post(client, ack_token, rule):
    alert = make_alert(rule)
    assert client.get(f"/api/v1/alerts/{alert.id}/ack", **bearer(ack_token)).status_code == 405
