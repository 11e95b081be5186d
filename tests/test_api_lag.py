"""The lag API: shapes per CONTRACT, latest-poll partitions, null lag, downsampled series, errors."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from monitor.choices import ClusterStatus, GroupEventKind, GroupStatus, TimeLagMethod
from monitor.models import Cluster, GroupEvent, PollRun
from tests.lag_rows import Part, make_group, record_poll, topic_samples

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")


@pytest.fixture
def api(client, read_token):
    """GET with the read token."""
    return lambda url, **params: client.get(url, params, headers={"Authorization": f"Bearer {read_token}"})


def test_clusters_list_reports_status_last_poll_and_error(api, cluster):
    polled = timezone.now().replace(microsecond=0)
    Cluster.objects.filter(pk=cluster.pk).update(
        status=ClusterStatus.UNREACHABLE, last_poll_at=polled, last_error="NoBrokersAvailable"
    )
    Cluster.objects.create(name="b-never-polled", bootstrap_servers="127.0.0.1:1")
    body = api("/api/v1/clusters").json()
    assert body[0] == {
        "name": "b-never-polled",
        "status": "unknown",
        "last_poll_at": None,
        "last_error": None,
        "last_success_at": None,
        "enabled": True,
        "poll_interval_seconds": 30,
    }
    assert body[1]["name"] == cluster.name
    assert body[1]["status"] == "unreachable"
    assert body[1]["last_poll_at"] == polled.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body[1]["last_error"] == "NoBrokersAvailable"


def test_cluster_last_error_never_carries_the_sasl_password(api, cluster):
    Cluster.objects.filter(pk=cluster.pk).update(
        sasl_password="s3cr3t-pa55", last_error="SASL authentication failed for user bob password s3cr3t-pa55"
    )
    response = api("/api/v1/clusters")
    assert "s3cr3t-pa55" not in response.content.decode()
    assert response.json()[0]["last_error"].startswith("SASL authentication failed for user bob")


def test_groups_list_gives_contract_fields_for_each_group(api, cluster):
    now = timezone.now()
    billing = make_group(cluster, "billing", status=GroupStatus.GROWING, status_reason="lag grew 5 polls in a row")
    record_poll(billing, now, [Part("orders", 0, 90, 100, 10, 4.5), Part("payments", 0, 5, 5, 0, 0.0)])
    make_group(cluster, "audit", state="Empty", members=0, status=GroupStatus.UNKNOWN)

    body = api(f"/api/v1/clusters/{cluster.name}/groups").json()

    assert [g["group"] for g in body] == ["audit", "billing"]
    audit, billing_row = body
    assert audit["total_lag"] is None  # never polled: unknown, not 0
    assert audit["max_time_lag_seconds"] is None
    assert {k: billing_row[k] for k in ("group", "state", "status", "total_lag", "max_time_lag_seconds", "topics")} == {
        "group": "billing",
        "state": "Stable",
        "status": "growing",
        "total_lag": 10,
        "max_time_lag_seconds": 4.5,
        "topics": ["orders", "payments"],
    }
    assert ISO_Z.match(billing_row["last_sample_at"])


def test_unknown_cluster_is_404_naming_the_path_parameter(api, db):
    response = api("/api/v1/clusters/nope/groups")
    assert response.status_code == 404
    assert response.json()["errors"] == [{"loc": ["path", "cluster"], "msg": "unknown cluster"}]


def test_unknown_group_is_404(api, cluster):
    for url in (f"/api/v1/clusters/{cluster.name}/groups/ghost", f"/api/v1/clusters/{cluster.name}/groups/ghost/lag"):
        response = api(url)
        assert response.status_code == 404, url
        assert response.json()["errors"][0]["loc"] == ["path", "group"]


def test_group_detail_shows_partitions_of_the_latest_poll_only(api, cluster):
    now = timezone.now()
    group = make_group(
        cluster, "billing", status=GroupStatus.STALLED, status_reason="no commits for 10 min",
        catch_up_seconds=None, retention_risk_seconds=3600.0, lost_messages=7,
    )
    record_poll(group, now - timedelta(seconds=30), [Part("orders", 0, 1, 100, 99, 50.0)], latest=False)
    record_poll(
        group,
        now,
        [
            Part("orders", 0, 90, 100, 10, 12.5, TimeLagMethod.INTERPOLATED, log_start=3),
            Part("orders", 1, None, 40, None, None, TimeLagMethod.UNKNOWN, reason="no committed offset"),
            Part("orders", 2, 40, 40, 0, 0.0, TimeLagMethod.EXACT),
        ],
    )

    body = api(f"/api/v1/clusters/{cluster.name}/groups/billing").json()

    assert body["group"] == "billing"
    assert body["status"] == "stalled"
    assert body["status_reason"] == "no commits for 10 min"
    assert body["total_lag"] == 10
    assert body["max_time_lag_seconds"] == 12.5
    assert body["retention_risk_seconds"] == 3600.0
    assert body["catch_up_seconds"] is None
    assert body["lost_messages"] == 7
    assert body["partitions"] == [
        {"topic": "orders", "partition": 0, "committed_offset": 90, "log_start_offset": 3, "log_end_offset": 100,
         "lag": 10, "time_lag_seconds": 12.5, "time_lag_method": "interpolated", "time_lag_reason": "", **NO_OWNER, "stalled": False},
        {"topic": "orders", "partition": 1, "committed_offset": None, "log_start_offset": 0, "log_end_offset": 40,
         "lag": None, "time_lag_seconds": None, "time_lag_method": "unknown", "time_lag_reason": "no committed offset",
         **NO_OWNER, "stalled": False},
        {"topic": "orders", "partition": 2, "committed_offset": 40, "log_start_offset": 0, "log_end_offset": 40,
         "lag": 0, "time_lag_seconds": 0.0, "time_lag_method": "exact", "time_lag_reason": "", **NO_OWNER, "stalled": False},
    ]
    assert body["members"] == []  # the broker did not tell who
    assert body["protocol"] == "unknown"


NO_OWNER = {"owner": None, "owner_client_id": None, "owner_host": None}


def test_group_detail_names_members_and_the_owner_of_each_partition(api, cluster):
    group = make_group(cluster, "billing", protocol="consumer", member_details=[
        {"member_id": "m-1", "client_id": "billing-7f9c", "host": "10.2.3.4", "partitions": [["orders", 0]]},
        {"member_id": "m-2", "client_id": "billing-a1b2", "host": "10.2.3.5", "partitions": []},
    ])
    record_poll(group, timezone.now(), [Part("orders", 0, 90, 100, 10, 12.5), Part("orders", 1, 5, 5, 0, 0.0)])

    body = api(f"/api/v1/clusters/{cluster.name}/groups/billing").json()

    assert body["protocol"] == "consumer"
    assert body["member_count"] == 2
    assert body["members"] == [
        {"member_id": "m-1", "client_id": "billing-7f9c", "host": "10.2.3.4",
         "partitions": [{"topic": "orders", "partition": 0}], "partitions_known": True},
        {"member_id": "m-2", "client_id": "billing-a1b2", "host": "10.2.3.5", "partitions": [],
         "partitions_known": True},
    ]
    owners = {(p["topic"], p["partition"]): (p["owner"], p["owner_client_id"], p["owner_host"])
              for p in body["partitions"]}
    assert owners == {("orders", 0): ("m-1", "billing-7f9c", "10.2.3.4"), ("orders", 1): (None, None, None)}


def test_group_detail_before_the_first_poll_has_no_partitions(api, cluster):
    make_group(cluster, "fresh")
    body = api(f"/api/v1/clusters/{cluster.name}/groups/fresh").json()
    assert body["partitions"] == []
    assert body["total_lag"] is None


def test_group_names_with_a_slash_are_reachable(api, cluster):
    group = make_group(cluster, "team/billing")
    record_poll(group, timezone.now(), [Part("orders", 0, 1, 2, 1)])
    assert api(f"/api/v1/clusters/{cluster.name}/groups/team/billing").json()["group"] == "team/billing"
    assert api(f"/api/v1/clusters/{cluster.name}/groups/team%2Fbilling/lag").json()["series"][0]["topic"] == "orders"


def test_lag_series_gives_one_series_per_topic_with_iso_points(api, cluster):
    now = timezone.now()
    group = make_group(cluster, "billing")
    topic_samples(group, "orders", now - timedelta(minutes=10), 3, timedelta(minutes=1), lag=5)
    topic_samples(group, "payments", now - timedelta(minutes=10), 2, timedelta(minutes=1), lag=None)

    body = api(f"/api/v1/clusters/{cluster.name}/groups/billing/lag").json()

    assert [s["topic"] for s in body["series"]] == ["orders", "payments"]
    orders, payments = body["series"]
    assert [p[1] for p in orders["points"]] == [5, 6, 7]
    assert all(ISO_Z.match(p[0]) for p in orders["points"])
    assert [p[1] for p in payments["points"]] == [None, None]  # unknown stays null, never 0
    assert body["metric"] == "lag"


def test_lag_series_never_exceeds_points(api, cluster):
    now = timezone.now()
    group = make_group(cluster, "billing")
    topic_samples(group, "orders", now - timedelta(minutes=59), 700, timedelta(seconds=5))
    topic_samples(group, "payments", now - timedelta(minutes=59), 30, timedelta(minutes=1))

    for points in (1, 7, 50, 500):
        body = api(f"/api/v1/clusters/{cluster.name}/groups/billing/lag", points=points).json()
        assert [len(s["points"]) for s in body["series"]] == [min(points, 700), min(points, 30)]
    # The default is 500.
    body = api(f"/api/v1/clusters/{cluster.name}/groups/billing/lag").json()
    assert len(body["series"][0]["points"]) == 500
    # Downsampling keeps the highest value of each bucket: the last, largest sample survives.
    body = api(f"/api/v1/clusters/{cluster.name}/groups/billing/lag", points=10).json()
    assert max(p[1] for p in body["series"][0]["points"]) == 10 + 699


def test_lag_series_filters_by_topic_and_time_range(api, cluster):
    now = timezone.now().replace(microsecond=0)
    group = make_group(cluster, "billing")
    topic_samples(group, "orders", now - timedelta(minutes=30), 30, timedelta(minutes=1), lag=0)
    topic_samples(group, "payments", now - timedelta(minutes=30), 30, timedelta(minutes=1))
    since = (now - timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    until = (now - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")

    body = api(f"/api/v1/clusters/{cluster.name}/groups/billing/lag", topic="orders", since=since, until=until).json()

    assert [s["topic"] for s in body["series"]] == ["orders"]
    assert [p[1] for p in body["series"][0]["points"]] == list(range(10, 21))
    assert body["series"][0]["points"][0][0] == since
    assert body["series"][0]["points"][-1][0] == until


def test_lag_series_can_plot_time_lag_seconds(api, cluster):
    now = timezone.now()
    group = make_group(cluster, "billing")
    topic_samples(group, "orders", now - timedelta(minutes=5), 3, timedelta(minutes=1))
    body = api(f"/api/v1/clusters/{cluster.name}/groups/billing/lag", metric="time_lag_seconds").json()
    assert body["metric"] == "time_lag_seconds"
    assert [p[1] for p in body["series"][0]["points"]] == [0.0, 1.0, 2.0]


def test_ranges_older_than_raw_retention_read_rollups_completed_by_raw_samples(api, cluster, settings):
    settings.MONITOR_RAW_RETENTION_HOURS = 1
    now = timezone.now().replace(second=0, microsecond=0)
    group = make_group(cluster, "billing")
    # Stored 1-minute rollups up to 61 minutes ago; raw 30 s samples since (as the pruner leaves them).
    topic_samples(group, "orders", now - timedelta(hours=23), 22 * 60, timedelta(minutes=1), resolution=60,
                  lag=1_000_000)
    topic_samples(group, "orders", now - timedelta(minutes=60), 120, timedelta(seconds=30), lag=0)

    body = api(f"/api/v1/clusters/{cluster.name}/groups/billing/lag", since=(now - timedelta(hours=24)).isoformat(),
               until=now.isoformat(), points=5000).json()

    points = body["series"][0]["points"]
    rollups = [p for p in points if p[1] >= 1_000_000]
    raw_tail = [p for p in points if p[1] < 1_000_000]
    assert len(rollups) == 22 * 60
    # A 24 h range reads raw samples as 1-minute maxima too: 120 samples, 60 minutes, the odd ones win.
    assert [p[1] for p in raw_tail] == list(range(1, 120, 2))
    assert raw_tail[0][0] == (now - timedelta(minutes=60)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_short_ranges_read_every_poll(api, cluster):
    now = timezone.now().replace(second=0, microsecond=0)
    group = make_group(cluster, "billing")
    topic_samples(group, "orders", now - timedelta(minutes=60), 120, timedelta(seconds=30), lag=0)
    body = api(f"/api/v1/clusters/{cluster.name}/groups/billing/lag", since=(now - timedelta(hours=6)).isoformat(),
               until=now.isoformat(), points=5000).json()
    assert [p[1] for p in body["series"][0]["points"]] == list(range(120))


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"points": "0"}, ["query", "points"]),
        ({"points": "5001"}, ["query", "points"]),
        ({"points": "many"}, ["query", "points"]),
        ({"since": "yesterday"}, ["query", "since"]),
        ({"until": "2024-13-01T00:00:00Z"}, ["query", "until"]),
        ({"since": "2024-05-02T00:00:00Z", "until": "2024-05-01T00:00:00Z"}, ["query", "since"]),
        ({"metric": "bytes"}, ["query", "metric"]),
    ],
)
def test_bad_query_parameters_are_400_naming_the_parameter(api, cluster, params, loc):
    make_group(cluster, "billing")
    response = api(f"/api/v1/clusters/{cluster.name}/groups/billing/lag", **params)
    assert response.status_code == 400
    body = response.json()
    assert body["detail"]
    assert [e["loc"] for e in body["errors"]] == [loc]


def test_every_bad_parameter_is_reported_at_once(api, cluster):
    make_group(cluster, "billing")
    response = api(f"/api/v1/clusters/{cluster.name}/groups/billing/lag", points="-1", since="soon")
    assert sorted(e["loc"][1] for e in response.json()["errors"]) == ["points", "since"]


def test_lifecycle_events_do_not_leak_into_series(api, cluster):
    now = timezone.now()
    group = make_group(cluster, "billing")
    topic_samples(group, "orders", now - timedelta(minutes=5), 2, timedelta(minutes=1))
    GroupEvent.objects.create(cluster=cluster, group=group, kind=GroupEventKind.OFFSET_RESET, topic="orders", at=now)
    PollRun.objects.create(cluster=cluster, started_at=now, duration_seconds=0.1)
    body = api(f"/api/v1/clusters/{cluster.name}/groups/billing/lag").json()
    assert [len(s["points"]) for s in body["series"]] == [2]


@pytest.mark.parametrize("points", [1, 7, 500, 5000])
def test_long_range_series_never_exceed_points_either(api, cluster, points):
    now = timezone.now()
    group = make_group(cluster, "billing")
    rollups = 7 * 24 * 60 - 130  # one a minute until 10 minutes before the polled points begin
    topic_samples(group, "orders", now - timedelta(days=7), rollups, timedelta(minutes=1), resolution=60)
    topic_samples(group, "orders", now - timedelta(hours=2), 240, timedelta(seconds=30))
    body = api(f"/api/v1/clusters/{cluster.name}/groups/billing/lag", points=points,
               since=(now - timedelta(days=7)).isoformat(), until=now.isoformat()).json()
    [orders] = body["series"]
    assert 0 < len(orders["points"]) <= points
    # Bucket maxima: the largest rollup value (10 + the last index) survives any bucketing.
    assert max(p[1] for p in orders["points"]) == 10 + rollups - 1


def _next_url(response) -> str | None:
    """The URL in ``Link: <URL>; rel="next"``, or None."""
    header = response.headers.get("Link")
    if header is None:
        return None
    match = re.fullmatch(r'<([^>]+)>; rel="next"', header)
    assert match, header
    return match.group(1)


def test_groups_list_pages_with_limit_and_cursor_and_never_repeats_or_skips(api, cluster):
    for index in range(7):
        make_group(cluster, f"g{index}", status=GroupStatus.STALLED if index % 2 else GroupStatus.OK)
    response = api(f"/api/v1/clusters/{cluster.name}/groups", limit=3)
    seen = [g["group"] for g in response.json()]
    pages = 1
    while (url := _next_url(response)) is not None:
        assert url.startswith("http://testserver/api/v1/clusters/") and "limit=3" in url
        response = api(url.removeprefix("http://testserver"))
        seen += [g["group"] for g in response.json()]
        pages += 1
    assert (seen, pages) == ([f"g{i}" for i in range(7)], 3)
    # Without limit: everything in one answer and no Link, as before.
    response = api(f"/api/v1/clusters/{cluster.name}/groups")
    assert len(response.json()) == 7 and "Link" not in response.headers


def test_groups_list_filters_by_comma_separated_statuses_with_or_without_paging(api, cluster):
    make_group(cluster, "a", status=GroupStatus.STALLED)
    make_group(cluster, "b", status=GroupStatus.STOPPED)
    make_group(cluster, "c", status=GroupStatus.OK)
    for params in ({}, {"limit": 10}):
        body = api(f"/api/v1/clusters/{cluster.name}/groups", status="stalled,stopped", **params).json()
        assert [g["group"] for g in body] == ["a", "b"]


@pytest.mark.parametrize("params, field", [
    ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"limit": "x"}, "limit"),
    ({"limit": "5", "cursor": "not-a-cursor"}, "cursor"), ({"status": "burning"}, "status"),
])
def test_groups_list_bad_paging_or_status_is_400_naming_the_field(api, cluster, params, field):
    response = api(f"/api/v1/clusters/{cluster.name}/groups", **params)
    assert response.status_code == 400
    assert [e["loc"] for e in response.json()["errors"]] == [["query", field]]


def test_a_cursor_of_another_list_is_refused(api, cluster, client, read_token):
    from monitor.api.paging import encode_cursor

    response = api(f"/api/v1/clusters/{cluster.name}/groups", limit=5, cursor=encode_cursor("alerts", ["x", 1]))
    assert response.status_code == 400
    assert [e["loc"] for e in response.json()["errors"]] == [["query", "cursor"]]
