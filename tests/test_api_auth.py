"""The API answers a read token or a logged-in session, and explains every refusal in JSON."""
from __future__ import annotations

import json

import pytest
from django.http import JsonResponse
from django.test import RequestFactory

from monitor.api.auth import api_view, authenticate
from monitor.api.errors import Forbidden
from monitor.choices import TokenScope
from monitor.models import ApiToken


def assert_json_error(response, status: int) -> dict:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["errors"], list)
    return body


def test_logged_in_session_can_read(logged_in_client, cluster):
    response = logged_in_client.get("/api/v1/clusters")
    assert response.status_code == 200
    assert [c["name"] for c in response.json()] == [cluster.name]


def test_bearer_token_with_read_scope_can_read(client, cluster, read_token):
    response = client.get("/api/v1/clusters", headers={"Authorization": f"Bearer {read_token}"})
    assert response.status_code == 200
    assert [c["name"] for c in response.json()] == [cluster.name]


def test_token_with_only_ingest_scope_gets_403(client, cluster, ingest_token):
    response = client.get("/api/v1/clusters", headers={"Authorization": f"Bearer {ingest_token}"})
    body = assert_json_error(response, 403)
    assert "read" in body["detail"]


def test_request_without_credentials_gets_401_naming_the_scheme(client, db):
    response = client.get("/api/v1/clusters")
    assert_json_error(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_gets_401(client, db, read_token):
    from django.utils import timezone

    ApiToken.objects.filter(name="reader").update(revoked_at=timezone.now())
    response = client.get("/api/v1/clusters", headers={"Authorization": f"Bearer {read_token}"})
    assert_json_error(response, 401)


def test_unknown_token_gets_401(client, db):
    response = client.get("/api/v1/clusters", headers={"Authorization": "Bearer kmon_not-a-real-token"})
    assert_json_error(response, 401)


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "kmon_token-without-scheme"])
def test_malformed_authorization_header_gets_401(client, db, header):
    response = client.get("/api/v1/clusters", headers={"Authorization": header})
    body = assert_json_error(response, 401)
    assert "Bearer" in body["detail"]


def test_a_bad_token_is_refused_even_with_a_logged_in_session(logged_in_client, db):
    # An explicit credential wins: a script with a revoked token must notice.
    response = logged_in_client.get("/api/v1/clusters", headers={"Authorization": "Bearer kmon_wrong"})
    assert_json_error(response, 401)


def test_session_cannot_act_with_ingest_scope(rf: RequestFactory, user):
    request = rf.post("/api/v1/events")
    request.user = user
    with pytest.raises(Forbidden, match="ingest"):
        authenticate(request, TokenScope.INGEST)


def test_session_write_without_csrf_token_is_refused(rf: RequestFactory, user):
    @api_view(scope=TokenScope.READ, methods=("POST",))
    def write_view(request):
        return JsonResponse({"written": True})

    request = rf.post("/api/v1/anything", data={}, content_type="application/json")
    request.user = user
    body = assert_json_error(write_view(request), 403)
    assert "CSRF" in body["detail"]


def test_token_write_needs_no_csrf_token(rf: RequestFactory, db, ingest_token):
    @api_view(scope=TokenScope.INGEST, methods=("POST",))
    def write_view(request):
        return JsonResponse({"token": request.api_token.name})

    request = rf.post("/api/v1/anything", data={}, content_type="application/json",
                      headers={"Authorization": f"Bearer {ingest_token}"})
    response = write_view(request)
    assert response.status_code == 200
    assert json.loads(response.content) == {"token": "ingester"}


def test_wrong_method_gets_405_with_allow_header(logged_in_client, db):
    response = logged_in_client.post("/api/v1/clusters")
    assert_json_error(response, 405)
    assert response["Allow"] == "GET, HEAD"
