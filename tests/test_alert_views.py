"""The alerts page, one alert with its acknowledge form, and the group-page fragment."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.template.loader import render_to_string
from django.utils import timezone

from dashboards.alert_views import alerts_for_group
from monitor.choices import AlertState, ChannelKind, NotificationKind
from monitor.models import Alert, AlertRule, Channel, MaintenanceWindow, Notification, Silence


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def rules(db):
    return {
        "critical": AlertRule.objects.create(name="billing falls behind", metric="lag", op=">", threshold=1000,
                                             severity="critical"),
        "info": AlertRule.objects.create(name="orders slow", metric="time_lag_seconds", op=">", threshold=60,
                                         severity="info"),
    }


def make_alert(rule, state, cluster="prod", group="billing", topic="payments", age_minutes=5, **fields) -> Alert:
    now = timezone.now()
    values = {"rule": rule, "subject": f"{cluster}/{group}/{topic}", "cluster": cluster, "group": group,
              "topic": topic, "state": state, "value": 5000.0, "threshold": rule.threshold,
              "started_at": now - timedelta(minutes=age_minutes), "last_evaluated_at": now,
              "fired_at": now - timedelta(minutes=age_minutes) if state != AlertState.PENDING else None}
    return Alert.objects.create(**{**values, **fields})


def rows(html: str, state: str) -> int:
    section = html.split(f'data-state="{state}"', 1)[1].split("</table>", 1)[0]
    return section.count("data-alert-id=")


def test_the_alerts_page_needs_a_login(client, db):
    response = client.get("/alerts/")
    assert response.status_code == 302 and response.url.startswith("/login/")


def test_the_page_shows_firing_pending_recently_resolved_and_silences(logged_in_client, rules, now):
    make_alert(rules["critical"], AlertState.FIRING)
    make_alert(rules["info"], AlertState.PENDING, group="orders", topic="orders")
    make_alert(rules["critical"], AlertState.RESOLVED, group="billing-eu", resolved_at=now - timedelta(hours=1))
    make_alert(rules["critical"], AlertState.RESOLVED, group="billing-old", resolved_at=now - timedelta(days=3))
    Silence.objects.create(group="billing*", starts_at=now, ends_at=now + timedelta(hours=1), reason="deploy",
                           created_by="ana")
    MaintenanceWindow.objects.create(name="nightly", start_time=(now - timedelta(minutes=5)).time(),
                                     duration_minutes=30)
    html = logged_in_client.get("/alerts/").content.decode()
    # The silence covers the firing alert: it is shown apart, muted, not under "Firing".
    assert (rows(html, "firing"), rows(html, "silenced"), rows(html, "pending"), rows(html, "resolved")) == (0, 1, 1, 1)
    assert "billing falls behind" in html and "5,000 messages" in html and "&gt; 1,000 messages" in html
    assert "billing-old" not in html
    assert "deploy" in html and "ana" in html
    assert 'maintenance nightly <span class="status status-warning">active</span>' in html
    assert 'href="/clusters/prod/groups/billing/"' in html


def test_the_page_filters_by_cluster_and_severity(logged_in_client, rules):
    make_alert(rules["critical"], AlertState.FIRING, cluster="prod")
    make_alert(rules["info"], AlertState.FIRING, cluster="staging")
    html = logged_in_client.get("/alerts/?cluster=staging").content.decode()
    assert rows(html, "firing") == 1 and "orders slow" in html and "billing falls behind" not in html
    html = logged_in_client.get("/alerts/?severity=critical").content.decode()
    assert rows(html, "firing") == 1 and "billing falls behind" in html


def test_the_tables_refresh_as_a_fragment(logged_in_client, rules):
    make_alert(rules["critical"], AlertState.FIRING)
    response = logged_in_client.get("/alerts/?severity=critical&part=tables")
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html and rows(html, "firing") == 1


def test_an_alert_page_shows_its_notifications_and_an_acknowledge_form(logged_in_client, rules, now):
    alert = make_alert(rules["critical"], AlertState.FIRING, no_data=True,
                       detail={"no_data_reason": "cluster prod is unreachable"})
    channel = Channel.objects.create(name="oncall", kind=ChannelKind.SLACK, webhook_url="https://x.example/secret")
    Notification.objects.create(alert=alert, channel=channel, kind=NotificationKind.FIRING, payload={},
                                created_at=now, due_at=now, sent_at=now, attempts=2, last_error="HTTP 500")
    html = logged_in_client.get(f"/alerts/{alert.id}/").content.decode()
    assert "no data: cluster prod is unreachable" in html
    assert "oncall" in html and "sent" in html and "HTTP 500" in html
    assert f'action="/alerts/{alert.id}/ack/"' in html
    assert "https://x.example/secret" not in html


def test_acknowledging_from_the_page_records_the_user_and_note(logged_in_client, rules):
    alert = make_alert(rules["critical"], AlertState.FIRING)
    response = logged_in_client.post(f"/alerts/{alert.id}/ack/", {"note": "restarting consumers"})
    assert response.status_code == 302 and response.url == f"/alerts/{alert.id}/"
    alert.refresh_from_db()
    assert (alert.acknowledged_by, alert.acknowledgement_note) == ("oncall", "restarting consumers")
    html = logged_in_client.get(response.url).content.decode()
    assert "Acknowledged: reminders stop" in html and "by oncall" in html and 'id="acknowledge"' not in html


def test_acknowledging_a_resolved_alert_explains_why_not(logged_in_client, rules, now):
    alert = make_alert(rules["critical"], AlertState.RESOLVED, resolved_at=now)
    html = logged_in_client.post(f"/alerts/{alert.id}/ack/", follow=True).content.decode()
    assert "only pending or firing alerts can be acknowledged" in html


def test_acknowledging_redirects_only_to_this_site(logged_in_client, rules):
    alert = make_alert(rules["critical"], AlertState.FIRING)
    response = logged_in_client.post(f"/alerts/{alert.id}/ack/", {"next": "https://evil.example/"})
    assert response.url == f"/alerts/{alert.id}/"


def test_an_unknown_alert_is_404(logged_in_client, db):
    assert logged_in_client.get("/alerts/999999/").status_code == 404
    assert logged_in_client.post("/alerts/999999/ack/").status_code == 404


def test_the_group_page_fragment_lists_the_groups_alerts(rules, now):
    make_alert(rules["critical"], AlertState.FIRING)
    make_alert(rules["info"], AlertState.PENDING)
    make_alert(rules["critical"], AlertState.RESOLVED, resolved_at=now)
    make_alert(rules["critical"], AlertState.FIRING, group="orders")
    context = alerts_for_group("prod", "billing")
    assert len(context["group_alerts"]) == 2 and len(context["group_resolved_alerts"]) == 1
    html = render_to_string("fragments/alerts_group.html", context)
    assert html.count("data-alert-id=") == 3 and "Recently resolved" in html
    assert "No open alerts" in render_to_string("fragments/alerts_group.html", alerts_for_group("prod", "quiet"))


def test_event_metric_alerts_name_their_subject_without_an_empty_cluster(logged_in_client):
    from django.utils import timezone

    from monitor.choices import AlertState
    from monitor.models import Alert, AlertRule

    rule = AlertRule.objects.create(name="events lost", cluster="*", metric="lost_events", threshold=0)
    now = timezone.now()
    Alert.objects.create(rule=rule, subject="/shipping/inventory.events", cluster="", group="shipping",
                         topic="inventory.events", state=AlertState.FIRING, value=56, threshold=0,
                         started_at=now, fired_at=now, last_evaluated_at=now)
    html = logged_in_client.get("/alerts/").content.decode()
    assert "shipping / inventory.events" in html
    assert "/shipping/inventory.events" not in html


def test_an_open_alert_is_acknowledged_with_one_click_from_the_table(logged_in_client, rules):
    alert = make_alert(rules["critical"], AlertState.FIRING)
    html = logged_in_client.get("/alerts/").content.decode()
    assert f'action="/alerts/{alert.id}/ack/"' in html
    response = logged_in_client.post(f"/alerts/{alert.id}/ack/", {"next": "/alerts/"})
    assert response.status_code == 302 and response.url == "/alerts/"
    alert.refresh_from_db()
    assert alert.acknowledged_at is not None and alert.acknowledgement_note == ""


def test_silencing_from_the_alert_page_mutes_it_and_shows_it_apart(logged_in_client, rules):
    alert = make_alert(rules["critical"], AlertState.FIRING)
    response = logged_in_client.post(f"/alerts/{alert.id}/silence/", {"duration": "4h", "reason": "deploy"})
    assert response.status_code == 302
    silence = Silence.objects.get()
    assert (silence.rule_id, silence.group, silence.reason) == (rules["critical"].id, "billing", "deploy")
    assert timedelta(hours=3, minutes=59) < silence.ends_at - silence.starts_at <= timedelta(hours=4)
    html = logged_in_client.get("/alerts/").content.decode()
    assert (rows(html, "firing"), rows(html, "silenced")) == (0, 1)
    assert 'id="alert-silenced"' in logged_in_client.get(f"/alerts/{alert.id}/").content.decode()


def test_a_silence_until_resolved_ends_when_the_alert_resolves(logged_in_client, rules):
    alert = make_alert(rules["critical"], AlertState.FIRING)
    logged_in_client.post(f"/alerts/{alert.id}/silence/", {"duration": "resolved", "reason": "known"})
    assert rows(logged_in_client.get("/alerts/").content.decode(), "silenced") == 1
    Alert.objects.filter(pk=alert.id).update(state=AlertState.RESOLVED, resolved_at=timezone.now())
    again = make_alert(rules["critical"], AlertState.FIRING)
    html = logged_in_client.get("/alerts/").content.decode()
    assert rows(html, "firing") == 1 and 'data-state="silenced"' not in html and f'data-alert-id="{again.id}"' in html


def test_a_silence_needs_a_reason_and_a_known_duration(logged_in_client, rules):
    alert = make_alert(rules["critical"], AlertState.FIRING)
    page = logged_in_client.post(f"/alerts/{alert.id}/silence/", {"duration": "4h", "reason": " "}, follow=True)
    assert "Not silenced: reason" in page.content.decode()
    page = logged_in_client.post(f"/alerts/{alert.id}/silence/", {"duration": "2y", "reason": "x"}, follow=True)
    assert "Not silenced: duration" in page.content.decode()
    assert not Silence.objects.exists()
    assert logged_in_client.post("/alerts/999999/silence/", {"duration": "1h", "reason": "x"}).status_code == 404


def test_the_alert_page_links_to_the_group_topic_and_failed_traces_and_charts_the_lag(logged_in_client, rules,
                                                                                       cluster):
    from monitor.models import ConsumerGroup

    ConsumerGroup.objects.create(cluster=cluster, name="billing", first_seen_at=timezone.now() - timedelta(hours=1),
                                 last_seen_at=timezone.now())
    alert = make_alert(rules["critical"], AlertState.FIRING, cluster=cluster.name)
    html = logged_in_client.get(f"/alerts/{alert.id}/").content.decode()
    assert f'href="/clusters/{cluster.name}/groups/billing/" data-role="group"' in html
    assert f'href="/clusters/{cluster.name}/topics/payments/" data-role="topic"' in html
    assert 'href="/traces/?group=billing&amp;topic=payments&amp;failed=1"' in html
    assert 'id="chart-data"' in html and "threshold 1,000" in html


def test_a_detector_alert_links_its_subject_and_shows_the_finding_and_example_traces(logged_in_client, db):
    from monitor.models import Finding

    rule = AlertRule.objects.create(name="drift", metric="schema_drift_events", op=">", threshold=0)
    now = timezone.now()
    Finding.objects.create(kind="schema_drift", fingerprint="f1", consumer_group="inventory", topic="inventory.events",
                           value=3, summary="3 events in v2, never handled by inventory",
                           examples=[{"event_id": "e1", "trace_id": "ab" * 16}], first_seen_at=now, last_seen_at=now)
    alert = make_alert(rule, AlertState.FIRING, cluster="", group="inventory", topic="inventory.events")
    html = logged_in_client.get(f"/alerts/{alert.id}/").content.decode()
    assert "inventory / inventory.events" in html and "/inventory/inventory.events" not in html
    assert 'href="/event-topics/inventory.events/" data-role="event-topic"' in html
    assert 'href="/flow/?group=inventory" data-role="flow"' in html
    assert "never handled by inventory" in html and f'href="/traces/{"ab" * 16}/"' in html


def test_a_resolved_alert_shows_its_peak_and_a_clearing_one_says_why_it_still_fires(logged_in_client, rules):
    resolved = make_alert(rules["critical"], AlertState.RESOLVED, value=0.0, detail={"worst": 3860.0},
                          resolved_at=timezone.now())
    html = logged_in_client.get("/alerts/").content.decode()
    assert "peak 3,860 messages" in html
    assert "peak 3,860 messages" in logged_in_client.get(f"/alerts/{resolved.id}/").content.decode()
    AlertRule.objects.filter(pk=rules["critical"].pk).update(keep_firing_seconds=300)
    clearing = make_alert(rules["critical"], AlertState.FIRING, group="billing-eu",
                          clear_since=timezone.now() - timedelta(minutes=1))
    html = logged_in_client.get(f"/alerts/{clearing.id}/").content.decode()
    assert 'id="alert-keep-firing"' in html and "keeps firing until clear for 5 min" in html

def test_the_alerts_page_pages_each_table_and_counts_over_every_page(logged_in_client, rules, now):
    rule = rules["critical"]
    Alert.objects.bulk_create(
        Alert(rule=rule, subject=f"prod/g{i:03d}/t", cluster="prod", group=f"g{i:03d}", topic="t",
              state=AlertState.FIRING, value=1.0, threshold=0.0, started_at=now, fired_at=now, last_evaluated_at=now)
        for i in range(105)
    )
    html = logged_in_client.get("/alerts/").content.decode()
    assert "Firing (105)" in html and "Page 1 of 2" in html
    assert html.count('<tr data-alert-id=') == 100
    assert 'href="?firing_page=2" rel="next"' in html
    html = logged_in_client.get("/alerts/?firing_page=2").content.decode()
    assert html.count('<tr data-alert-id=') == 5


def test_an_event_alert_links_its_example_traces_here_and_to_the_trace_backend(logged_in_client, settings):
    from django.utils import timezone

    from monitor.choices import AlertState
    from monitor.models import Alert, AlertRule

    settings.MONITOR_TRACE_URL_TEMPLATE = "https://tempo.example/trace/{trace_id}"
    rule = AlertRule.objects.create(name="events lost", cluster="*", metric="lost_events", threshold=0)
    now = timezone.now()
    alert = Alert.objects.create(rule=rule, subject="/shipping/inventory.events", cluster="", group="shipping",
                                 topic="inventory.events", state=AlertState.FIRING, value=56, threshold=0,
                                 started_at=now, fired_at=now, last_evaluated_at=now,
                                 detail={"summary": "56 events lost", "traces": ["4bf92f35<x>"]})
    html = logged_in_client.get(f"/alerts/{alert.id}/").content.decode()
    assert 'href="/traces/4bf92f35%3Cx%3E/"' in html
    assert 'href="https://tempo.example/trace/4bf92f35%3Cx%3E"' in html
    assert "<x>" not in html


def test_silence_this_subject_silences_exactly_a_hostile_subject(logged_in_client, rules):
    from urllib.parse import parse_qs, urlsplit

    from monitor.alerts.rules import glob_matches

    group = "billing&rule=&cluster=*&group=*"
    alert = make_alert(rules["critical"], AlertState.FIRING, group=group, topic="pay?ments[1]")
    page = logged_in_client.get(f"/alerts/{alert.id}/")
    assert page.status_code == 200
    url = page.context["silence_url"]
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert query["rule"] == [str(rules["critical"].id)]
    assert query["cluster"] == ["prod"]
    assert glob_matches(query["group"][0], group) and not glob_matches(query["group"][0], "billing&rule=x")
    assert glob_matches(query["topic"][0], "pay?ments[1]") and not glob_matches(query["topic"][0], "payXments1")


def test_a_detector_alerts_subject_links_to_its_event_topic_without_a_stray_slash(logged_in_client, db):
    rule = AlertRule.objects.create(name="drift", metric="schema_drift_events", op=">", threshold=0)
    make_alert(rule, AlertState.FIRING, cluster="", group="inventory", topic="inventory.events")
    html = logged_in_client.get("/alerts/").content.decode()
    assert '<a href="/event-topics/inventory.events/">inventory / inventory.events</a>' in html
    assert "/inventory/inventory.events" not in html
