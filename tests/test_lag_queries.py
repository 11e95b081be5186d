"""Read side: downsampling, resolution choice, filters, readers, cluster alarms, sparklines."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.utils import timezone

from monitor.lag import queries
from monitor.lag import series as lag_series
from monitor.lag.queries import OverviewFilter
from monitor.lag.series import choose_resolution, downsample
from monitor.redaction import redact
from monitor.choices import ClusterStatus, GroupStatus, TimeLagMethod
from monitor.models import Cluster, ConsumerGroup, PollRun
from tests.lag_rows import Part, make_group, record_poll, topic_samples

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=dt_timezone.utc)


def series(values, step=timedelta(seconds=30)):
    return [(T0 + i * step, v) for i, v in enumerate(values)]


# --------------------------------------------------------------------------- pure


@pytest.mark.parametrize("size", [0, 1, 2, 499, 500, 501, 1000, 4999, 10_000])
@pytest.mark.parametrize("max_points", [1, 2, 3, 50, 500])
def test_downsample_never_exceeds_max_points(size, max_points):
    points = series(range(size))
    result = downsample(points, max_points)
    assert len(result) <= max_points
    assert len(result) == min(size, max_points)  # evenly spaced polls fill every bucket
    assert [ts for ts, _ in result] == sorted(ts for ts, _ in result)
    assert set(result) <= set(points)  # real samples, never invented ones


def test_downsample_keeps_short_series_unchanged():
    points = series([3, None, 5])
    assert downsample(points, 3) == points


def test_downsample_keeps_each_buckets_highest_value_so_spikes_survive():
    values = [1] * 1000
    values[617] = 9000
    result = downsample(series(values), 10)
    assert len(result) == 10
    assert (T0 + 617 * timedelta(seconds=30), 9000) in result


def test_downsample_keeps_unknown_buckets_as_gaps():
    values = [5] * 50 + [None] * 50
    result = downsample(series(values), 10)
    assert [v for _, v in result] == [5] * 5 + [None] * 5


def test_downsample_prefers_a_known_value_over_unknown_in_one_bucket():
    assert downsample(series([None, 0, None, None]), 1) == [(T0 + timedelta(seconds=30), 0)]


def test_downsample_with_identical_timestamps_still_caps_points():
    points = [(T0, i) for i in range(100)]
    assert len(downsample(points, 7)) == 7


def test_downsample_rejects_zero_points():
    with pytest.raises(ValueError):
        downsample(series([1, 2]), 0)


@pytest.mark.parametrize(
    ("hours", "resolution"), [(0.25, 0), (1, 0), (6, 0), (6.01, 60), (24, 60), (24 * 7, 60)]
)
def test_resolution_is_every_poll_up_to_six_hours_then_one_minute(hours, resolution):
    assert choose_resolution(T0 - timedelta(hours=hours), T0) == resolution


def test_redact_removes_every_secret_occurrence():
    assert redact("auth failed for pw hunter2 (hunter2)", ["hunter2", ""]) == "auth failed for pw •••••• (••••••)"
    assert redact("nothing to hide", [""]) == "nothing to hide"


def test_overview_filter_reads_the_query_string_and_ignores_bad_values():
    f = OverviewFilter.from_query({"cluster": "prod", "status": "stalled", "q": " bill ", "sort": "total_lag",
                                   "dir": "desc"})
    assert f == OverviewFilter(cluster="prod", status="stalled", text="bill", sort="total_lag", descending=True)
    assert OverviewFilter.from_query({"status": "exploded", "sort": "DROP TABLE"}) == OverviewFilter()


# --------------------------------------------------------------------------- database


def test_latest_partitions_come_from_the_latest_poll(cluster):
    now = timezone.now()
    group = make_group(cluster, "billing")
    record_poll(group, now - timedelta(minutes=1), [Part("orders", 0, 1, 500, 499)], latest=False)
    record_poll(group, now, [Part("orders", 0, 90, 100, 10, 2.0), Part("orders", 1, None, 3, None,
                                                                         method=TimeLagMethod.UNKNOWN)])
    rows = queries.latest_partitions(group)
    assert [(r.partition, r.lag, r.time_lag_method) for r in rows] == [(0, 10, "interpolated"), (1, None, "unknown")]


def test_topic_readers_sum_lag_per_group_and_keep_all_unknown_as_unknown(cluster):
    now = timezone.now()
    billing = make_group(cluster, "billing")
    record_poll(billing, now, [Part("orders", 0, 1, 11, 10, 3.0), Part("orders", 1, None, 5, None),
                               Part("payments", 0, 1, 2, 1)])
    audit = make_group(cluster, "audit")
    record_poll(audit, now, [Part("orders", 0, None, 11, None)])
    make_group(cluster, "elsewhere")

    readers = queries.topic_readers(cluster, "orders")

    assert [(r.group.name, r.lag, r.max_time_lag_seconds, r.partitions, r.unknown_partitions) for r in readers] == [
        ("audit", None, None, 1, 1),
        ("billing", 10, 3.0, 2, 1),
    ]



def test_topic_readers_show_an_unread_groups_lag_as_unknown_not_its_last_reading(cluster):
    now = timezone.now()
    billing = make_group(cluster, "billing")
    record_poll(billing, now - timedelta(minutes=2), [Part("orders", 0, 1, 11, 10, 3.0)])
    ConsumerGroup.objects.filter(pk=billing.pk).update(unread_since=now)

    readers = queries.topic_readers(cluster, "orders")

    assert [(r.group.name, r.lag, r.max_time_lag_seconds, r.partitions, r.unknown_partitions) for r in readers] == [
        ("billing", None, None, 1, 1)]


def test_topic_readers_take_the_same_queries_for_two_readers_as_for_six(cluster):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    now = timezone.now()
    counts = []
    for names in (("a1", "a2"), ("b1", "b2", "b3", "b4", "b5", "b6")):
        for name in names:
            record_poll(make_group(cluster, name), now, [Part(f"topic-{len(names)}", 0, 1, 11, 10)])
        with CaptureQueriesContext(connection) as queries_run:
            readers = queries.topic_readers(cluster, f"topic-{len(names)}")
        assert [r.group.name for r in readers] == list(names)
        counts.append(len(queries_run))
    assert counts[0] == counts[1]

def test_topic_lag_series_gives_one_series_per_reading_group(cluster):
    now = timezone.now()
    for name in ("billing", "audit"):
        topic_samples(make_group(cluster, name), "orders", now - timedelta(minutes=5), 3, timedelta(minutes=1))
    result = lag_series.topic_lag_series(cluster, "orders", now - timedelta(hours=1), now, now)
    assert [(s.name, len(s.points)) for s in result] == [("audit", 3), ("billing", 3)]


def test_partition_series_split_each_topic_by_partition(cluster):
    now = timezone.now()
    group = make_group(cluster, "billing")
    for i in range(3):
        record_poll(group, now - timedelta(minutes=3 - i), [Part("orders", 0, 0, i, i), Part("orders", 1, 0, 5, 5)])
    result = lag_series.partition_lag_series(group, now - timedelta(hours=1), now)
    assert [(s.name, [v for _, v in s.points]) for s in result["orders"]] == [
        ("partition 0", [0, 1, 2]), ("partition 1", [5, 5, 5])]


def test_unreachable_cluster_alarm_dates_from_the_first_failure_after_the_last_success(cluster):
    now = timezone.now()
    Cluster.objects.filter(pk=cluster.pk).update(
        status=ClusterStatus.UNREACHABLE, last_success_at=now - timedelta(minutes=10), last_poll_at=now,
        last_error="NoBrokersAvailable", sasl_password="pw-123",
    )
    PollRun.objects.create(cluster=cluster, started_at=now - timedelta(minutes=20), duration_seconds=1, ok=False)
    PollRun.objects.create(cluster=cluster, started_at=now - timedelta(minutes=9), duration_seconds=1, ok=False)
    PollRun.objects.create(cluster=cluster, started_at=now - timedelta(minutes=8), duration_seconds=1, ok=False)
    alarms = queries.cluster_alarms(now)
    assert alarms == [queries.ClusterAlarm(cluster.name, "unreachable", now - timedelta(minutes=9), "NoBrokersAvailable")]


def test_a_cluster_nobody_polls_raises_a_stale_alarm(cluster):
    now = timezone.now()
    Cluster.objects.filter(pk=cluster.pk).update(status=ClusterStatus.OK, last_poll_at=now - timedelta(minutes=5))
    fresh = Cluster.objects.create(name="fresh", bootstrap_servers="127.0.0.1:1", status=ClusterStatus.OK,
                                   last_poll_at=now - timedelta(seconds=20))
    Cluster.objects.create(name="disabled", bootstrap_servers="127.0.0.1:1", enabled=False,
                           last_poll_at=now - timedelta(days=5))
    alarms = queries.cluster_alarms(now)
    assert [(a.name, a.kind) for a in alarms] == [(cluster.name, "stale")]
    assert fresh.name not in [a.name for a in alarms]


def test_overview_rows_carry_hourly_total_lag_sparklines(cluster):
    now = timezone.now()
    group = make_group(cluster, "billing")
    # Polls 4, 3, 2 and 1 minutes ago; the sparkline has 90 s buckets (40 per hour), so
    # the polls 3 and 2 minutes ago share one, which keeps its highest total.
    for i in range(4):
        record_poll(group, now - timedelta(minutes=4 - i), [Part("orders", 0, 0, i, i), Part("payments", 0, 0, 10, 10)])
    record_poll(group, now - timedelta(hours=2), [Part("orders", 0, 0, 999, 999)], latest=False)
    make_group(cluster, "idle")

    data = queries.overview(OverviewFilter(sort="group"), now)

    assert [(r.group.name, r.sparkline) for r in data.rows] == [("billing", [10, 12, 13]), ("idle", [])]
    assert data.total_groups == 2
    assert data.clusters == [cluster.name]


def test_cluster_rows_give_latest_run_group_counts_and_a_redacted_error(cluster):
    now = timezone.now()
    Cluster.objects.filter(pk=cluster.pk).update(sasl_password="pw-123", last_error="login pw-123 refused")
    make_group(cluster, "a", status=GroupStatus.STALLED)
    make_group(cluster, "b")
    PollRun.objects.create(cluster=cluster, started_at=now - timedelta(minutes=1), duration_seconds=5, requests=3)
    PollRun.objects.create(cluster=cluster, started_at=now, duration_seconds=1.5, requests=7)
    [row] = queries.cluster_rows()
    assert (row.groups, row.problem_groups, row.last_run.requests) == (2, 1, 7)
    assert row.last_error == "login •••••• refused"


def test_cluster_rows_add_up_the_shards_of_a_cycle_polled_in_shards(cluster):
    now = timezone.now()
    PollRun.objects.create(cluster=cluster, started_at=now - timedelta(minutes=1), duration_seconds=9, requests=1)
    PollRun.objects.create(cluster=cluster, started_at=now, duration_seconds=2.0, requests=8, groups=4, partitions=6)
    PollRun.objects.create(cluster=cluster, started_at=now, duration_seconds=3.5, requests=8, groups=5, partitions=6,
                           ok=False, error="shard 2/2: cannot reach")
    [row] = queries.cluster_rows()
    run = row.last_run
    assert (run.duration_seconds, run.requests, run.groups, run.partitions) == (3.5, 16, 9, 12)
    assert not run.ok and run.error == "shard 2/2: cannot reach"


# --------------------------------------------------------------------------- overview at size


def _names(data: queries.Overview) -> list[str]:
    return [row.group.name for row in data.rows]


def test_overview_filters_by_cluster_status_and_text_in_names_and_topics_in_the_database(db):
    prod = Cluster.objects.create(name="prod", bootstrap_servers="127.0.0.1:1")
    staging = Cluster.objects.create(name="staging", bootstrap_servers="127.0.0.1:1")
    make_group(prod, "billing", topics=["orders"], status=GroupStatus.STALLED)
    make_group(staging, "audit", topics=["payments"])
    now = timezone.now()
    assert _names(queries.overview(OverviewFilter(cluster="staging"), now)) == ["audit"]
    assert _names(queries.overview(OverviewFilter(status="stalled"), now)) == ["billing"]
    assert _names(queries.overview(OverviewFilter(status="problems"), now)) == ["billing"]
    assert _names(queries.overview(OverviewFilter(text="PAYM"), now)) == ["audit"]
    assert _names(queries.overview(OverviewFilter(text="stag"), now)) == ["audit"]
    assert _names(queries.overview(OverviewFilter(text="100%_'\""), now)) == []


def test_overview_sorts_by_severity_first_and_unknown_values_last(db):
    prod = Cluster.objects.create(name="prod", bootstrap_servers="127.0.0.1:1")
    make_group(prod, "ok", total_lag=5)
    make_group(prod, "stopped", status=GroupStatus.STOPPED, total_lag=1)
    make_group(prod, "growing-big", status=GroupStatus.GROWING, total_lag=900)
    make_group(prod, "growing-small", status=GroupStatus.GROWING, total_lag=9)
    make_group(prod, "unknown-lag", total_lag=None)
    now = timezone.now()
    assert _names(queries.overview(OverviewFilter(), now)) == [
        "stopped", "growing-big", "growing-small", "ok", "unknown-lag"]
    assert _names(queries.overview(OverviewFilter(sort="total_lag", descending=True), now)) == [
        "growing-big", "growing-small", "ok", "stopped", "unknown-lag"]
    assert _names(queries.overview(OverviewFilter(sort="total_lag"), now)) == [
        "stopped", "ok", "growing-small", "growing-big", "unknown-lag"]


def test_overview_pages_hold_every_matching_group_once_and_count_statuses_over_all(db):
    prod = Cluster.objects.create(name="prod", bootstrap_servers="127.0.0.1:1")
    for index in range(25):
        make_group(prod, f"g{index:02d}", status=GroupStatus.STALLED if index % 5 == 0 else GroupStatus.OK,
                   total_lag=index)
    now = timezone.now()
    seen: list[str] = []
    for number in (1, 2, 3):
        data = queries.overview(OverviewFilter(page=number), now, page_size=10)
        assert (data.page, data.pages, data.matching) == (number, 3, 25)
        seen += _names(data)
    assert sorted(seen) == [f"g{i:02d}" for i in range(25)]
    assert seen[:5] == ["g20", "g15", "g10", "g05", "g00"]  # problems first, largest lag first
    assert data.status_counts == {"stalled": 5, "ok": 20} and data.total_groups == 25
    # A page past the end shows the last one; a bookmark never opens on nothing.
    assert queries.overview(OverviewFilter(page=99), now, page_size=10).page == 3


def test_overview_filter_reads_the_page_and_ignores_a_bad_one():
    assert OverviewFilter.from_query({"page": "3"}).page == 3
    assert OverviewFilter.from_query({"page": "-1"}).page == 1
    assert OverviewFilter.from_query({"page": "x"}).page == 1
