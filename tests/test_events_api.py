"""POST /api/v1/events through HTTP: auth, limits, errors, idempotency on a real server."""
import gzip
import io
import json
import urllib.error
import urllib.request

import pytest

from monitor.events import store
from tests.race import race


@pytest.fixture(autouse=True)
def _fresh_registry_cache():
    store.forget_registry_cache()
    yield


def event(i=0, **overrides):
    base = {"event_id": f"evt-{i}", "type": "OrderPlaced", "service": "orders", "stage": "published",
            "timestamp": "2024-05-01T11:59:00Z", "topic": "orders", "partition": 0, "offset": i}
    base.update(overrides)
    return base


def post(client, body, token=None, **headers):
    if token:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/api/v1/events", data, content_type="application/json", **headers)


@pytest.mark.django_db
def test_batch_is_accepted_with_counts(client, ingest_token):
    response = post(client, {"events": [event(0), event(1)]}, ingest_token)
    assert response.status_code == 202
    assert response.json() == {"accepted": 2, "duplicates": 0}
    again = post(client, {"events": [event(0), event(1), event(2)]}, ingest_token)
    assert again.json() == {"accepted": 1, "duplicates": 2}


@pytest.mark.django_db
def test_gzip_body_is_accepted(client, ingest_token):
    body = gzip.compress(json.dumps({"events": [event(0)]}).encode())
    response = post(client, body, ingest_token, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 202
    assert response.json()["accepted"] == 1


@pytest.mark.django_db
def test_without_token_the_answer_is_401_with_a_json_error(client):
    response = post(client, {"events": [event()]})
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["detail"]


@pytest.mark.django_db
def test_unknown_or_revoked_token_is_401_and_read_scope_is_403(client, read_token, ingest_token):
    from django.utils import timezone

    from monitor.models import ApiToken, Event

    assert post(client, {"events": [event()]}, "kmon_not-a-real-token").status_code == 401
    assert post(client, {"events": [event()]}, read_token).status_code == 403
    ApiToken.objects.filter(name="ingester").update(revoked_at=timezone.now())
    assert post(client, {"events": [event()]}, ingest_token).status_code == 401
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_logged_in_session_cannot_ingest(logged_in_client):
    assert post(logged_in_client, {"events": [event()]}).status_code == 403


@pytest.mark.django_db
def test_token_use_is_recorded_and_only_its_hash_is_stored(client, ingest_token):
    from monitor.models import ApiToken

    post(client, {"events": [event()]}, ingest_token)
    token = ApiToken.objects.get(name="ingester")
    assert token.last_used_at is not None
    assert ingest_token not in token.token_hash and token.token_hash != ingest_token


@pytest.mark.django_db
def test_invalid_events_answer_422_naming_each_index_and_field_and_store_nothing(client, ingest_token):
    from monitor.models import Event

    response = post(client, {"events": [event(0), event(1, timestamp="not a time"), event(2, stage="x", offset=-1)]},
                    ingest_token)
    assert response.status_code == 422
    body = response.json()
    assert body["errors"] == [
        {"loc": ["events", 1, "timestamp"], "msg": "is not an ISO-8601 date-time, e.g. 2024-05-01T12:00:00.123Z"},
        {"loc": ["events", 2, "stage"], "msg": "must be one of outbox, published, consumed, processed, failed, dead_lettered"},
        {"loc": ["events", 2, "offset"], "msg": "must be between 0 and 9223372036854775807"},
    ]
    assert "nothing was stored" in body["detail"]
    assert not Event.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("body", [b"{not json", b'{"events": [NaN]}', b"\xff\xfe", b'["events"]'])
def test_malformed_body_is_400(client, ingest_token, body):
    response = post(client, body, ingest_token)
    assert response.status_code == 400
    assert response.json()["detail"]


@pytest.mark.django_db
def test_more_events_than_the_configured_batch_size_is_413(client, ingest_token, settings):
    settings.MONITOR_INGEST_MAX_EVENTS = 5
    response = post(client, {"events": [event(i) for i in range(6)]}, ingest_token)
    assert response.status_code == 413
    assert "at most 5 events" in response.json()["detail"]


@pytest.mark.django_db
def test_body_over_the_byte_limit_is_413_even_when_compressed(client, ingest_token, settings):
    from monitor.models import Event

    settings.MONITOR_INGEST_MAX_BYTES = 4096
    big = {"events": [event(i, attributes={"pad": "x" * 500}) for i in range(10)]}
    assert post(client, big, ingest_token).status_code == 413
    bomb = gzip.compress(json.dumps(big).encode())
    assert len(bomb) < 4096
    assert post(client, bomb, ingest_token, HTTP_CONTENT_ENCODING="gzip").status_code == 413
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_unsupported_content_encoding_is_refused(client, ingest_token):
    assert post(client, b"...", ingest_token, HTTP_CONTENT_ENCODING="br").status_code == 415


@pytest.mark.django_db
def test_only_post_is_allowed(client, ingest_token):
    response = client.get("/api/v1/events", HTTP_AUTHORIZATION=f"Bearer {ingest_token}")
    assert response.status_code == 405


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_one_batch_over_http_are_stored_once(live_server):
    from monitor.models import ApiToken, Event

    _, token = ApiToken.issue("concurrent", ["ingest"])
    body = json.dumps({"events": [event(i) for i in range(200)]}).encode()

    def send():
        request = urllib.request.Request(f"{live_server.url}/api/v1/events", data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())

    results = race(send, runners=4)
    assert [status for status, _ in results] == [202] * 4
    assert sum(r["accepted"] for _, r in results) == 200
    assert sum(r["duplicates"] for _, r in results) == 600
    assert Event.objects.count() == 200


@pytest.mark.django_db
def test_a_chunked_body_is_read_with_the_same_limits_when_the_server_has_dechunked_it(client, ingest_token, settings):
    """The de-chunked stream is what gunicorn hands over (``wsgi.input_terminated``)."""
    settings.MONITOR_INGEST_MAX_BYTES = 2048

    def chunked(body):
        data = json.dumps(body).encode()
        return {"HTTP_TRANSFER_ENCODING": "chunked", "CONTENT_LENGTH": "", "wsgi.input_terminated": True,
                "wsgi.input": io.BytesIO(data)}

    small = {"events": [event(0)]}
    response = post(client, small, ingest_token, **chunked(small))
    assert response.status_code == 202 and response.json()["accepted"] == 1
    big = {"events": [event(i) for i in range(30)]}
    assert post(client, big, ingest_token, **chunked(big)).status_code == 413


@pytest.mark.django_db
def test_a_chunked_body_the_server_did_not_dechunk_is_411(client, ingest_token):
    chunked = {"HTTP_TRANSFER_ENCODING": "chunked", "CONTENT_LENGTH": ""}
    response = post(client, {"events": [event(0)]}, ingest_token, **chunked)
    assert response.status_code == 411


@pytest.mark.django_db
def test_deeply_nested_json_and_overflowing_timestamps_are_4xx_naming_the_field(client, ingest_token):
    assert post(client, "[" * 100_000, ingest_token).status_code == 400
    response = post(client, {"events": [event(0, timestamp="9999-12-31T23:59:59-23:59")]}, ingest_token)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["events", 0, "timestamp"]
    deep: dict = {}
    for _ in range(200):
        deep = {"k": deep}
    response = post(client, {"events": [event(0, attributes=deep)]}, ingest_token)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["events", 0, "attributes"]
    response = post(client, {"events": [event(0, trace_id="a" * 31 + "\n", span_id="b" * 16)]}, ingest_token)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["events", 0, "trace_id"]


@pytest.mark.django_db
def test_an_ingest_token_over_its_request_rate_gets_429_naming_the_limit(client, ingest_token, settings):
    settings.MONITOR_INGEST_RATE_PER_MINUTE = 3
    # 8 requests: even across a minute boundary at most 6 fit in two windows.
    answers = [post(client, {"events": [event(i)]}, ingest_token) for i in range(8)]
    assert {a.status_code for a in answers} == {202, 429}
    limited = [a for a in answers if a.status_code == 429]
    assert limited, [a.status_code for a in answers]
    body = limited[0].json()
    assert body["errors"][0]["loc"] == ["limit", "ingest_requests_per_minute"]
    assert 1 <= int(limited[0]["Retry-After"]) <= 60


@pytest.mark.django_db
def test_new_names_beyond_the_tokens_hourly_budget_get_429_and_nothing_is_stored(client, ingest_token, settings):
    from monitor.models import Event

    settings.MONITOR_NEW_NAMES_PER_HOUR = 3
    first = post(client, {"events": [event(i, service=f"svc-{i}") for i in range(3)]}, ingest_token)
    assert first.status_code == 202
    again = post(client, {"events": [event(10, service="svc-0")]}, ingest_token)
    assert again.status_code == 202  # a known service costs nothing
    over = post(client, {"events": [event(20, service="svc-new")]}, ingest_token)
    assert over.status_code == 429
    assert over.json()["errors"][0]["loc"] == ["limit", "new_services_per_hour"]
    assert 1 <= int(over["Retry-After"]) <= 3600
    assert not Event.objects.filter(service="svc-new").exists()
