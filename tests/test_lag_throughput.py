"""Produce and consume rates from offsets alone, with a baseline: a producer that goes
silent reads "0 messages in 10 min, usually 40/s", and a missing poll is not a drop."""
from datetime import UTC, datetime, timedelta

import pytest

from monitor.lag.throughput import per_minute, throughput, topic_produce_throughput
from monitor.lag import samples
from monitor.models import Cluster, Topic

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_messages_per_minute_come_from_per_partition_differences():
    rows = [(0, T0, 100), (1, T0, 500), (0, T0 + timedelta(seconds=30), 130), (1, T0 + timedelta(seconds=30), 520),
            (0, T0 + timedelta(seconds=60), 160)]  # partition 1 missing from the last poll
    assert per_minute(rows) == {T0: 50.0, T0 + timedelta(minutes=1): 30.0}


def test_a_reset_offset_counts_nothing_rather_than_a_negative_rate():
    rows = [(0, T0, 1000), (0, T0 + timedelta(seconds=30), 10)]
    assert per_minute(rows) == {T0: 0.0}


def steady(rate_per_second, since, until):
    minutes = {}
    moment = since.replace(second=0, microsecond=0)
    while moment < until:
        minutes[moment] = rate_per_second * 60
        moment += timedelta(minutes=1)
    return minutes


def test_a_silent_producer_is_compared_with_the_same_time_last_week():
    now = T0 + timedelta(days=8)

    def minutes_of(since, until):
        # Last week: 40/s. The last 10 minutes: nothing.
        found = {m: v for m, v in steady(40, since, until).items() if m < now - timedelta(minutes=10)}
        found.update({m: 0.0 for m in steady(0, max(since, now - timedelta(minutes=10)), until)})
        return found

    result = throughput(minutes_of, now)
    assert result.rate == 0
    assert result.baseline == pytest.approx(40)
    assert result.baseline_method == "last_week"
    assert result.text == "0 messages in 10 min, usually 40/s"


def test_without_last_week_the_baseline_is_the_median_of_the_last_day():
    now = T0

    def minutes_of(since, until):
        if until <= now - timedelta(days=6):
            return {}
        return steady(5, since, until)

    result = throughput(minutes_of, now)
    assert result.baseline_method == "median_24h" and result.baseline == pytest.approx(5)
    assert result.rate == pytest.approx(5)


def test_the_produce_rate_of_a_topic_reads_the_stored_log_end_offsets(db):
    cluster = Cluster.objects.create(name="prod", bootstrap_servers="127.0.0.1:1")
    now = T0
    for step in range(0, 21):  # 30 s polls over the last 10.5 minutes, 2 partitions at 20 msg/s each
        moment = now - timedelta(seconds=630) + timedelta(seconds=30 * step)
        samples.store_poll(cluster.id, moment,
                           log_offsets=[("orders.events", partition, 0, 600 * step) for partition in (0, 1)])
    result = topic_produce_throughput(cluster.id, "orders.events", now)
    assert result.rate == pytest.approx(40)
    assert result.baseline is None and result.baseline_method == ""


def test_the_topic_page_says_how_much_was_produced_and_charts_it(logged_in_client):
    from django.utils import timezone

    cluster = Cluster.objects.create(name="prod", bootstrap_servers="127.0.0.1:1")
    now = timezone.now()
    Topic.objects.create(cluster=cluster, name="orders.events", partitions=1, first_seen_at=now, last_seen_at=now)
    for k in range(25):  # nothing produced lately
        samples.store_poll(cluster.id, now - timedelta(seconds=30 * k), log_offsets=[("orders.events", 0, 0, 10_000)])
    page = logged_in_client.get("/clusters/prod/topics/orders.events/").content.decode()
    assert "orders.events: 0 messages in 10 min" in page
    assert 'id="throughput-figure"' in page
