"""The flow area's pages: login, deep links, search, trace timeline, service and topic
pages, refresh fragments, banners instead of blank pages, no secrets."""
import json
import re
from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from monitor.models import Cluster, ExpectedSubscription, Finding, Topic
from tests import services
from tests.flow_data import T0, cluster, event, group_with_lag, new_trace_id, order_saga, save

pytestmark = pytest.mark.django_db
WINDOW = "since=2024-05-01T11:55:00Z&until=2024-05-01T12:05:00Z"
IN_HTML = WINDOW.replace(":", "%3A").replace("&", "&amp;")  # as it appears in an href
PAGES = ["/flow/", "/traces/", "/traces/{trace}/", "/services/payments/", "/event-topics/orders.events/"]


@pytest.fixture
def saga(db):
    trace_id = new_trace_id()
    save(*order_saga(trace_id))
    return trace_id


def figure_in(html, script_id):
    match = re.search(rf'<script id="{script_id}" type="application/json">(.*?)</script>', html, re.S)
    assert match, f"no {script_id} in the page"
    return json.loads(match.group(1))


@pytest.mark.parametrize("path", PAGES)
def test_every_page_requires_login(path, saga):
    response = Client().get(path.format(trace=saga))
    assert response.status_code == 302
    assert response.url.startswith("/login/?next=")


def test_the_flow_page_draws_the_graph_and_lists_its_edges(logged_in_client, saga):
    response = logged_in_client.get(f"/flow/?{WINDOW}")
    assert response.status_code == 200
    html = response.content.decode()
    figure = figure_in(html, "flow-figure")
    links = {url for trace in figure["data"] if trace["meta"]["part"] == "node" for url in trace["customdata"]}
    assert f"/services/payments/?{WINDOW.replace(':', '%3A')}" in links
    assert 'id="flow-edges-table"' in html and "payments.events" in html
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert "/static/vendor/plotly-basic.min.js" in scripts
    assert all(src.startswith("/static/") for src in scripts)  # served locally, no CDN


def test_an_edge_links_to_its_example_traces(logged_in_client, saga):
    html = logged_in_client.get(f"/flow/?{WINDOW}").content.decode()
    figure = figure_in(html, "flow-figure")
    arrows = [url for trace in figure["data"] if trace["meta"]["part"] == "edge-arrow" for url in trace["customdata"]]
    edge_link = next(url for url in arrows if "group=payments" in url)
    listing = logged_in_client.get(edge_link)
    assert listing.status_code == 200
    assert saga in listing.content.decode()


def test_focus_hide_and_range_live_in_the_url(logged_in_client, saga):
    html = logged_in_client.get(f"/flow/?{WINDOW}&focus=shipping&hide=hubs").content.decode()
    names = {text for trace in figure_in(html, "flow-figure")["data"] if trace["meta"]["part"] == "node"
             for text in trace["text"]}
    assert names == {"shipping", "payments.events", "payments"}
    assert '<option value="shipping" selected>' in html
    assert '<option value="hubs" selected>' in html
    # the range picker keeps the other parameters when the range changes
    assert '<input type="hidden" name="focus" value="shipping">' in html
    assert '<option value="custom" selected>' in html


def test_a_link_from_a_group_shows_the_flow_around_its_services(logged_in_client, saga):
    html = logged_in_client.get(f"/flow/?{WINDOW}&group=payments").content.decode()
    assert "around group payments" in html
    assert '<input type="hidden" name="group" value="payments">' in html
    names = {text for trace in figure_in(html, "flow-figure")["data"] if trace["meta"]["part"] == "node"
             for text in trace["text"]}
    assert names == {"orders.events", "payments", "payments.events", "orders", "shipping"}
    html = logged_in_client.get(f"/flow/?{WINDOW}&group=nobody").content.decode()
    assert "No service reported consuming as group" in html


def test_the_page_hides_hub_services_unless_asked_to_show_them(logged_in_client):
    reports = []
    for n in range(9):
        reports.append(event(f"e{n}", "published", f"svc{n}", n, topic=f"t{n}"))
        reports.append(event(f"e{n}", "consumed", "audit", n + 1, topic=f"t{n}", group="audit"))
    save(*reports)

    def node_names(query):
        html = logged_in_client.get(f"/flow/?{WINDOW}{query}").content.decode()
        return {text for trace in figure_in(html, "flow-figure")["data"] if trace["meta"]["part"] == "node"
                for text in trace["text"]}, html

    names, html = node_names("")
    assert "audit" not in names and "svc3" in names
    assert "hidden (audit)" in html
    names, html = node_names("&hide=none")
    assert "audit" in names
    assert '<option value="none" selected>' in html


def test_the_flow_refreshes_in_place_with_a_json_part(logged_in_client, saga):
    response = logged_in_client.get(f"/flow/?{WINDOW}&part=figure")
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["figure"]["data"] and "flow-edges-table" in body["table_html"]


def test_a_live_flow_page_refreshes_itself(logged_in_client):
    save(event("e1", "published", "orders", timezone.now() - timedelta(minutes=1), topic="orders.events"))
    html = logged_in_client.get("/flow/?range=15m").content.decode()
    assert 'data-live-url="/flow/?range=15m&amp;part=figure"' in html
    assert '<option value="15m" selected>' in html


def test_an_empty_range_says_so_instead_of_a_blank_chart(logged_in_client):
    html = logged_in_client.get("/flow/").content.decode()
    assert 'id="flow-empty"' in html and "POST /api/v1/events" in html


def test_a_bad_range_in_a_link_becomes_a_banner_not_an_error(logged_in_client, saga):
    response = logged_in_client.get("/flow/?since=yesterday&failed_warn=x")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Ignored the time range in the link" in html
    assert "failed_warn" in html


def test_without_redis_the_page_still_renders_with_a_banner(logged_in_client, saga):
    closed = f"redis://127.0.0.1:{services.free_port()}/0"
    down = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": closed,
                        "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2}}}
    with override_settings(CACHES=down, REDIS_URL=closed):
        response = logged_in_client.get(f"/flow/?{WINDOW}")
    assert response.status_code == 200
    assert "Redis is unreachable" in response.content.decode()
    assert "payments.events" in response.content.decode()


def test_searching_a_trace_id_event_id_or_a_key_with_one_trace_opens_it(logged_in_client, saga):
    response = logged_in_client.get("/traces/", {"q": saga, "range": "6h"})
    assert response.status_code == 302 and response.url == f"/traces/{saga}/?range=6h"
    response = logged_in_client.get("/traces/", {"q": f"ev-paid-{saga[:8]}"})
    assert response.url.startswith(f"/traces/{saga}/")
    response = logged_in_client.get("/traces/", {"q": "order-1"})  # the only trace of that key
    assert response.url.startswith(f"/traces/{saga}/")


def test_searching_a_key_lists_its_traces(logged_in_client, saga):
    other = new_trace_id()
    save(*order_saga(other, start=20))
    html = logged_in_client.get("/traces/", {"q": "order-1"}).content.decode()
    assert "2 traces with key" in html
    assert saga in html and other in html


def test_searching_nothing_known_says_so(logged_in_client, saga):
    html = logged_in_client.get("/traces/", {"q": "order-404"}).content.decode()
    assert 'id="trace-not-found"' in html


def test_the_trace_page_shows_the_timeline_links_and_where_it_stopped(logged_in_client):
    trace_id = new_trace_id()
    save(*order_saga(trace_id, fail_payment=True))
    group_with_lag(cluster("prod"), "payments", {"orders.events": 3}, T0)
    response = logged_in_client.get(f"/traces/{trace_id}/?{WINDOW}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Stopped here: dead-lettered by payments (payments)" in html
    figure = figure_in(html, "trace-figure")
    assert {t["meta"]["kind"] for t in figure["data"]} >= {"publish", "queue_wait", "failed"}
    assert 'href="/clusters/prod/groups/payments/"' in html
    assert f'href="/event-topics/orders.events/?{IN_HTML}"' in html
    assert f'href="/api/v1/traces/{trace_id}"' in html
    assert html.count('data-event-id="ev-placed-') == 4


def test_a_saga_trace_lists_its_steps_and_compensations(logged_in_client):
    trace_id = new_trace_id()
    save(event("e1", "published", "orders", 0, topic="orders.events", trace_id=trace_id),
         event("e1", "processed", "payments", 1, topic="orders.events", group="payments", trace_id=trace_id),
         event("e2", "published", "payments", 2, type="PaymentRefunded", topic="payments.events", trace_id=trace_id))
    html = logged_in_client.get(f"/traces/{trace_id}/").content.decode()
    assert 'id="trace-saga"' in html
    assert re.search(r'class="compensation".*?PaymentRefunded', html, re.S)


def test_a_trace_missing_an_expected_consumer_shows_it(logged_in_client, saga):
    ExpectedSubscription.objects.create(topic="payments.events", consumer_group="ledger", first_seen_at=T0)
    html = logged_in_client.get(f"/traces/{saga}/").content.decode()
    assert "never consumed by group ledger from payments.events" in html


def test_an_unknown_trace_is_a_404_page(logged_in_client):
    assert logged_in_client.get(f"/traces/{new_trace_id()}/").status_code == 404


def test_secret_looking_attributes_are_not_shown_on_the_trace_page(logged_in_client):
    trace_id = new_trace_id()
    save(event("e1", "published", "orders", 0, topic="t", trace_id=trace_id,
               attributes={"api_key": "sk-live-123456", "note": "visible", "nested": {"password": "hunter22"}}))
    html = logged_in_client.get(f"/traces/{trace_id}/").content.decode()
    assert "visible" in html
    assert "sk-live-123456" not in html and "hunter22" not in html


def test_the_service_page_shows_rates_failures_groups_and_findings(logged_in_client):
    for n in range(3):
        save(*order_saga(new_trace_id(), start=n, fail_payment=n == 0))
    group_with_lag(cluster("prod"), "payments", {"orders.events": 11}, T0)
    Finding.objects.create(kind="failure_rate", fingerprint="fp", service="payments", summary="payments fails a lot",
                           first_seen_at=T0, last_seen_at=T0, examples=[{"event_id": "x", "trace_id": "a" * 32}])
    html = logged_in_client.get(f"/services/payments/?{WINDOW}").content.decode()
    assert figure_in(html, "service-rates-figure")["data"]
    assert 'id="service-publishes"' in html and "PaymentAuthorised" in html
    assert 'href="/clusters/prod/groups/payments/"' in html
    assert "payments fails a lot" in html and f'href="/traces/{"a" * 32}/' in html
    assert f"/flow/?{IN_HTML}&amp;focus=payments" in html


def test_the_service_body_refreshes_as_a_fragment(logged_in_client, saga):
    response = logged_in_client.get(f"/services/payments/?{WINDOW}&part=body")
    html = response.content.decode()
    assert "<html" not in html and 'id="service-consumes"' in html


def test_an_unknown_service_is_a_404(logged_in_client):
    assert logged_in_client.get("/services/nobody/").status_code == 404


def test_the_event_topic_page_links_to_the_lag_topic_page(logged_in_client, saga):
    prod = cluster("prod")
    Topic.objects.create(cluster=prod, name="orders.events", partitions=3, first_seen_at=T0, last_seen_at=T0)
    html = logged_in_client.get(f"/event-topics/orders.events/?{WINDOW}").content.decode()
    assert 'href="/clusters/prod/topics/orders.events/"' in html
    assert 'id="topic-producers"' in html and 'id="topic-types"' in html
    assert figure_in(html, "topic-rates-figure")["data"]
    assert logged_in_client.get("/event-topics/no.such.topic/").status_code == 404


def test_the_event_topic_page_shows_schema_drift_per_event_type(logged_in_client):
    save(event("p1", "published", "orders", 0, topic="orders.events", schema_version=1),
         event("p2", "published", "orders", 1, topic="orders.events", schema_version=2),
         event("p1", "consumed", "billing", 2, topic="orders.events", group="billing", schema_version=1),
         event("p2", "processed", "billing", 3, topic="orders.events", group="billing", schema_version=1),
         event("c1", "published", "orders", 4, type="OrderCancelled", topic="orders.events", schema_version=1),
         event("c1", "processed", "billing", 5, type="OrderCancelled", topic="orders.events", group="billing",
               schema_version=1))
    for url in (f"/event-topics/orders.events/?{WINDOW}", f"/event-topics/orders.events/?{WINDOW}&part=body"):
        html = logged_in_client.get(url).content.decode()
        tables = dict(re.findall(r'<table class="data schema-matrix"[^>]*data-event-type="([^"]+)"[^>]*>(.*?)</table>',
                                 html, re.S))
        assert set(tables) == {"OrderCancelled", "OrderPlaced"}
        placed, cancelled = tables["OrderPlaced"], tables["OrderCancelled"]
        assert "<th" in placed and ">billing</th>" in placed
        drifting = re.findall(r'<tr data-drift="true">(.*?)</tr>', placed, re.S)
        assert len(drifting) == 1 and ">v2<" in drifting[0] and '<td class="bad">never reported</td>' in drifting[0]
        assert "schema drift" in placed and placed.count("<td>handled</td>") == 1
        assert "never reported" not in cancelled and "schema drift" not in cancelled
        assert "<td>handled</td>" in cancelled


@pytest.mark.parametrize("path", PAGES)
def test_no_page_shows_a_secret_and_every_post_form_has_a_csrf_token(logged_in_client, saga, path):
    Cluster.objects.create(name="secure", bootstrap_servers="127.0.0.1:9", sasl_username="svc",
                           sasl_password="kafka-sasl-secret-value")
    html = logged_in_client.get(path.format(trace=saga) + f"?{WINDOW}").content.decode()
    assert "kafka-sasl-secret-value" not in html
    for form in re.findall(r"<form[^>]*method=\"post\"[^>]*>.*?</form>", html, re.S | re.I):
        assert "csrfmiddlewaretoken" in form


def test_trace_ids_link_to_the_trace_backend_when_a_template_is_set(logged_in_client, saga, settings):
    html = logged_in_client.get(f"/traces/{saga}/?{WINDOW}").content.decode()
    assert "trace-backend" not in html  # unset: no external link
    settings.MONITOR_TRACE_URL_TEMPLATE = "https://jaeger.example/trace/{trace_id}"
    page = logged_in_client.get(f"/traces/{saga}/?{WINDOW}").content.decode()
    assert f'<a class="trace-backend" href="https://jaeger.example/trace/{saga}"' in page
    listing = logged_in_client.get(f"/traces/?{WINDOW}").content.decode()
    assert f'href="https://jaeger.example/trace/{saga}"' in listing


def test_the_event_topic_page_shows_registered_published_and_handled_versions(logged_in_client, saga):
    from monitor.models import SchemaSubject, TopicSchemaId

    prod = cluster("prod")
    SchemaSubject.objects.create(cluster=prod, subject="orders.events-value", compatibility="NONE", synced_at=T0,
                                 versions=[{"version": 1, "schema_id": 11}, {"version": 2, "schema_id": 12}])
    TopicSchemaId.objects.create(cluster=prod, topic="orders.events", schema_id=77, messages=1,
                                 first_seen_at=T0, last_seen_at=T0)
    save(event("v2-a", "published", "orders", 1.0, topic="orders.events", schema_version=2),
         event("v2-a", "processed", "payments", 2.0, topic="orders.events", group="payments", schema_version=1))
    html = logged_in_client.get(f"/event-topics/orders.events/?{WINDOW}").content.decode()
    assert 'id="topic-registry-1" data-subject="orders.events-value"' in html
    assert 'title="Any change is accepted: consumers can break on the next registration">NONE</span>' in html
    assert "schema id 77 seen on the topic, not in the registry" in html
    assert "not on the newest version: payments" in html
    newest = re.search(r'<tr data-newest="true">(.*?)</tr>', html, re.S).group(1)
    assert "v2" in newest and ">12<" in newest and ">1</td>" in newest  # id 12, published once


def test_the_traces_list_shows_each_traces_key_and_sorts_by_duration(logged_in_client, saga):
    longer = new_trace_id()
    save(*order_saga(longer, start=20, fail_payment=True))
    html = logged_in_client.get(f"/traces/?{WINDOW}").content.decode()
    assert '<a href="/traces/?q=order-1" class="trace-key">order-1</a>' in html
    assert 'id="sort-duration"' in html
    recent = logged_in_client.get(f"/traces/?{WINDOW}").content.decode()
    longest = logged_in_client.get(f"/traces/?{WINDOW}&sort=duration").content.decode()
    from monitor.events.traces import summarise_traces

    durations = {s.trace_id: s.duration_seconds for s in summarise_traces([saga, longer])}
    first, second = sorted(durations, key=lambda t: -durations[t])
    assert longest.index(first) < longest.index(second)
    assert "sort=recent" in longest and "sort=duration" in recent

def test_a_large_system_draws_its_busiest_nodes_and_folds_the_rest_into_others(logged_in_client):
    save(*[event(f"e{n}", "published", f"svc{n:03d}", n % 50, topic=f"t{n % 3}") for n in range(130)])
    html = logged_in_client.get(f"/flow/?{WINDOW}").content.decode()
    names = {text for trace in figure_in(html, "flow-figure")["data"] if trace["meta"]["part"] == "node"
             for text in trace["text"]}
    assert len(names) == 61 and "73 other services" in names  # the 60 busiest and one node for the rest
    html = logged_in_client.get(f"/flow/?{WINDOW}&top=all").content.decode()
    names = {text for trace in figure_in(html, "flow-figure")["data"] if trace["meta"]["part"] == "node"
             for text in trace["text"]}
    assert len(names) == 133
