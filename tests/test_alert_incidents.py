"""The on-call read layer (monitor/alerts/incidents.py): the incident strip, the nav
badge, an alert's cause links and chart."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from monitor.alerts import incidents
from monitor.choices import AlertState
from monitor.models import Alert, AlertRule, ConsumerGroup, Finding, Silence


def make_alert(rule: AlertRule, cluster: str, group: str, topic: str, minutes: int = 5,
               state: str = AlertState.FIRING) -> Alert:
    now = timezone.now()
    return Alert.objects.create(rule=rule, subject=f"{cluster}/{group}/{topic}", cluster=cluster, group=group,
                                topic=topic, state=state, value=50, threshold=rule.threshold,
                                started_at=now - timedelta(minutes=minutes), fired_at=now - timedelta(minutes=minutes),
                                last_evaluated_at=now)


def make_finding(kind: str, group: str = "", topic: str = "t", service: str = "", minutes_ago: int = 1,
                 trace_id: str = "", value: float = 2) -> Finding:
    now = timezone.now()
    return Finding.objects.create(
        kind=kind, fingerprint=f"{kind}-{group}-{service}-{topic}", consumer_group=group, service=service, topic=topic,
        value=value, summary=f"{kind} on {topic}", first_seen_at=now - timedelta(minutes=minutes_ago + 3),
        last_seen_at=now - timedelta(minutes=minutes_ago),
        examples=[{"event_id": "e", "trace_id": trace_id}] if trace_id else [])


@pytest.fixture
def lag_rule(db):
    return AlertRule.objects.create(name="analytics stopped", metric="lag", op=">", threshold=20, severity="critical")


@pytest.fixture
def failure_rule(db):
    return AlertRule.objects.create(name="payments failing", metric="failed_events", op=">", threshold=0,
                                    severity="warning")


def test_the_strip_puts_critical_alerts_first_and_links_each_to_its_group(cluster, lag_rule, failure_rule):
    ConsumerGroup.objects.create(cluster=cluster, name="analytics", status="stopped",
                                 status_reason="no commits for 2 min", first_seen_at=timezone.now(),
                                 last_seen_at=timezone.now())
    make_alert(failure_rule, "", "payments", "orders.events", minutes=1)
    make_alert(lag_rule, cluster.name, "analytics", "orders.events", minutes=10)
    found = incidents.incidents(timezone.now())
    assert [i.title for i in found] == ["analytics stopped", "payments failing"]
    stopped = found[0]
    assert stopped.severity == "critical" and stopped.summary == "no commits for 2 min"
    assert stopped.links[0].url == f"/clusters/{cluster.name}/groups/analytics/"
    assert stopped.url == f"/alerts/{Alert.objects.get(rule=lag_rule).id}/"


def test_a_detector_alert_links_the_flow_edge_and_an_example_trace_and_covers_its_finding(failure_rule):
    make_finding("failure_rate", group="payments", topic="orders.events", trace_id="ab" * 16)
    make_alert(failure_rule, "", "payments", "orders.events")
    found = incidents.incidents(timezone.now())
    assert len(found) == 1 and found[0].kind == "alert"  # the finding is not listed twice
    assert [link.role for link in found[0].links] == ["flow", "trace"]
    assert found[0].links[0].url == "/flow/?group=payments"
    assert found[0].links[1].url == f"/traces/{'ab' * 16}/"


def test_active_findings_without_an_alert_are_listed_and_old_ones_are_not(db):
    make_finding("cascade_storm", service="orders", topic="orders.events", trace_id="cd" * 16)
    make_finding("duplicate", group="shipping", topic="old", minutes_ago=120)
    found = incidents.incidents(timezone.now())
    assert [(i.kind, i.title, i.subject) for i in found] == [("finding", "Cascade storm", "orders / orders.events")]
    assert [link.role for link in found[0].links] == ["service", "event-topic", "trace"]


def test_a_silenced_alert_is_muted_last_and_not_counted_in_the_badge(cluster, lag_rule, failure_rule):
    silenced = make_alert(lag_rule, cluster.name, "analytics", "orders.events")
    make_alert(failure_rule, "", "payments", "orders.events")
    assert incidents.firing_count(timezone.now()) == 2
    now = timezone.now()
    Silence.objects.create(rule=lag_rule, cluster="*", group="analytics", topic="*", starts_at=now - timedelta(seconds=1),
                           ends_at=now + timedelta(hours=1), reason="known", created_by="ana")
    assert incidents.firing_count(timezone.now()) == 1
    found = incidents.incidents(timezone.now())
    assert found[-1].alert_id == silenced.id and found[-1].silenced_by.startswith("silence")


def test_a_detector_alert_subject_links_to_the_lag_pages_when_a_cluster_knows_the_group(cluster, failure_rule):
    from monitor.models import Topic

    now = timezone.now()
    ConsumerGroup.objects.create(cluster=cluster, name="payments", first_seen_at=now, last_seen_at=now)
    Topic.objects.create(cluster=cluster, name="orders.events", first_seen_at=now, last_seen_at=now)
    alert = make_alert(failure_rule, "", "payments", "orders.events")
    roles = {link.role: link.url for link in incidents.alert_links(alert)}
    assert roles["group"] == f"/clusters/{cluster.name}/groups/payments/"
    assert roles["topic"] == f"/clusters/{cluster.name}/topics/orders.events/"
    assert roles["event-topic"] == "/event-topics/orders.events/"
    assert roles["traces"] == "/traces/?group=payments&topic=orders.events&failed=1"


def test_the_alert_chart_starts_when_the_group_was_first_seen_and_carries_the_threshold(cluster, lag_rule):
    now = timezone.now()
    ConsumerGroup.objects.create(cluster=cluster, name="analytics", first_seen_at=now - timedelta(minutes=3),
                                 last_seen_at=now)
    alert = make_alert(lag_rule, cluster.name, "analytics", "orders.events", minutes=2)
    chart = incidents.alert_chart(alert, now)
    assert chart is not None and chart.since == now - timedelta(minutes=3) and chart.threshold == 20
    assert chart.onset == alert.started_at and chart.metric == "lag"


def test_an_alert_without_a_known_group_has_no_chart(failure_rule):
    alert = make_alert(failure_rule, "", "payments", "orders.events")
    assert incidents.alert_chart(alert, timezone.now()) is None


def test_a_groups_chart_markers_are_its_alerts_findings_and_new_schema_versions(cluster, lag_rule):
    from monitor.models import Event

    now = timezone.now()
    alert = make_alert(lag_rule, cluster.name, "analytics", "orders.events", minutes=10)
    Alert.objects.filter(pk=alert.pk).update(state=AlertState.RESOLVED, resolved_at=now - timedelta(minutes=2))
    make_finding("cascade_storm", service="analytics", topic="orders.events", minutes_ago=5)
    make_finding("duplicate", group="someone-else", topic="orders.events", minutes_ago=5)
    for minutes, version in ((120, 1), (4, 2), (3, 2)):
        Event.objects.create(event_id=f"e{minutes}", type="OrderPlaced", service="orders", stage="published",
                             timestamp=now - timedelta(minutes=minutes), received_at=now, topic="orders.events",
                             schema_version=version, report_hash=uuid.uuid4())
    markers = incidents.group_markers(cluster.name, "analytics", ["orders.events"], now - timedelta(minutes=30), now)
    labels = sorted(m.label for m in markers)
    assert labels == ["Cascade storm", "alert: analytics stopped", "resolved: analytics stopped", "schema v2"]
    [schema] = [m for m in markers if m.kind == "schema"]
    assert schema.at == now - timedelta(minutes=4) and schema.topic == "orders.events"
