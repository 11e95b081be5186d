"""/metrics: Prometheus text with exact names, labels and values from each group's latest poll."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from monitor.api.metrics import escape_label_value, format_value
from monitor.choices import ClusterStatus, GroupStatus, TimeLagMethod
from monitor.models import Cluster, ConsumerGroup, PollRun
from tests.lag_rows import Part, make_group, record_poll

# name{label="value",...} value  (label values may hold escaped quotes)
SAMPLE_LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? -?[0-9.e+-]+$|^[a-z_]+ NaN$')


@pytest.fixture
def scrape(client, read_token):
    def get() -> str:
        response = client.get("/metrics", headers={"Authorization": f"Bearer {read_token}"})
        assert response.status_code == 200
        assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return response.content.decode()

    return get


@pytest.fixture
def cluster(cluster):
    """A cluster polled successfully just now (a stale cluster's series are not exported)."""
    cluster.status, cluster.last_success_at = ClusterStatus.OK, timezone.now()
    cluster.save()
    return cluster


def lines_of(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{") or line.startswith(name + " ")]


def test_lag_and_time_lag_per_partition_with_exact_labels(scrape, cluster):
    now = timezone.now()
    group = make_group(cluster, "billing")
    record_poll(group, now - timedelta(seconds=30), [Part("orders", 0, 1, 500, 499, 99.0)], latest=False)
    record_poll(group, now, [Part("orders", 0, 90, 100, 10, 4.5), Part("orders", 1, 7, 7, 0, 0.0, TimeLagMethod.EXACT)])

    text = scrape()

    c = cluster.name
    assert lines_of(text, "kafka_consumergroup_lag") == [
        f'kafka_consumergroup_lag{{cluster="{c}",group="billing",topic="orders",partition="0"}} 10',
        f'kafka_consumergroup_lag{{cluster="{c}",group="billing",topic="orders",partition="1"}} 0',
    ]
    assert lines_of(text, "kafka_consumergroup_lag_seconds") == [
        f'kafka_consumergroup_lag_seconds{{cluster="{c}",group="billing",topic="orders",partition="0"}} 4.5',
        f'kafka_consumergroup_lag_seconds{{cluster="{c}",group="billing",topic="orders",partition="1"}} 0',
    ]
    assert "# TYPE kafka_consumergroup_lag gauge" in text
    assert "# TYPE kafka_consumergroup_lag_seconds gauge" in text


def test_unknown_lag_is_left_out_never_reported_as_zero(scrape, cluster):
    group = make_group(cluster, "billing")
    record_poll(group, timezone.now(), [Part("orders", 0, None, 100, None, None, TimeLagMethod.UNKNOWN)])
    text = scrape()
    assert lines_of(text, "kafka_consumergroup_lag") == []
    assert lines_of(text, "kafka_consumergroup_lag_seconds") == []


def test_gone_groups_report_status_but_no_stale_lag(scrape, cluster):
    group = make_group(cluster, "old", status=GroupStatus.GONE, gone_at=timezone.now())
    record_poll(group, timezone.now() - timedelta(hours=1), [Part("orders", 0, 1, 100, 99)])
    text = scrape()
    assert lines_of(text, "kafka_consumergroup_lag") == []
    assert f'kafka_consumergroup_status{{cluster="{cluster.name}",group="old",status="gone"}} 1' in text


def test_a_group_whose_offsets_were_not_read_reports_unknown_status_and_no_lag_from_its_last_read(scrape,
                                                                                                   cluster):
    now = timezone.now()
    group = make_group(cluster, "audit", status=GroupStatus.UNKNOWN, total_lag=None, unread_since=now,
                       status_reason="offsets not read in the latest poll (GroupAuthorizationFailedError)")
    record_poll(group, now - timedelta(seconds=30), [Part("orders", 0, 1, 100, 99, 4.5)])
    ConsumerGroup.objects.filter(pk=group.pk).update(total_lag=None)  # what the poller leaves on an unread group

    text = scrape()

    for family in ("kafka_consumergroup_lag", "kafka_consumergroup_lag_seconds", "kafka_consumergroup_topic_lag",
                   "kafka_consumergroup_topic_lag_seconds", "kafka_consumergroup_total_lag"):
        assert lines_of(text, family) == [], family
    assert f'kafka_consumergroup_status{{cluster="{cluster.name}",group="audit",status="unknown"}} 1' in text


def test_group_status_is_one_for_the_current_status_and_zero_for_the_others(scrape, cluster):
    make_group(cluster, "billing", status=GroupStatus.STALLED)
    status_lines = lines_of(scrape(), "kafka_consumergroup_status")
    assert len(status_lines) == len(GroupStatus.values)
    assert f'kafka_consumergroup_status{{cluster="{cluster.name}",group="billing",status="stalled"}} 1' in status_lines
    assert f'kafka_consumergroup_status{{cluster="{cluster.name}",group="billing",status="ok"}} 0' in status_lines
    assert sum(line.endswith(" 1") for line in status_lines) == 1


def test_poll_duration_requests_and_errors_per_cluster(scrape, cluster):
    now = timezone.now()
    Cluster.objects.filter(pk=cluster.pk).update(status=ClusterStatus.OK)
    PollRun.objects.create(cluster=cluster, started_at=now - timedelta(minutes=2), duration_seconds=3.0, requests=9,
                           ok=False, error="timeout")
    PollRun.objects.create(cluster=cluster, started_at=now - timedelta(minutes=1), duration_seconds=2.0, requests=8,
                           ok=False, error="timeout")
    PollRun.objects.create(cluster=cluster, started_at=now, duration_seconds=0.25, requests=4)
    idle = Cluster.objects.create(name="never-polled", bootstrap_servers="127.0.0.1:1")

    text = scrape()

    c = cluster.name
    assert lines_of(text, "kafka_monitor_poll_duration_seconds") == [
        f'kafka_monitor_poll_duration_seconds{{cluster="{c}"}} 0.25'
    ]
    assert lines_of(text, "kafka_monitor_poll_requests") == [f'kafka_monitor_poll_requests{{cluster="{c}"}} 4']
    assert lines_of(text, "kafka_monitor_poll_errors_total") == [
        f'kafka_monitor_poll_errors_total{{cluster="{idle.name}"}} 0',
        f'kafka_monitor_poll_errors_total{{cluster="{c}"}} 2',
    ]
    assert "# TYPE kafka_monitor_poll_errors_total counter" in text
    assert lines_of(text, "kafka_monitor_cluster_up") == [f'kafka_monitor_cluster_up{{cluster="{c}"}} 1']


def test_every_line_is_valid_exposition_format(scrape, cluster):
    group = make_group(cluster, 'team "a"\\b', members=3)
    record_poll(group, timezone.now(), [Part("orders", 0, 90, 100, 10, 1.5)])
    PollRun.objects.create(cluster=cluster, started_at=timezone.now(), duration_seconds=0.1, requests=2)
    text = scrape()
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# "):
            assert re.match(r"^# (HELP [a-z_]+ .+|TYPE [a-z_]+ (gauge|counter))$", line), line
        else:
            assert SAMPLE_LINE.match(line), line
    assert 'group="team \\"a\\"\\\\b"' in text


def test_label_values_escape_backslash_quote_and_newline():
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'


def test_values_print_integers_without_a_decimal_point():
    assert [format_value(v) for v in (10, 0, 4.5, 1e-3, float("nan"))] == ["10", "0", "4.5", "0.001", "NaN"]


def test_metrics_require_read_credentials(client, db, ingest_token):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {ingest_token}"}).status_code == 403


def test_metrics_can_be_made_public_by_setting(client, db, settings):
    settings.MONITOR_METRICS_PUBLIC = True
    response = client.get("/metrics")
    assert response.status_code == 200
    assert "# TYPE kafka_consumergroup_lag gauge" in response.content.decode()


@pytest.mark.parametrize("granularity, present, absent", [
    ("partition", ["kafka_consumergroup_lag", "kafka_consumergroup_topic_lag"], []),
    ("topic", ["kafka_consumergroup_topic_lag"], ["kafka_consumergroup_lag", "kafka_consumergroup_lag_seconds"]),
    ("group", ["kafka_consumergroup_total_lag"], ["kafka_consumergroup_lag", "kafka_consumergroup_topic_lag"]),
])
def test_granularity_chooses_partition_topic_or_group_series(client, read_token, cluster, settings,
                                                             granularity, present, absent):
    group = make_group(cluster, 'we"ird\\group', total_lag=10)
    record_poll(group, timezone.now(), [Part("orders", 0, 90, 100, 10, 4.5), Part("orders", 1, 5, 5, 0, 0.0)])
    settings.MONITOR_METRICS_GRANULARITY = granularity
    text = client.get("/metrics", headers={"Authorization": f"Bearer {read_token}"}).content.decode()
    for name in present:
        assert lines_of(text, name), name
    for name in absent:
        assert not lines_of(text, name), name
    assert all(SAMPLE_LINE.match(line) for line in text.splitlines() if not line.startswith("#"))
    if granularity != "group":
        labels = f'cluster="{cluster.name}",group="we\\"ird\\\\group",topic="orders"'
        assert f"kafka_consumergroup_topic_lag{{{labels}}} 10" in lines_of(text, "kafka_consumergroup_topic_lag")
        assert f"kafka_consumergroup_topic_lag_seconds{{{labels}}} 4.5" in text


def test_granularity_can_be_chosen_per_scrape_and_a_bad_one_is_400(client, read_token, cluster):
    group = make_group(cluster, "billing", total_lag=10)
    record_poll(group, timezone.now(), [Part("orders", 0, 90, 100, 10, 4.5)])
    auth = {"Authorization": f"Bearer {read_token}"}
    text = client.get("/metrics?granularity=topic", headers=auth).content.decode()
    assert lines_of(text, "kafka_consumergroup_topic_lag") and not lines_of(text, "kafka_consumergroup_lag")
    response = client.get("/metrics?granularity=broker", headers=auth)
    assert response.status_code == 400
    assert response.json()["errors"][0]["loc"] == ["query", "granularity"]


def test_heartbeats_last_polls_and_the_outbox_are_exported_for_a_dead_man_alert(scrape, cluster):
    from monitor import liveness

    now = timezone.now()
    liveness.beat(liveness.SCHEDULER, now)
    Cluster.objects.filter(pk=cluster.pk).update(last_poll_at=now - timedelta(seconds=7))
    text = scrape()
    [tick] = lines_of(text, "kafka_monitor_scheduler_last_tick_timestamp_seconds")
    assert abs(float(tick.split()[-1]) - now.timestamp()) < 0.01
    assert lines_of(text, "kafka_monitor_worker_last_heartbeat_timestamp_seconds") == []  # never reported: absent
    [poll] = lines_of(text, "kafka_monitor_last_poll_timestamp_seconds")
    assert poll.startswith(f'kafka_monitor_last_poll_timestamp_seconds{{cluster="{cluster.name}"}} ')
    assert lines_of(text, "kafka_monitor_outbox_due_notifications") == ["kafka_monitor_outbox_due_notifications 0"]
    assert lines_of(text, "kafka_monitor_outbox_oldest_due_age_seconds") == [
        "kafka_monitor_outbox_oldest_due_age_seconds 0"]


def test_an_unreachable_clusters_lag_is_not_exported_after_one_missed_poll(scrape, cluster):
    group = make_group(cluster, "billing")
    record_poll(group, timezone.now(), [Part("orders", 0, 90, 100, 10, 4.5)])
    assert lines_of(scrape(), "kafka_consumergroup_lag")
    assert f'kafka_monitor_cluster_up{{cluster="{cluster.name}"}} 1' in scrape()

    cluster.status = ClusterStatus.UNREACHABLE
    cluster.save()
    text = scrape()

    for family in ("kafka_consumergroup_lag", "kafka_consumergroup_lag_seconds", "kafka_consumergroup_topic_lag",
                   "kafka_consumergroup_total_lag", "kafka_consumergroup_status"):
        assert lines_of(text, family) == [], family
    assert f'kafka_monitor_cluster_up{{cluster="{cluster.name}"}} 0' in text
    [age] = lines_of(text, "kafka_monitor_cluster_poll_age_seconds")
    assert age.startswith(f'kafka_monitor_cluster_poll_age_seconds{{cluster="{cluster.name}"}} ')


def test_a_cluster_whose_poller_stopped_is_stale_after_two_intervals(scrape, cluster):
    group = make_group(cluster, "billing")
    record_poll(group, timezone.now(), [Part("orders", 0, 90, 100, 10, 4.5)])
    cluster.last_success_at = timezone.now() - timedelta(seconds=2 * cluster.poll_interval_seconds + 5)
    cluster.save()

    text = scrape()

    assert lines_of(text, "kafka_consumergroup_lag") == []
    assert f'kafka_monitor_cluster_up{{cluster="{cluster.name}"}} 0' in text


def test_a_partial_total_is_absent_never_a_lower_value(scrape, cluster):
    group = make_group(cluster, "billing", partial_partitions=1)
    record_poll(group, timezone.now(), [Part("orders", 0, 200, 1000, 800), Part("orders", 1, 200, None, None)])
    ConsumerGroup.objects.filter(pk=group.pk).update(partial_partitions=1)

    text = scrape()

    assert lines_of(text, "kafka_consumergroup_topic_lag") == []
    assert lines_of(text, "kafka_consumergroup_total_lag") == []
    assert len(lines_of(text, "kafka_consumergroup_lag")) == 1  # the partition whose lag is known
