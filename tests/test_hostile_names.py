"""Hostile names through every door (poller readings, JSON ingest, OTLP, Kafka headers),
then every page, fragment, API answer and /metrics: no 500, nothing unescaped, nothing
silently dropped.

Group and topic names are fed as poller readings into the recording path (the same
function a poll calls) rather than through the test broker: tansu percent-encodes group
ids in ListGroups, so the broker cannot carry them unchanged.
"""
from __future__ import annotations

import html
import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from monitor import links
from monitor.events import store
from monitor.kafka.adapter import ConsumedMessage, GroupListing, LogOffsets
from monitor.lag.record import ClusterReading, record_cycle
from monitor.models import ConsumerGroup, Event, PollRun
from tests.hostile import CONTROL, KAFKA_NAMES, LONG, PRINTABLE, assert_escaped

TOPICS = ["orders", "weird.topic_name-1"]


@pytest.fixture(autouse=True)
def _fresh_registry_cache():
    store.forget_registry_cache()
    yield


def _reading(names: list[str]) -> ClusterReading:
    return ClusterReading(
        polled_at=timezone.now(),
        groups=[GroupListing(name, "Stable", "consumer") for name in names],
        committed={name: {(topic, 0): 5 for topic in TOPICS} for name in names},
        partition_counts={topic: 1 for topic in TOPICS},
        log_offsets={(topic, 0): LogOffsets(0, 10) for topic in TOPICS},
        requests=3,
    )


def _get(client, url: str, **extra):
    response = client.get(url, **extra)
    assert response.status_code < 500, (url, response.status_code)
    return response


@pytest.fixture
def hostile_groups(cluster):
    record_cycle(cluster, _reading(KAFKA_NAMES + [LONG, "nul\x00inside"]), timezone.now(), time.monotonic())
    return cluster


def test_hostile_group_names_from_the_poller_are_stored_and_every_page_links_them(hostile_groups, logged_in_client):
    cluster = hostile_groups
    stored = set(ConsumerGroup.objects.filter(cluster=cluster).values_list("name", flat=True))
    assert stored == set(KAFKA_NAMES)
    for url in ("/", "/?part=table", "/clusters/", links.path("cluster", cluster.name)):
        body = _get(logged_in_client, url).content.decode()
        assert_escaped(body, url)
    overview = _get(logged_in_client, "/").content.decode()
    for name in KAFKA_NAMES:
        assert html.escape(links.group_path(cluster.name, name)) in overview, name
    for name in KAFKA_NAMES:
        url = links.group_path(cluster.name, name)
        response = _get(logged_in_client, url)
        assert response.status_code == 200, (name, response.status_code)
        body = response.content.decode()
        assert_escaped(body, url)
        assert html.escape(name) in body
    for topic in TOPICS:
        body = _get(logged_in_client, links.topic_path(cluster.name, topic)).content.decode()
        assert_escaped(body, topic)
        # The chart's data (JSON for Plotly, which renders HTML in names): escaped for Plotly too.
        assert "CLICK" in body
        for raw in ("\\u003Ca href", "\\u003ca href", "<a href=\\\"https://evil"):
            assert raw not in body, raw


def test_groups_that_cannot_be_stored_are_named_in_the_poll_error_not_dropped_silently(hostile_groups):
    run = PollRun.objects.filter(cluster=hostile_groups).latest("id")
    assert run.ok
    assert "2 group(s) could not be read" in run.error
    assert "10240 characters" in run.error and "NUL" in run.error


def test_hostile_group_names_answer_in_the_api_and_metrics(hostile_groups, client, read_token):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {read_token}"}
    cluster = hostile_groups
    groups = _get(client, f"/api/v1/clusters/{cluster.name}/groups", **auth).json()
    assert {g["group"] for g in groups} == set(KAFKA_NAMES)
    for name in KAFKA_NAMES:
        detail_url = links.path("api-group", cluster.name, name)
        detail = _get(client, detail_url, **auth)
        assert detail.status_code == 200 and detail.json()["group"] == name
        lag = _get(client, links.path("api-group-lag", cluster.name, name), **auth)
        assert lag.status_code == 200, name
    metrics = _get(client, "/metrics", **auth).content.decode()
    assert 'group="orders-consumer\\nv2"' in metrics
    assert 'group="quotes\\"\'`"' in metrics
    for line in metrics.split("\n"):  # the text format ends lines with LF only
        assert line.startswith("#") or line.startswith("kafka_") or not line, line


def _event(i: int, **overrides):
    base = {"event_id": f"evt-{i}", "type": "OrderPlaced", "service": "orders", "stage": "published",
            "timestamp": (timezone.now() - timedelta(minutes=1)).isoformat(), "topic": "orders",
            "partition": 0, "offset": i, "trace_id": f"{i + 1:032x}", "span_id": f"{i + 1:016x}"}
    base.update(overrides)
    return base


def _ingest(client, token, events):
    return client.post("/api/v1/events", json.dumps({"events": events}), content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["service", "type", "consumer_group", "event_id"])
def test_ingest_refuses_control_characters_in_names_naming_the_field(client, ingest_token, field):
    for name in CONTROL:
        response = _ingest(client, ingest_token, [_event(0, stage="consumed", **{field: name})])
        assert response.status_code == 422, (field, name)
        assert response.json()["errors"][0]["loc"] == ["events", 0, field]
        assert "control characters" in response.json()["errors"][0]["msg"]
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_ingest_refuses_lone_surrogates_and_long_names_naming_the_field(client, ingest_token):
    body = json.dumps({"events": [_event(0, service="a\ud800b"), _event(1, attributes={"k": "\udfff"}),
                                  _event(2, service=LONG)]})
    response = client.post("/api/v1/events", body, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {ingest_token}")
    assert response.status_code == 422
    locs = [e["loc"] for e in response.json()["errors"]]
    assert locs == [["events", 0, "service"], ["events", 1, "attributes"], ["events", 2, "service"]]


@pytest.fixture
def hostile_events(db, client, ingest_token):
    events = []
    for i, name in enumerate(PRINTABLE):
        events.append(_event(2 * i, service=name, type=name, key=name, attributes={name: name, "password": "hunter2"}))
        events.append(_event(2 * i + 1, service=f"{name}-consumer", stage="processed", consumer_group=name,
                             key=name, trace_id=f"{2 * i + 1:032x}", span_id=f"{2 * i + 2:016x}",
                             parent_span_id=f"{2 * i + 1:016x}"))
    response = _ingest(client, ingest_token, events)
    assert response.status_code == 202, response.content
    return events


def test_hostile_names_from_ingest_render_on_every_flow_page_and_api(hostile_events, logged_in_client, read_token):
    client = logged_in_client
    urls = ["/flow/", "/flow/?part=figure", "/traces/", "/api/v1/flow", "/event-topics/orders/"]
    for name in PRINTABLE:
        urls += [links.service_path(name), links.path("flow-traces", query={"q": name}),
                 links.path("flow", query={"focus": name})]
    for event in hostile_events:
        urls += [links.path("flow-trace", event["trace_id"]), links.path("api-trace", event["trace_id"])]
    for url in urls:
        response = _get(client, url, follow=True)  # a search finding one trace redirects to it
        assert response.status_code == 200, (url, response.status_code)
        if response["Content-Type"].startswith("application/json"):
            response.json()  # names travel as JSON strings, as sent
        else:
            assert_escaped(response.content.decode(), url)
        assert "hunter2" not in response.content.decode(), url


@pytest.mark.django_db
def test_tap_headers_with_hostile_names_are_kept_or_counted_never_raise():
    from monitor.events.config import IngestLimits
    from monitor.events.tap import messages_to_rows

    messages = [ConsumedMessage("orders", 0, i, name, b"", int(time.time() * 1000),
                                {"ce_type": name, "ce_source": name, "ce_id": f"id-{i}"})
                for i, name in enumerate(KAFKA_NAMES + [LONG])]
    rows, skipped = messages_to_rows(messages, 100, timezone.now(), IngestLimits(1000, 10**6, 8192))
    assert len(rows) + skipped == len(messages)
    assert skipped == len(CONTROL)  # counted in the tap run and logged
    assert {row.service for row in rows} == set(PRINTABLE) | {LONG[:200]}  # the column's length


@pytest.mark.parametrize("query", ["until=0001-01-01T00:00:00Z", "since=9999-12-31T23:59:59-23:59",
                                   "until=2024-13-01T00:00:00%0A", "range=%F0%9F%94%A5"])
def test_bad_time_ranges_are_a_banner_on_pages_and_400_in_the_api(hostile_groups, logged_in_client, query):
    cluster = hostile_groups
    for url in ("/flow/", "/traces/", links.service_path("orders"), links.event_topic_path("orders"),
                links.group_path(cluster.name, "orders-consumer\nv2"), links.topic_path(cluster.name, "orders")):
        response = _get(logged_in_client, f"{url}?{query}")
        assert response.status_code in (200, 400, 404), (url, response.status_code)
    for url in ("/api/v1/flow", links.path("api-group-lag", cluster.name, "..")):
        response = _get(logged_in_client, f"{url}?{query}")
        if not query.startswith("range") or url == "/api/v1/flow":  # the lag API has no range
            assert response.status_code == 400, (url, response.status_code)
            assert response.json()["errors"][0]["loc"][-1] in ("since", "until", "range")


@pytest.mark.django_db
def test_events_stored_before_names_were_checked_still_render(logged_in_client):
    """Rows with line breaks in names (written before ingest refused them) break no page."""
    from monitor.events.config import IngestLimits
    from monitor.events.ingest import validate_event
    from monitor.events.store import store_rows

    now = timezone.now()
    errors: list = []
    row = validate_event(_event(0, timestamp=(now - timedelta(minutes=1)).isoformat()), 0, now,
                         IngestLimits(1000, 10**6, 8192), errors)
    assert row is not None
    store_rows([row._replace(service="billing\nworker", type="Order\rPlaced")], now)
    for url in ("/flow/", "/traces/", links.path("flow-trace", row.trace_id), links.service_path("billing\nworker"),
                links.event_topic_path("orders")):
        response = _get(logged_in_client, url)
        assert response.status_code == 200, url


def test_hostile_names_in_slack_email_and_webhook_messages_are_escaped_never_links():
    from monitor.notify import render
    from monitor.notify.email import header_text
    from tests.test_notify_slack import item

    names = ["<https://evil.example|CLICK>"] + KAFKA_NAMES + [LONG]
    items = [item(group=name, topic=name, subject=f"prod/{name}/{name}", rule=name) for name in names]
    payload = render.payload("firing", items)
    slack = json.dumps(render.slack_message(payload))
    assert "<https://evil" not in slack and "&lt;https://evil.example|CLICK" in slack
    html_body = render.email_html(payload)
    assert_escaped(html_body, "email html")
    subject = header_text(render.email_subject(payload))
    assert "\n" not in subject and "\r" not in subject
    single = render.payload("firing", [item(group="billing\r\nBcc: x@example.com")])
    assert "\n" not in header_text(render.email_subject(single))
    body = render.webhook_body(payload)
    assert json.loads(json.dumps(body))["alerts"][0]["group"] == names[0]  # JSON carries names as sent


@pytest.mark.django_db
def test_nul_in_a_query_or_path_is_400_naming_it_not_a_database_outage(logged_in_client, read_token):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {read_token}"}
    for url in ("/api/v1/alerts?cluster=%00", "/api/v1/alerts?rule=a%00b", "/api/v1/traces/%00"):
        response = logged_in_client.get(url, **auth)
        assert response.status_code == 400, url
        assert "NUL" in response.json()["errors"][0]["msg"]
    assert logged_in_client.get("/traces/?q=%00").status_code == 400
    assert logged_in_client.get("/services/a%00b/").status_code == 400


@pytest.mark.django_db
def test_an_alert_id_past_the_column_is_404_not_a_database_error(logged_in_client, ack_token):
    response = logged_in_client.post("/api/v1/alerts/1492008971085/ack", HTTP_AUTHORIZATION=f"Bearer {ack_token}")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert logged_in_client.get("/alerts/1492008971085/").status_code == 404
    assert logged_in_client.get("/alerts/2147483647/").status_code == 404


@pytest.mark.django_db
def test_an_acknowledgement_note_with_nul_is_400_and_a_superscript_cursor_too(client, ack_token, read_token):
    response = client.post("/api/v1/alerts/1/ack", json.dumps({"note": "a\u0000b"}), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {ack_token}")
    assert response.status_code == 400 and response.json()["errors"][0]["loc"] == ["body", "note"]
    response = client.get("/api/v1/transactions?cursor=%C2%B9", HTTP_AUTHORIZATION=f"Bearer {read_token}")
    assert response.status_code == 400
