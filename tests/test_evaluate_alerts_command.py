"""`manage.py evaluate_alerts --once` end to end: real broker lag (tansu), the real poller,
a real local HTTP server as Slack."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from monitor.choices import AlertState, ChannelKind
from monitor.kafka.adapter import Producer, commit_offsets, create_topics
from monitor.lag.poll import poll_cluster
from monitor.models import Alert, AlertRule, Channel


def evaluate_once() -> str:
    out = io.StringIO()
    call_command("evaluate_alerts", "--once", stdout=out, stderr=out)
    return out.getvalue()


@pytest.fixture
def watched(cluster, unique):
    """Only this test's groups are watched: the broker is shared."""
    prefix = unique("alerting")
    cluster.group_include = f"{prefix}*"
    cluster.save()
    return prefix


def test_lag_on_the_broker_fires_one_slack_message_and_catching_up_resolves_it(
        cluster, watched, kafka_settings, unique, webhook_server):
    topic, group = unique("payments"), f"{watched}-billing"
    create_topics(kafka_settings, {topic: 2})
    producer = Producer(kafka_settings)
    try:
        for partition, count in ((0, 12), (1, 3)):
            for _ in range(count):
                producer.send(topic, b"payment", partition=partition)
    finally:
        producer.close()
    commit_offsets(kafka_settings, group, {(topic, 0): 2, (topic, 1): 1})
    slack = Channel.objects.create(name="oncall", kind=ChannelKind.SLACK, webhook_url=webhook_server.url())
    rule = AlertRule.objects.create(name="billing falls behind", cluster=cluster.name, group=f"{watched}-bill*",
                                    metric="lag", op=">", threshold=10, for_seconds=0)
    rule.channels.add(slack)

    assert poll_cluster(cluster.id).ok
    output = evaluate_once()
    assert "1 rules, 1 subjects: 0 new pending, 1 fired" in output
    assert "delivered: 1 sent" in output
    [message] = webhook_server.received
    text = message.json()["text"]
    assert f"group {group}, topic {topic}" in text and "lag is 12 messages (threshold > 10 messages)" in text
    blocks = message.json()["attachments"][0]["blocks"]
    assert f"{topic}/0" in blocks[2]["text"]["text"]  # the worst partition leads the table

    assert "0 fired" in evaluate_once() and len(webhook_server.received) == 1  # no repeat

    commit_offsets(kafka_settings, group, {(topic, 0): 12, (topic, 1): 3})
    assert poll_cluster(cluster.id).ok
    output = evaluate_once()
    assert "1 resolved" in output and "delivered: 1 sent" in output
    assert webhook_server.texts()[1].startswith(f"[RESOLVED] billing falls behind: group {group}, topic {topic}")
    assert Alert.objects.get().state == AlertState.RESOLVED


def test_rules_with_an_unknown_metric_are_reported(db):
    AlertRule.objects.create(name="ghost", metric="gone_metric", threshold=1)
    output = evaluate_once()
    assert "error: unknown metric 'gone_metric' (rules: ghost)" in output
    assert "delivered: no notifications due" in output
