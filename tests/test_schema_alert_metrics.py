"""Alert metrics of the Schema Registry, from synced subjects, the tap's schema ids and
reported events in the real database; and a rule on one fires through the engine."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitor.alerts import metrics
from monitor.alerts.engine import evaluate
from monitor.alerts.rules import Scope, Subject
from monitor.models import Alert, AlertRule, Cluster, SchemaSubject, TopicSchemaId
from tests.flow_data import event, save

pytestmark = pytest.mark.django_db


@pytest.fixture
def prod(db):
    now = timezone.now()
    cluster = Cluster.objects.create(name="prod", bootstrap_servers="127.0.0.1:9", schema_registry_url="http://r")
    SchemaSubject.objects.create(cluster=cluster, subject="orders-value", compatibility="BACKWARD", synced_at=now,
                                 versions=[{"version": 1, "schema_id": 11}, {"version": 2, "schema_id": 12}])
    SchemaSubject.objects.create(cluster=cluster, subject="orders-key", compatibility="NONE", synced_at=now,
                                 versions=[{"version": 1, "schema_id": 5}])
    for schema_id in (12, 99):
        TopicSchemaId.objects.create(cluster=cluster, topic="orders", schema_id=schema_id, messages=3,
                                     first_seen_at=now, last_seen_at=now)
    return cluster


def readings(name: str) -> dict[Subject, float | None]:
    return {s: r.value for s, r in metrics.get(name).fetch([Scope()], timezone.now()).items()}


def test_unknown_schema_ids_count_the_ids_the_registry_does_not_know(prod):
    assert readings("unknown_schema_ids") == {Subject("prod", "", "orders"): 1.0}


def test_compatibility_none_counts_the_topics_subjects_on_none(prod):
    assert readings("schema_compatibility_none") == {Subject("prod", "", "orders"): 1.0}


def test_a_group_not_on_the_newest_published_version_reads_1(prod):
    now = timezone.now()
    save(event("e1", "published", "orders", now - timedelta(minutes=5), topic="orders", schema_version=2),
         event("e1", "processed", "billing", now - timedelta(minutes=4), topic="orders", group="billing",
               schema_version=1),
         event("e1", "processed", "audit", now - timedelta(minutes=4), topic="orders", group="audit",
               schema_version=2))
    assert readings("schema_newest_not_processed") == {
        Subject("", "billing", "orders"): 1.0, Subject("", "audit", "orders"): 0.0}


def test_a_rule_on_unknown_schema_ids_fires_naming_them(prod):
    AlertRule.objects.create(name="unknown schemas", cluster="*", metric="unknown_schema_ids", threshold=0)
    evaluate(timezone.now())
    alert = Alert.objects.get()
    assert (alert.state, alert.topic, alert.value) == ("firing", "orders", 1.0)
    assert alert.detail["summary"] == "schema id(s) 99 not in the registry"
