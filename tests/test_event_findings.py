"""The findings read layer (monitor/events/findings.py) and the Findings page."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitor.errors import QueryError
from monitor.events import findings
from monitor.models import Finding


def make(kind: str, fingerprint: str, hours_ago: float, service: str = "", group: str = "", topic: str = "t") -> Finding:
    now = timezone.now()
    return Finding.objects.create(kind=kind, fingerprint=fingerprint, service=service, consumer_group=group, topic=topic,
                                  value=1, summary=f"{kind} {fingerprint}", first_seen_at=now - timedelta(hours=hours_ago),
                                  last_seen_at=now - timedelta(hours=hours_ago))


@pytest.fixture
def seeded(db):
    return [make("schema_drift", "a", 0.1, group="inventory", topic="inventory.events"),
            make("cascade_storm", "b", 2, service="orders", topic="orders.events"),
            make("failure_rate", "c", 30, group="payments", topic="orders.events")]


def test_findings_are_listed_newest_first(seeded):
    assert [f.fingerprint for f in findings.find_findings(findings.FindingFilter(), timezone.now())] == ["a", "b", "c"]


def test_findings_filter_by_kind_service_topic_and_time(seeded):
    now = timezone.now()
    by = lambda **kw: [f.fingerprint for f in findings.find_findings(findings.FindingFilter(**kw), now)]  # noqa: E731
    assert by(kind="cascade_storm") == ["b"]
    assert by(service="orders") == ["b"] and by(service="payments") == ["c"]
    assert by(topic="orders.events") == ["b", "c"]
    assert by(since="1h") == ["a"] and by(since="24h") == ["a", "b"]


def test_a_bad_filter_names_its_field():
    with pytest.raises(QueryError) as error:
        findings.FindingFilter.from_query({"kind": "nope"})
    assert error.value.field == "kind"
    with pytest.raises(QueryError) as error:
        findings.FindingFilter.from_query({"since": "3 weeks"})
    assert error.value.field == "since"


def test_the_findings_behind_an_alert_use_the_service_for_storms(seeded):
    assert [f.fingerprint for f in findings.findings_for_alert("cascade_storm_events", "orders", "orders.events")] == ["b"]
    assert [f.fingerprint for f in findings.findings_for_alert("schema_drift_events", "inventory",
                                                               "inventory.events")] == ["a"]
    assert findings.findings_for_alert("lag", "inventory", "inventory.events") == []


def test_the_findings_page_filters_and_escapes(logged_in_client, seeded):
    make("duplicate", "evil", 0.2, group="<script>x</script>", topic="t")
    html = logged_in_client.get("/findings/?kind=schema_drift").content.decode()
    assert 'data-kind="schema_drift"' in html and 'data-kind="cascade_storm"' not in html
    html = logged_in_client.get("/findings/").content.decode()
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    response = logged_in_client.get("/findings/?kind=bogus")
    assert response.status_code == 400 and "Bad query parameter &#x27;kind&#x27;" in response.content.decode()
