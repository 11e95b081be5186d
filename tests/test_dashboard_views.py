"""Dashboard pages: what a logged-in on-call engineer sees; logged-out users go to the login."""
from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from monitor.choices import ClusterStatus, GroupEventKind, GroupStatus, TimeLagMethod
from monitor.models import Cluster, ConsumerGroup, GroupEvent, PollRun, Topic
from tests.lag_rows import Part, make_group, record_poll
from tests.services import free_port

SASL_PASSWORD = "Sup3r-Secret-SASL-pw"


@pytest.fixture
def billing(cluster):
    """A stalled group with two polls, a lifecycle event and forecasts."""
    now = timezone.now()
    group = make_group(
        cluster, "billing", status=GroupStatus.STALLED, status_reason="no commits for 12 min while lag grew",
        catch_up_seconds=200.0, retention_risk_seconds=7200.0, lost_messages=0, members=2,
    )
    record_poll(group, now - timedelta(minutes=5), [Part("orders", 0, 80, 95, 15, 30.0)], latest=False)
    record_poll(group, now, [
        Part("orders", 0, 90, 1_234_657, 1_234_567, 200.0, TimeLagMethod.INTERPOLATED, log_start=42),
        Part("orders", 1, None, 40, None, None, TimeLagMethod.UNKNOWN, reason="no committed offset"),
    ])
    GroupEvent.objects.create(cluster=cluster, group=group, kind=GroupEventKind.OFFSET_RESET, topic="orders",
                              at=now - timedelta(seconds=45), detail="moved back 500 messages")
    return group


def page(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def chart_data(html: str) -> list[dict]:
    match = re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', html, re.S)
    assert match, "no chart data in the page"
    return json.loads(match.group(1))


@pytest.mark.parametrize("url", ["/", "/clusters/", "/clusters/any/groups/any/", "/clusters/any/topics/any/"])
def test_pages_send_logged_out_visitors_to_the_login(client, db, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response.url.startswith("/login/?next=")


@pytest.mark.parametrize("url", ["/?part=table", "/clusters/?part=table", "/clusters/c/groups/g/?part=charts"])
def test_live_refresh_after_the_session_expired_is_401_not_a_login_page(client, db, url):
    response = client.get(url)
    assert response.status_code == 401
    assert b"<form" not in response.content


def test_overview_lists_groups_with_status_reason_lag_and_sparkline(logged_in_client, billing, cluster):
    make_group(cluster, "audit", status=GroupStatus.OK)
    html = page(logged_in_client, "/")
    assert 'title="no commits for 12 min while lag grew"' in html
    assert ">Stalled</span>" in html
    assert "1,234,567" in html  # total lag, human formatted
    assert "3 min 20 s" in html  # max time lag
    assert '<svg class="sparkline"' in html
    assert f'href="/clusters/{cluster.name}/groups/billing/"' in html
    # Problems first: the stalled group is listed before the healthy one.
    assert html.index(">billing<") < html.index(">audit<")


def test_overview_filters_come_from_the_url(logged_in_client, billing, cluster):
    other = Cluster.objects.create(name="staging", bootstrap_servers="127.0.0.1:1")
    make_group(other, "audit")
    make_group(cluster, "reports", topics=["payments"])
    assert ">audit<" not in page(logged_in_client, f"/?cluster={cluster.name}")
    html = page(logged_in_client, "/?status=stalled")
    assert ">billing<" in html and ">reports<" not in html
    html = page(logged_in_client, "/?q=paym")
    assert ">reports<" in html and ">billing<" not in html
    # The filters survive in the form and in the refresh URL.
    html = page(logged_in_client, "/?q=paym&status=problems")
    assert 'value="paym"' in html
    assert 'data-refresh-url="/?q=paym&amp;status=problems&amp;part=table"' in html


def test_overview_sorts_by_a_column_from_the_url(logged_in_client, cluster):
    for name, lag in (("small", 5), ("big", 500), ("unknown", None)):
        make_group(cluster, name, total_lag=lag)
    html = page(logged_in_client, "/?sort=total_lag&dir=desc")
    assert html.index(">big<") < html.index(">small<") < html.index(">unknown<")
    assert 'href="?sort=total_lag&amp;dir=asc"' in html  # clicking again flips the order


def test_overview_table_fragment_refreshes_without_the_page_around_it(logged_in_client, billing):
    html = page(logged_in_client, "/?part=table")
    assert "<html" not in html
    assert 'id="groups-table"' in html and ">billing<" in html


def test_group_page_shows_status_forecasts_partitions_and_events(logged_in_client, billing, cluster):
    html = page(logged_in_client, f"/clusters/{cluster.name}/groups/billing/")
    assert "no commits for 12 min while lag grew" in html
    assert "3 min 20 s" in html and "until caught up" in html
    assert "2 h" in html and "until retention deletes unread messages" in html
    # Partition table: committed, log start, log end, lag, time lag and method.
    assert re.search(r">90</td>\s*<td class=\"num\">42</td>\s*<td class=\"num\">1,234,657</td>\s*"
                     r"<td class=\"num\">1,234,567</td>", html)
    assert "interpolated" in html
    assert 'title="no committed offset"' in html and "unknown</span>" in html
    assert "Offset reset" in html and "moved back 500 messages" in html
    assert '<script src="/static/vendor/plotly-basic.min.js"></script>' in html
    assert "//cdn" not in html.lower()  # (a bare "cdn" can occur inside a random CSRF token)


def test_group_page_charts_mark_lifecycle_events(logged_in_client, billing, cluster):
    charts = chart_data(page(logged_in_client, f"/clusters/{cluster.name}/groups/billing/"))
    assert [c["topic"] for c in charts] == ["orders"]
    traces = charts[0]["figure"]["data"]
    assert traces[0]["y"] == [15, 1_234_567]
    assert traces[-1]["name"] == "events, alerts, findings"
    assert traces[-1]["text"] == ["Offset reset: moved back 500 messages"]


def test_group_page_range_and_unit_live_in_the_url(logged_in_client, billing, cluster):
    html = page(logged_in_client, f"/clusters/{cluster.name}/groups/billing/?range=24h&metric=time_lag_seconds")
    assert re.search(r'class="active" data-range="24h"', html)
    for key in ("15m", "1h", "6h", "24h", "7d"):
        assert f'data-range="{key}"' in html
    figure = chart_data(html)[0]["figure"]
    assert figure["layout"]["yaxis"]["title"]["text"] == "seconds behind"
    assert figure["data"][0]["y"][-1] == 200.0


def test_group_page_partition_breakdown(logged_in_client, billing, cluster):
    html = page(logged_in_client, f"/clusters/{cluster.name}/groups/billing/?breakdown=partition")
    names = [t["name"] for t in chart_data(html)[0]["figure"]["data"]]
    assert names == ["orders", "partition 0", "partition 1", "events, alerts, findings"]
    assert "Hide partitions" in html


def test_group_page_parts_for_live_refresh(logged_in_client, billing, cluster):
    url = f"/clusters/{cluster.name}/groups/billing/"
    body = logged_in_client.get(url + "?range=15m&part=charts").json()
    assert body["charts"][0]["topic"] == "orders"
    summary = page(logged_in_client, url + "?part=summary")
    assert "<html" not in summary and "until caught up" in summary and "partitions-table" not in summary
    partitions = page(logged_in_client, url + "?part=partitions")
    assert "<html" not in partitions and 'id="partitions-table"' in partitions and "Offset reset" in partitions


def test_unknown_cluster_group_or_topic_is_404(logged_in_client, cluster):
    assert logged_in_client.get("/clusters/nope/groups/x/").status_code == 404
    assert logged_in_client.get(f"/clusters/{cluster.name}/groups/nope/").status_code == 404
    assert logged_in_client.get(f"/clusters/{cluster.name}/topics/nope/").status_code == 404


def test_topic_page_lists_every_group_reading_it_with_lag(logged_in_client, billing, cluster):
    audit = make_group(cluster, "audit")
    record_poll(audit, timezone.now(), [Part("orders", 0, 5, 12, 7, 1.0), Part("payments", 0, 0, 3, 3)])
    Topic.objects.create(cluster=cluster, name="orders", partitions=2, first_seen_at=timezone.now(),
                         last_seen_at=timezone.now())
    html = page(logged_in_client, f"/clusters/{cluster.name}/topics/orders/")
    assert "2 partitions" in html
    assert re.search(r">audit</a></td>.*?<td class=\"num\">7</td>", html, re.S)
    assert re.search(r">billing</a></td>.*?<td class=\"num\">1,234,567 <span", html, re.S)
    assert [t["name"] for t in chart_data(html)[0]["figure"]["data"]] == ["audit", "billing"]


def test_cluster_link_opens_the_overview_filtered_to_it(logged_in_client, cluster):
    response = logged_in_client.get(f"/clusters/{cluster.name}/")
    assert response.status_code == 302
    assert response.url == f"/?cluster={cluster.name}"


def test_clusters_page_shows_status_last_poll_and_error(logged_in_client, cluster):
    now = timezone.now()
    Cluster.objects.filter(pk=cluster.pk).update(status=ClusterStatus.OK, last_poll_at=now - timedelta(seconds=20),
                                                 last_success_at=now - timedelta(seconds=20), last_error="")
    PollRun.objects.create(cluster=cluster, started_at=now, duration_seconds=0.75, requests=6)
    Cluster.objects.create(name="broken", bootstrap_servers="10.0.0.1:9092", status=ClusterStatus.UNREACHABLE,
                           last_poll_at=now, last_error="KafkaTimeoutError: no answer in 10 s")
    html = page(logged_in_client, "/clusters/")
    assert ">broken</a>" in html and "KafkaTimeoutError: no answer in 10 s" in html
    assert ">OK</span>" in html and ">Unreachable</span>" in html
    assert "20 s ago" in html
    assert "0.8 s" in html and ">6</td>" in html


def test_clusters_page_counts_the_groups_whose_offsets_could_not_be_read(logged_in_client, cluster):
    now = timezone.now()
    make_group(cluster, "billing")
    make_group(cluster, "audit&co", status=GroupStatus.UNKNOWN, unread_since=now)
    make_group(cluster, "old", status=GroupStatus.GONE, unread_since=None, gone_at=now)
    make_group(cluster, "no-commits-yet", status=GroupStatus.UNKNOWN)  # unknown, but read
    html = page(logged_in_client, "/clusters/")
    link = re.search(r'<a class="status status-warning unread-count" href="/\?cluster=([^"&]+)&amp;status=unread"'
                     r' title="[^"]+">1 unread</a>', html)
    assert link and link.group(1) == cluster.name
    listed = page(logged_in_client, f"/?cluster={cluster.name}&status=unread&part=table")
    assert "audit&amp;co" in listed and "no-commits-yet" not in listed and ">billing<" not in listed


def test_unreachable_cluster_banner_shows_on_every_page(logged_in_client, billing, cluster):
    now = timezone.now()
    Cluster.objects.filter(pk=cluster.pk).update(status=ClusterStatus.UNREACHABLE, last_poll_at=now,
                                                 last_error="NoBrokersAvailable")
    PollRun.objects.create(cluster=cluster, started_at=now - timedelta(minutes=3), duration_seconds=10, ok=False)
    for url in ("/", "/clusters/", f"/clusters/{cluster.name}/groups/billing/", f"/clusters/{cluster.name}/topics/orders/"):
        html = page(logged_in_client, url)
        assert re.search(rf"Cluster {cluster.name} unreachable since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC "
                         r"\(3 min( \d+ s)? ago\): NoBrokersAvailable", html), url


def test_no_page_or_api_answer_ever_shows_the_sasl_password(logged_in_client, billing, cluster):
    Cluster.objects.filter(pk=cluster.pk).update(
        sasl_mechanism="PLAIN", sasl_username="monitor", sasl_password=SASL_PASSWORD,
        status=ClusterStatus.UNREACHABLE, last_poll_at=timezone.now(),
        last_error=f"SaslAuthenticationFailed: user monitor password {SASL_PASSWORD} rejected",
    )
    urls = ["/", "/?part=table", "/clusters/", "/clusters/?part=table", f"/clusters/{cluster.name}/groups/billing/",
            f"/clusters/{cluster.name}/groups/billing/?part=summary",
            f"/clusters/{cluster.name}/groups/billing/?part=partitions", f"/clusters/{cluster.name}/topics/orders/",
            "/api/v1/clusters", f"/api/v1/clusters/{cluster.name}/groups",
            f"/api/v1/clusters/{cluster.name}/groups/billing", f"/api/v1/clusters/{cluster.name}/groups/billing/lag",
            "/metrics"]
    for url in urls:
        html = page(logged_in_client, url)
        assert SASL_PASSWORD not in html, url
    assert "SaslAuthenticationFailed: user monitor password •••••• rejected" in page(logged_in_client, "/clusters/")


def test_redis_down_shows_a_banner_instead_of_failing(logged_in_client, billing, cluster, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    html = page(logged_in_client, f"/clusters/{cluster.name}/groups/billing/")
    assert "Redis is unreachable" in html
    assert "1,234,567" in html  # the data still shows


def test_database_down_shows_a_banner_instead_of_failing(client, transactional_db, user):
    client.force_login(user)
    connection = connections["default"]
    original_port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = free_port()  # nothing listens there
    try:
        response = client.get("/")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = original_port
    assert response.status_code == 503
    html = response.content.decode()
    assert "The database is unreachable" in html
    assert 'class="banner banner-error"' in html


def test_every_logged_in_page_is_offered_the_banners_but_the_login_page_is_not(rf, client, user, cluster):
    from dashboards.context_processors import navigation

    Cluster.objects.filter(pk=cluster.pk).update(status=ClusterStatus.UNREACHABLE, last_error="NoBrokersAvailable")
    request = rf.get("/flow/")
    request.user = user
    [banner] = navigation(request)["banners"]()
    assert banner["level"] == "error" and "NoBrokersAvailable" in banner["text"]
    # Anonymous visitors learn nothing about the clusters.
    assert "NoBrokersAvailable" not in page(client, "/login/")


def test_group_page_shows_the_groups_open_alerts(logged_in_client, billing, cluster):
    from monitor.choices import AlertState, Severity
    from monitor.models import Alert, AlertRule

    rule = AlertRule.objects.create(name="billing falls behind", group="billing", metric="lag",
                                    threshold=1000, severity=Severity.CRITICAL)
    now = timezone.now()
    Alert.objects.create(rule=rule, subject=f"{cluster.name}/billing/orders", cluster=cluster.name,
                         group="billing", topic="orders", state=AlertState.FIRING, value=1_234_567,
                         threshold=1000, started_at=now, fired_at=now, last_evaluated_at=now)
    html = page(logged_in_client, f"/clusters/{cluster.name}/groups/billing/")
    alerts = html[html.index('id="group-alerts"'):]
    assert "billing falls behind" in alerts
    assert "No open alerts" not in alerts


def test_group_page_partition_table_names_each_partitions_owner_escaped(logged_in_client, billing, cluster):
    ConsumerGroup.objects.filter(pk=billing.pk).update(protocol="consumer", member_details=[
        {"member_id": "m-1", "client_id": "<b>billing-7f9c</b>", "host": "10.2.3.4", "partitions": [["orders", 0]]},
    ])
    html = page(logged_in_client, f"/clusters/{cluster.name}/groups/billing/?part=partitions")
    assert '<span title="member m-1">&lt;b&gt;billing-7f9c&lt;/b&gt; <span class="muted">on 10.2.3.4</span>' in html
    assert ">unassigned</span>" in html  # partition 1: the broker told, nobody owns it
    summary = page(logged_in_client, f"/clusters/{cluster.name}/groups/billing/?part=summary")
    assert "Consumer (KIP-848) protocol" in summary


def test_group_page_says_owners_are_unknown_when_the_broker_did_not_tell(logged_in_client, billing, cluster):
    html = page(logged_in_client, f"/clusters/{cluster.name}/groups/billing/?part=partitions")
    assert 'title="The broker did not say who is in this group">unknown</span>' in html


def test_overview_shows_the_incident_strip_the_firing_badge_and_since_with_the_reason_inline(
        logged_in_client, billing, cluster):
    from monitor.models import Alert, AlertRule

    ConsumerGroup.objects.filter(pk=billing.pk).update(status_since=timezone.now() - timedelta(minutes=7))
    rule = AlertRule.objects.create(name="billing stalled", metric="status", op=">=", threshold=2, severity="critical")
    now = timezone.now()
    Alert.objects.create(rule=rule, subject=f"{cluster.name}/billing/", cluster=cluster.name, group="billing",
                         state="firing", value=2, threshold=2, started_at=now - timedelta(minutes=6),
                         fired_at=now - timedelta(minutes=6), last_evaluated_at=now)
    html = page(logged_in_client, "/")
    strip = html.split('id="incidents"', 1)[1].split("</section>", 1)[0]
    assert "billing stalled" in strip and re.search(r"since <time[^>]*>\d+ min[^<]*ago", strip), strip
    assert f'href="/clusters/{cluster.name}/groups/billing/" data-role="group"' in strip
    assert "no commits for 12 min while lag grew" in strip  # the group's reason is the summary
    assert 'id="firing-badge"' in html and '>1</span>' in html.split('id="firing-badge"', 1)[1][:200]
    table = html.split('id="groups-table"', 1)[1]
    assert '<span class="status-reason">no commits for 12 min while lag grew</span>' in table
    assert re.search(r'class="muted since"><time[^>]*>\d+ min[^<]*ago', table)
    fragment = page(logged_in_client, "/?part=incidents")
    assert "<html" not in fragment and "billing stalled" in fragment


def test_overview_says_all_clear_when_nothing_fires(logged_in_client, db):
    html = page(logged_in_client, "/")
    assert 'id="incidents-clear"' in html and 'id="firing-badge"' not in html


def test_a_stopped_groups_forecast_says_it_is_not_consuming_and_its_alerts_sit_by_the_status(
        logged_in_client, billing, cluster):
    from monitor.models import Alert, AlertRule

    ConsumerGroup.objects.filter(pk=billing.pk).update(status=GroupStatus.STOPPED, catch_up_seconds=None)
    rule = AlertRule.objects.create(name="billing stopped", metric="status", op=">=", threshold=3, severity="critical")
    now = timezone.now()
    Alert.objects.create(rule=rule, subject=f"{cluster.name}/billing/", cluster=cluster.name, group="billing",
                         state="firing", value=3, threshold=3, started_at=now, fired_at=now, last_evaluated_at=now)
    html = page(logged_in_client, f"/clusters/{cluster.name}/groups/billing/")
    assert "consumes slower than producers write" not in html and "the group stopped committing" in html
    firing = html.split('id="group-firing"', 1)[1].split("</div>", 1)[0]
    assert "billing stopped" in firing
    assert html.index('id="group-firing"') < html.index('id="charts"')


def test_group_page_shows_each_partitions_time_lag_method_and_flags_clock_skew(logged_in_client, cluster):
    group = make_group(cluster, "payments")
    skew = "producer clock skew: record at offset 7 is 600.0 s in the future; shown as 0 s (at least)"
    record_poll(group, timezone.now(), [
        Part("orders", 0, 7, 9, 2, 0.0, TimeLagMethod.RECORD, reason=skew),
        Part("orders", 1, 3, 9, 6, 95.0, TimeLagMethod.RECORD),
        Part("orders", 2, 1, 9, 8, 80.0, TimeLagMethod.INTERPOLATED_BUDGET,
             reason="record not read this cycle: the fetch budget went to partitions further behind"),
    ])
    html = page(logged_in_client, f"/clusters/{cluster.name}/groups/payments/?part=partitions")
    methods = [m.strip() for m in re.findall(r"<td class=\"muted method\"[^>]*>([^<]*)", html)]
    assert methods == ["record", "record", "interpolated (budget)"]
    assert f'<span class="status status-warning" title="{skew}">clock skew</span>' in html
    assert html.count(">clock skew</span>") == 1


def test_overview_pages_are_links_that_keep_the_filters(logged_in_client, cluster):
    for index in range(55):
        make_group(cluster, f"bulk-{index:03d}", status=GroupStatus.STALLED if index < 3 else GroupStatus.OK)
    html = page(logged_in_client, "/?q=bulk")
    assert "Page 1 of 2" in html and 'href="?q=bulk&amp;page=2" rel="next"' in html
    assert 'data-status="stalled">Stalled 3</a>' in html  # counts per status over every page
    html = page(logged_in_client, "/?q=bulk&page=2")
    assert "Page 2 of 2" in html and html.count('<tr data-status=') == 5


def test_group_page_marks_a_partial_total_and_stalled_partitions(logged_in_client, cluster):
    group = make_group(cluster, "billing", status=GroupStatus.STALLED, partial_partitions=1, stalled_partitions=1)
    record_poll(group, timezone.now(), [Part("orders", 0, 100, 150, 50, stalled=True), Part("orders", 1, 5, None, None)])
    ConsumerGroup.objects.filter(pk=group.pk).update(partial_partitions=1, stalled_partitions=1)

    html = logged_in_client.get(f"/clusters/{cluster.name}/groups/billing/").content.decode()

    assert "partial: 1 unknown" in html
    assert "1 partition stalled" in html
    assert '<span class="status status-stalled"' in html


def test_group_page_says_a_groups_offsets_were_not_read_and_from_when_its_partitions_are(logged_in_client,
                                                                                           cluster):
    """Its last partition detail stays, dated; its figures are unknown, its retention risk
    unknown rather than "no risk"."""
    now = timezone.now()
    group = make_group(cluster, "audit")
    record_poll(group, now - timedelta(minutes=3), [Part("orders", 0, 100, 150, 50)])
    ConsumerGroup.objects.filter(pk=group.pk).update(
        status=GroupStatus.UNKNOWN, total_lag=None, retention_risk_seconds=None, unread_since=now - timedelta(minutes=2),
        status_reason="offsets not read in the latest poll (GroupAuthorizationFailedError)")

    html = page(logged_in_client, f"/clusters/{cluster.name}/groups/audit/")

    assert "offsets not read in the latest poll (GroupAuthorizationFailedError)" in html
    assert "its committed offsets could not be read since" in html and "2 min ago" in html
    assert "The partitions below are from the last poll that read them" in html and "3 min ago" in html
    assert "retention risk unknown" in html and "no risk" not in html
    assert re.search(r">100</td>\s*<td class=\"num\">", html)  # the last detail, shown as such


def test_group_page_of_an_unread_group_shows_no_risk_or_counts_from_an_older_poll(logged_in_client, cluster):
    group = make_group(cluster, "audit")
    record_poll(group, timezone.now() - timedelta(minutes=3), [Part("orders", 0, 100, 150, 50)])
    ConsumerGroup.objects.filter(pk=group.pk).update(
        status=GroupStatus.UNKNOWN, total_lag=None, retention_risk_seconds=None, unread_since=timezone.now(),
        partial_partitions=1, status_reason="offsets not read in the latest poll (CoordinatorLoadInProgressError)")
    html = page(logged_in_client, f"/clusters/{cluster.name}/groups/audit/")
    assert "retention risk unknown" in html and "no risk" not in html


def test_group_page_of_a_group_never_read_says_why_it_has_no_partitions(logged_in_client, cluster):
    make_group(cluster, "audit", status=GroupStatus.UNKNOWN, total_lag=None, unread_since=timezone.now(),
               status_reason="offsets not read in the latest poll (GroupAuthorizationFailedError)")
    html = page(logged_in_client, f"/clusters/{cluster.name}/groups/audit/")
    assert "committed offsets have not been read yet (offsets not read in the latest poll " \
           "(GroupAuthorizationFailedError))" in html
    assert "The partitions below" not in html
