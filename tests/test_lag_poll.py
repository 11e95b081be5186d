"""One poll cycle against a real broker (tansu) and real PostgreSQL; edge cases the
broker cannot produce (retention deleting messages, partitions added) are fed to the
recording half as plain readings."""
from __future__ import annotations

import gc
import time
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from monitor.choices import ClusterStatus, GroupEventKind, GroupStatus, TimeLagMethod
from monitor.kafka.adapter import (
    GroupMember, GroupMembership,
    GroupListing, LogOffsets, Producer, commit_offsets, create_topics, delete_groups,
)
from monitor.lag import samples as store, snapshot
from monitor.lag.poll import claim_due_clusters, poll_cluster
from monitor.lag.record import ClusterReading, record_cycle
from monitor.models import (
    Cluster, ConsumerGroup, GroupEvent, LagFrame, PollRun, Topic,
)
from tests.services import free_port
from tests.race import race


@pytest.fixture
def prefix(cluster, unique):
    """Only this test's groups are watched: the broker is shared."""
    name = unique("lag")
    cluster.group_include = f"{name}*"
    cluster.save()
    return name


@pytest.fixture
def produce(kafka_settings):
    producer = Producer(kafka_settings)

    def send(topic: str, partition: int, count: int) -> None:
        for _ in range(count):
            producer.send(topic, b"event", partition=partition)

    yield send
    producer.close()


@pytest.fixture
def topic(kafka_settings, unique, produce):
    """A topic with 10, 7 and 0 messages on its three partitions."""
    name = unique("orders")
    create_topics(kafka_settings, {name: 3})
    produce(name, 0, 10)
    produce(name, 1, 7)
    return name


def samples(group: ConsumerGroup) -> dict[tuple[str, int], store.PartitionPoint]:
    """The partitions of the group's latest poll, as stored."""
    return {(s.topic, s.partition): s for s in store.latest_partitions([group]).get(group.id, [])}


def polls_of(group: ConsumerGroup) -> set:
    """The times of the polls whose totals are stored for the group."""
    return {p.polled_at for p in store.topic_points([group.id], EPOCH)}


EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)


def events(group: ConsumerGroup) -> list[str]:
    return sorted(GroupEvent.objects.filter(group=group).values_list("kind", flat=True))


def test_poll_stores_exact_lag_against_the_offsets_the_group_committed(cluster, prefix, topic, kafka_settings):
    group_id = f"{prefix}-billing"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 4, (topic, 1): 7})

    outcome = poll_cluster(cluster.id)

    assert outcome.ok and outcome.groups == 1 and outcome.partitions == 3
    group = ConsumerGroup.objects.get(cluster=cluster, name=group_id)
    assert group.total_lag == 6
    assert group.topics == [topic]
    rows = samples(group)
    assert (rows[(topic, 0)].committed_offset, rows[(topic, 0)].log_end_offset, rows[(topic, 0)].lag) == (4, 10, 6)
    assert (rows[(topic, 1)].lag, rows[(topic, 1)].time_lag_seconds, rows[(topic, 1)].time_lag_method) == (
        0, 0.0, TimeLagMethod.EXACT)
    # First poll: no history yet, but the record at the committed offset says when it was written.
    assert rows[(topic, 0)].time_lag_method == TimeLagMethod.RECORD
    assert rows[(topic, 0)].time_lag_seconds >= 0
    [topic_sample] = store.topic_points([group.id], EPOCH)
    assert (topic_sample.lag, topic_sample.partitions, topic_sample.unknown_partitions) == (6, 3, 1)
    assert len(store.log_points(cluster.id, EPOCH, topic=topic)) == 3
    assert Topic.objects.get(cluster=cluster, name=topic).partitions == 3
    assert events(group) == [GroupEventKind.GROUP_CREATED]
    run = PollRun.objects.get(cluster=cluster)
    assert run.ok and run.requests == outcome.requests > 0 and (run.groups, run.partitions) == (1, 3)
    cluster.refresh_from_db()
    assert cluster.status == ClusterStatus.OK and cluster.last_success_at == group.last_sample_at


def test_partition_without_a_commit_has_unknown_lag_never_zero(cluster, prefix, topic, kafka_settings):
    group_id = f"{prefix}-partial"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 10})

    poll_cluster(cluster.id)

    rows = samples(ConsumerGroup.objects.get(name=group_id))
    assert rows[(topic, 1)].lag is None and rows[(topic, 2)].lag is None
    assert rows[(topic, 1)].time_lag_method == TimeLagMethod.UNKNOWN
    assert rows[(topic, 1)].time_lag_reason == "no committed offset"


def test_committed_offset_past_the_log_end_shows_zero_lag_with_a_note(cluster, prefix, topic, kafka_settings):
    group_id = f"{prefix}-ahead"
    commit_offsets(kafka_settings, group_id, {(topic, 1): 100})

    poll_cluster(cluster.id)

    row = samples(ConsumerGroup.objects.get(name=group_id))[(topic, 1)]
    assert row.lag == 0
    assert row.time_lag_method == TimeLagMethod.EXACT


@pytest.fixture
def history_only(settings):
    """Record timestamps off (a cycle budget of 0 bytes): the log-end history answers."""
    settings.MONITOR_TIME_LAG_FETCH_CYCLE_BYTES = 0


def test_time_lag_is_interpolated_from_the_stored_log_end_history(cluster, prefix, topic, kafka_settings,
                                                                  history_only):
    group_id = f"{prefix}-slow"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 4})
    base = timezone.now() - timedelta(seconds=120)
    store.store_poll(cluster.id, base, log_offsets=[(topic, 0, 0, 2)])
    store.store_poll(cluster.id, base + timedelta(seconds=60), log_offsets=[(topic, 0, 0, 6)])

    poll_cluster(cluster.id)

    row = samples(ConsumerGroup.objects.get(name=group_id))[(topic, 0)]
    expected = (row.polled_at - (base + timedelta(seconds=30))).total_seconds()  # offset 4 half way
    assert row.time_lag_method == TimeLagMethod.INTERPOLATED
    assert row.time_lag_seconds == pytest.approx(expected, abs=0.01)


def test_time_lag_behind_all_history_is_extrapolated_from_old_points_found_by_index(
        cluster, prefix, topic, kafka_settings, history_only):
    group_id = f"{prefix}-far"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 1})
    long_ago = timezone.now() - timedelta(hours=5)
    store.store_poll(cluster.id, long_ago, log_offsets=[(topic, 0, 0, 3)])
    store.store_poll(cluster.id, long_ago + timedelta(hours=1), log_offsets=[(topic, 0, 0, 5)])

    poll_cluster(cluster.id)

    row = samples(ConsumerGroup.objects.get(name=group_id))[(topic, 0)]
    # offset 1 lies between nothing stored and 3 (5 h ago): interpolation needs a point below it,
    # so the table rate (3 -> 10 over 5 h) extrapolates.
    assert row.time_lag_method == TimeLagMethod.EXTRAPOLATED
    rate = (10 - 3) / (row.polled_at - long_ago).total_seconds()
    expected = (row.polled_at - (long_ago - timedelta(seconds=2 / rate))).total_seconds()
    assert row.time_lag_seconds == pytest.approx(expected, rel=1e-3)


def test_offset_reset_is_recorded_and_the_group_shows_rewind(cluster, prefix, topic, kafka_settings):
    group_id = f"{prefix}-replay"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 9})
    poll_cluster(cluster.id)
    commit_offsets(kafka_settings, group_id, {(topic, 0): 2})

    poll_cluster(cluster.id)

    group = ConsumerGroup.objects.get(name=group_id)
    assert group.status == GroupStatus.REWIND
    assert "went back from 9 (the highest in the last 10 min) to 2" in group.status_reason
    reset = GroupEvent.objects.get(group=group, kind=GroupEventKind.OFFSET_RESET)
    assert (reset.topic, reset.partition) == (topic, 0)


def test_group_that_disappears_is_gone_its_series_ends_and_reappearing_clears_it(
        cluster, prefix, topic, kafka_settings):
    group_id = f"{prefix}-temp"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 3})
    poll_cluster(cluster.id)
    delete_groups(kafka_settings, [group_id])

    poll_cluster(cluster.id)

    group = ConsumerGroup.objects.get(name=group_id)
    assert group.status == GroupStatus.GONE and group.gone_at is not None and group.total_lag is None
    assert events(group) == [GroupEventKind.GROUP_CREATED, GroupEventKind.GROUP_DELETED]
    assert len(polls_of(group)) == 1 and store.latest_partitions([group]) == {}

    poll_cluster(cluster.id)
    assert len(polls_of(group)) == 1
    assert GroupEvent.objects.filter(group=group, kind=GroupEventKind.GROUP_DELETED).count() == 1

    commit_offsets(kafka_settings, group_id, {(topic, 0): 5})
    poll_cluster(cluster.id)
    group.refresh_from_db()
    assert group.gone_at is None and group.total_lag == 5
    assert GroupEvent.objects.filter(group=group, kind=GroupEventKind.GROUP_CREATED, detail="reappeared").exists()


def test_group_switching_topics_records_topic_added_and_dropped(
        cluster, prefix, topic, kafka_settings, unique, produce):
    other = unique("payments")
    create_topics(kafka_settings, {other: 1})
    produce(other, 0, 3)
    group_id = f"{prefix}-mover"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 1})
    poll_cluster(cluster.id)
    delete_groups(kafka_settings, [group_id])
    commit_offsets(kafka_settings, group_id, {(other, 0): 1})

    poll_cluster(cluster.id)

    group = ConsumerGroup.objects.get(name=group_id)
    assert group.topics == [other] and group.total_lag == 2
    added = GroupEvent.objects.get(group=group, kind=GroupEventKind.TOPIC_ADDED)
    dropped = GroupEvent.objects.get(group=group, kind=GroupEventKind.TOPIC_DROPPED)
    assert (added.topic, dropped.topic) == (other, topic)


def test_groups_outside_the_include_globs_or_inside_the_exclude_globs_are_not_polled(
        cluster, prefix, topic, kafka_settings):
    commit_offsets(kafka_settings, f"{prefix}-kept", {(topic, 0): 1})
    commit_offsets(kafka_settings, f"{prefix}-tmp-console", {(topic, 0): 1})
    cluster.group_exclude = f"{prefix}-tmp-*"
    cluster.save()

    poll_cluster(cluster.id)

    assert list(ConsumerGroup.objects.filter(cluster=cluster).values_list("name", flat=True)) == [f"{prefix}-kept"]


def test_status_comes_from_the_window_of_stored_polls(cluster, prefix, topic, kafka_settings, settings):
    """Polls stored over the last 10 minutes with no progress while messages wait: stalled."""
    settings.MONITOR_STATUS_WINDOW_SECONDS = 600
    settings.MONITOR_STOPPED_AFTER_SECONDS = 3600
    group_id = f"{prefix}-stuck"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 4})
    now = timezone.now()
    for ago in (660, 480, 300, 120):
        earlier = reading(group_id, {(topic, 0): 4}, {topic: 3},
                          {(topic, 0): (0, 10), (topic, 1): (0, 7), (topic, 2): (0, 0)})
        earlier.polled_at = now - timedelta(seconds=ago)
        record(cluster, earlier)

    poll_cluster(cluster.id)

    group = ConsumerGroup.objects.get(name=group_id)
    assert group.status == GroupStatus.STALLED
    assert group.status_reason == "no progress in the last 10 min while 6 messages wait"


def test_unreachable_cluster_is_marked_promptly_keeps_group_snapshots_and_recovers(
        cluster, prefix, topic, kafka_settings, settings):
    settings.MONITOR_KAFKA_TIMEOUT_SECONDS = 2
    group_id = f"{prefix}-steady"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 4})
    poll_cluster(cluster.id)
    good_bootstrap = cluster.bootstrap_servers
    Cluster.objects.filter(pk=cluster.pk).update(bootstrap_servers=f"127.0.0.1:{free_port()}")

    started = time.monotonic()
    outcome = poll_cluster(cluster.id)
    elapsed = time.monotonic() - started

    # Bounded by the 2 s timeout (a few calls of it), not by kafka-python's own minutes-long waits.
    assert not outcome.ok and elapsed < 30
    assert outcome.summary().startswith(f"{cluster.name}: unreachable (")
    cluster.refresh_from_db()
    assert cluster.status == ClusterStatus.UNREACHABLE and "cannot reach" in cluster.last_error
    run = PollRun.objects.filter(cluster=cluster).latest("started_at")
    assert not run.ok and run.error == cluster.last_error
    group = ConsumerGroup.objects.get(name=group_id)
    assert group.total_lag == 6 and group.gone_at is None
    assert snapshot.get_cluster_snapshot(cluster.name)["status"] == ClusterStatus.UNREACHABLE

    Cluster.objects.filter(pk=cluster.pk).update(bootstrap_servers=good_bootstrap)
    assert poll_cluster(cluster.id).ok
    cluster.refresh_from_db()
    assert cluster.status == ClusterStatus.OK and cluster.last_error == ""


def test_whole_cycle_is_written_with_a_fixed_number_of_queries_whatever_the_group_count(
        cluster, prefix, topic, kafka_settings):
    def queries_for_poll() -> int:
        with CaptureQueriesContext(connection) as captured:
            poll_cluster(cluster.id)
        return len(captured)

    # Caught-up groups: no time-lag history to look up, only the cycle's own reads and writes.
    commit_offsets(kafka_settings, f"{prefix}-a", {(topic, 0): 10})
    queries_for_poll()
    one_group = queries_for_poll()
    for n in range(5):
        commit_offsets(kafka_settings, f"{prefix}-b{n}", {(topic, 0): 10, (topic, 1): 7})
    queries_for_poll()
    six_groups = queries_for_poll()
    assert six_groups == one_group


def test_cluster_list_is_served_from_the_cache_and_a_group_from_its_row_either_way(
        cluster, prefix, topic, kafka_settings):
    group_id = f"{prefix}-cached"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 4, (topic, 1): 7})
    poll_cluster(cluster.id)

    with CaptureQueriesContext(connection) as captured:
        cluster_view = snapshot.get_cluster_snapshot(cluster.name)
    assert len(captured) == 0
    with CaptureQueriesContext(connection) as captured:
        warm = snapshot.get_group_snapshot(cluster.name, group_id)
    assert len(captured) <= 2  # the row (its latest partitions in it), one frame of topic totals
    cache.clear()
    cold = snapshot.get_group_snapshot(cluster.name, group_id)
    cold_view = snapshot.get_cluster_snapshot(cluster.name)

    assert warm == cold
    assert [p["lag"] for p in warm["partitions"]] == [6, 0, None]
    assert [g["group"] for g in cluster_view["groups"]] == [g["group"] for g in cold_view["groups"]] == [group_id]
    assert snapshot.get_group_snapshot(cluster.name, "no-such-group") is None


def test_each_phase_of_a_cycle_reports_progress(cluster, prefix, topic, kafka_settings):
    commit_offsets(kafka_settings, f"{prefix}-watched", {(topic, 0): 1})
    messages: list[str] = []

    poll_cluster(cluster.id, progress=messages.append)

    records = [m for m in messages if m.startswith("record timestamps")]
    assert records and records[0].startswith("record timestamps of 1 of 1 lagging offsets (0 cached, 1 partitions read, ")
    assert [m for m in messages if m not in records] == [
        "listed 1 groups", "read committed offsets of 1 groups", "read log offsets of 3 partitions",
        "read the history of 3 partitions", "computed the lag of 1 groups",
    ]


def test_a_cycle_runs_with_fewer_cyclic_collections_and_restores_the_collector_after(
        cluster, prefix, topic, kafka_settings):
    commit_offsets(kafka_settings, f"{prefix}-watched", {(topic, 0): 1})
    before = gc.get_threshold()
    during: list[tuple[int, int, int]] = []

    poll_cluster(cluster.id, progress=lambda _: during.append(gc.get_threshold()))

    assert during and all(t[0] >= 50_000 and t[1:] == before[1:] for t in during)
    assert gc.get_threshold() == before and gc.isenabled()


# -- edges the broker cannot produce, fed as readings ---------------------------------

def reading(group: str, committed: dict, counts: dict, offsets: dict, **extra) -> ClusterReading:
    return ClusterReading(
        polled_at=timezone.now(), groups=[GroupListing(group, "Stable", "consumer")],
        committed={group: committed} if committed is not None else {}, partition_counts=counts,
        log_offsets={tp: LogOffsets(*pair) for tp, pair in offsets.items()}, requests=5, **extra,
    )


def record(cluster: Cluster, data: ClusterReading):
    return record_cycle(cluster, data, timezone.now(), time.monotonic())


def test_messages_deleted_before_they_were_consumed_are_data_loss(cluster):
    record(cluster, reading("billing", {("orders", 0): 100}, {"orders": 1}, {("orders", 0): (50, 700)}))

    record(cluster, reading("billing", {("orders", 0): 100}, {"orders": 1}, {("orders", 0): (600, 1000)}))

    group = ConsumerGroup.objects.get(cluster=cluster, name="billing")
    assert group.status == GroupStatus.DATA_LOSS
    assert group.lost_messages == 500
    assert group.total_lag == 400  # only what is still readable
    assert group.retention_risk_seconds == 0.0
    loss = GroupEvent.objects.get(group=group, kind=GroupEventKind.DATA_LOSS)
    assert (loss.topic, loss.partition) == ("orders", 0)
    assert "500 messages deleted before they were consumed" in loss.detail


def test_partitions_added_to_a_topic_are_recorded_for_the_groups_reading_it(cluster):
    record(cluster, reading("billing", {("orders", 0): 1}, {"orders": 1}, {("orders", 0): (0, 5)}))

    record(cluster, reading("billing", {("orders", 0): 1}, {"orders": 3},
                            {("orders", 0): (0, 5), ("orders", 1): (0, 0), ("orders", 2): (0, 0)}))

    group = ConsumerGroup.objects.get(cluster=cluster, name="billing")
    added = GroupEvent.objects.get(group=group, kind=GroupEventKind.PARTITIONS_ADDED)
    assert added.detail == "orders: 1 -> 3 partitions"
    assert Topic.objects.get(cluster=cluster, name="orders").partitions == 3


def test_group_whose_offsets_could_not_be_read_is_unread_unknown_saying_why_and_the_rest_is_stored(cluster):
    """Not the last poll's figures shown as current, never 0: unknown with the broker's
    error and marked unread since that poll; its last partition detail stays (the pages
    say from when), and the other groups are recorded. Read again, it is itself again."""
    record(cluster, reading("billing", {("orders", 0): 1}, {"orders": 1}, {("orders", 0): (0, 5)}))
    read_at = ConsumerGroup.objects.get(cluster=cluster, name="billing").last_sample_at
    failing = reading("billing", None, {"orders": 1}, {("orders", 0): (0, 9)},
                      group_errors={"billing": "CoordinatorLoadInProgressError"})
    failing.groups.append(GroupListing("shipping", "Stable", "consumer"))
    failing.committed["shipping"] = {("orders", 0): 2}

    record(cluster, failing)

    billing = ConsumerGroup.objects.get(cluster=cluster, name="billing")
    assert (billing.status, billing.total_lag, billing.gone_at) == (GroupStatus.UNKNOWN, None, None)
    assert (billing.retention_risk_seconds, billing.catch_up_seconds, billing.max_time_lag_seconds) == (None,) * 3
    assert billing.status_reason == "offsets not read in the latest poll (CoordinatorLoadInProgressError)"
    assert billing.unread_since == failing.polled_at and billing.last_sample_at == read_at
    assert [(p.partition, p.lag) for p in store.group_state(billing)] == [(0, 4)]  # the last detail it had
    assert ConsumerGroup.objects.get(cluster=cluster, name="shipping").total_lag == 7
    assert ConsumerGroup.objects.get(cluster=cluster, name="shipping").unread_since is None
    run = PollRun.objects.filter(cluster=cluster).latest("id")
    assert run.ok and "billing: CoordinatorLoadInProgressError" in run.error

    still_failing = reading("billing", None, {"orders": 1}, {("orders", 0): (0, 9)},
                            group_errors={"billing": "CoordinatorLoadInProgressError"})
    record(cluster, still_failing)
    billing.refresh_from_db()
    assert billing.unread_since == failing.polled_at  # unread since the first poll that could not read it

    record(cluster, reading("billing", {("orders", 0): 6}, {"orders": 1}, {("orders", 0): (0, 9)}))
    billing.refresh_from_db()
    assert billing.status != GroupStatus.UNKNOWN and billing.total_lag == 3 and billing.unread_since is None
    assert not GroupEvent.objects.filter(group=billing, kind=GroupEventKind.GROUP_CREATED).exclude(
        detail="first seen").exists()  # it never left: no second appearance


def test_a_listed_group_never_read_appears_unknown_with_the_reason_and_a_lifecycle_event(cluster):
    """A group the monitor's principal may not describe still has a row, saying why its
    lag is unknown, rather than not appearing at all."""
    denied = reading("audit", None, {}, {}, group_errors={"audit": "GroupAuthorizationFailedError"})

    record(cluster, denied)

    audit = ConsumerGroup.objects.get(cluster=cluster, name="audit")
    assert (audit.status, audit.total_lag, audit.last_sample_at) == (GroupStatus.UNKNOWN, None, None)
    assert audit.status_reason == "offsets not read in the latest poll (GroupAuthorizationFailedError)"
    assert audit.unread_since == denied.polled_at and audit.state == "Stable"
    event = GroupEvent.objects.get(group=audit)
    assert event.kind == GroupEventKind.GROUP_CREATED
    assert event.detail == "first seen; offsets not read in the latest poll (GroupAuthorizationFailedError)"


def test_a_gone_group_listed_again_but_unread_reappears_unread(cluster):
    record(cluster, reading("billing", {("orders", 0): 1}, {"orders": 1}, {("orders", 0): (0, 5)}))
    record(cluster, ClusterReading(polled_at=timezone.now(), groups=[], committed={}, requests=1))
    assert ConsumerGroup.objects.get(cluster=cluster, name="billing").gone_at is not None

    record(cluster, reading("billing", None, {}, {}, group_errors={"billing": "GroupAuthorizationFailedError"}))

    billing = ConsumerGroup.objects.get(cluster=cluster, name="billing")
    assert (billing.gone_at, billing.status) == (None, GroupStatus.UNKNOWN) and billing.unread_since is not None
    assert GroupEvent.objects.filter(group=billing, kind=GroupEventKind.GROUP_CREATED,
                                     detail__startswith="reappeared; offsets not read").count() == 1


def test_a_group_first_listed_unread_is_first_read_without_topic_or_appearance_events(cluster):
    record(cluster, reading("audit", None, {}, {}, group_errors={"audit": "GroupAuthorizationFailedError"}))

    record(cluster, reading("audit", {("orders", 0): 3, ("pay", 0): 1}, {"orders": 1, "pay": 1},
                            {("orders", 0): (0, 5), ("pay", 0): (0, 1)}))

    audit = ConsumerGroup.objects.get(cluster=cluster, name="audit")
    assert events(audit) == [GroupEventKind.GROUP_CREATED]  # not "started reading orders", "pay"
    assert (audit.unread_since, audit.total_lag) == (None, 2)


def test_a_gone_group_listed_again_unread_then_read_finds_no_reset_in_its_old_incarnations_offsets(cluster):
    """Its detail was another incarnation's: shown as its last read poll, it would lie; read
    again, it would make a rewind of a recreated group starting lower."""
    record(cluster, reading("billing", {("orders", 0): 900}, {"orders": 1}, {("orders", 0): (0, 1000)}))
    record(cluster, ClusterReading(polled_at=timezone.now(), groups=[], committed={}, requests=1))
    record(cluster, reading("billing", None, {}, {}, group_errors={"billing": "GroupAuthorizationFailedError"}))
    billing = ConsumerGroup.objects.get(cluster=cluster, name="billing")
    assert (billing.last_sample_at, billing.partition_state) == (None, None)
    assert not store.group_state(billing)

    record(cluster, reading("billing", {("orders", 0): 10}, {"orders": 1}, {("orders", 0): (0, 1000)}))

    billing.refresh_from_db()
    assert billing.status != GroupStatus.REWIND and billing.total_lag == 990 and billing.unread_since is None
    assert events(billing) == [GroupEventKind.GROUP_CREATED, GroupEventKind.GROUP_CREATED,
                               GroupEventKind.GROUP_DELETED]  # first seen, deleted, reappeared: no reset


def test_losses_of_a_gone_group_listed_again_unread_then_read_are_counted_once(cluster):
    record(cluster, reading("billing", {("orders", 0): 100}, {"orders": 1}, {("orders", 0): (50, 700)}))
    record(cluster, reading("billing", {("orders", 0): 100}, {"orders": 1}, {("orders", 0): (600, 1000)}))
    record(cluster, ClusterReading(polled_at=timezone.now(), groups=[], committed={}, requests=1))
    record(cluster, reading("billing", None, {}, {}, group_errors={"billing": "GroupAuthorizationFailedError"}))

    record(cluster, reading("billing", {("orders", 0): 100}, {"orders": 1}, {("orders", 0): (600, 1000)}))

    billing = ConsumerGroup.objects.get(cluster=cluster, name="billing")
    assert billing.lost_messages == 500
    assert GroupEvent.objects.filter(group=billing, kind=GroupEventKind.DATA_LOSS).count() == 1


def test_a_group_read_without_commits_then_unread_then_read_with_commits_started_reading_its_topic(cluster):
    """Only a group whose row was made unread has no topics to have started reading."""
    record(cluster, reading("fresh", {}, {}, {}))
    record(cluster, reading("fresh", None, {}, {}, group_errors={"fresh": "CoordinatorLoadInProgressError"}))

    record(cluster, reading("fresh", {("orders", 0): 3}, {"orders": 1}, {("orders", 0): (0, 5)}))

    fresh = ConsumerGroup.objects.get(cluster=cluster, name="fresh")
    assert events(fresh) == [GroupEventKind.GROUP_CREATED, GroupEventKind.TOPIC_ADDED]


def test_an_unread_groups_partial_and_stalled_counts_and_members_are_not_kept_from_an_older_poll(cluster):
    from monitor.kafka.adapter import GroupMember, GroupMembership

    described = GroupMembership("billing", "consumer", state="Stable", known=True,
                                members=(GroupMember("m-1", "billing-1", "/10.0.0.1", (("orders", 0),)),))
    record(cluster, reading("billing", {("orders", 0): 1, ("orders", 1): 1}, {"orders": 2},
                            {("orders", 0): (0, 5)}, membership={"billing": described}))
    billing = ConsumerGroup.objects.get(cluster=cluster, name="billing")
    assert billing.partial_partitions == 1 and billing.members == 1

    record(cluster, reading("billing", None, {"orders": 2}, {}, group_errors={"billing": "GroupAuthorizationFailedError"},
                            membership={"billing": GroupMembership("billing", "consumer", error="timed out")}))

    billing.refresh_from_db()
    assert (billing.partial_partitions, billing.stalled_partitions) == (0, 0)
    assert (billing.members, billing.member_details) == (None, None)  # the describe did not answer either


def test_an_unread_groups_error_is_redacted_like_the_polls(cluster):
    Cluster.objects.filter(pk=cluster.pk).update(sasl_mechanism="PLAIN", sasl_username="monitor",
                                                 sasl_password="s3cr3t-pa55")
    cluster.refresh_from_db()
    record(cluster, reading("audit", None, {}, {}, group_errors={"audit": "denied for monitor:s3cr3t-pa55"}))
    audit = ConsumerGroup.objects.get(cluster=cluster, name="audit")
    assert "s3cr3t-pa55" not in audit.status_reason and "denied for monitor" in audit.status_reason
    assert not GroupEvent.objects.filter(detail__contains="s3cr3t-pa55").exists()


def test_listed_group_without_any_committed_offset_is_unknown_and_writes_no_samples(cluster):
    record(cluster, reading("fresh", {}, {}, {}))

    group = ConsumerGroup.objects.get(cluster=cluster, name="fresh")
    assert (group.status, group.total_lag, group.last_sample_at) == (GroupStatus.UNKNOWN, None, None)
    assert group.status_reason == "no committed offset on any partition"
    assert not polls_of(group) and not store.group_state(group)


def test_time_lag_history_is_read_with_as_many_queries_for_many_lagging_partitions_as_for_few(cluster):
    def queries_for_second_poll(target: Cluster, partitions: int) -> int:
        long_ago = timezone.now() - timedelta(hours=5)
        for h, end in ((0, 3), (1, 5)):
            store.store_poll(target.id, long_ago + timedelta(hours=h),
                             log_offsets=[("orders", p, 0, end) for p in range(partitions)])
        committed = {("orders", p): 1 for p in range(partitions)}  # behind all stored history
        offsets = {("orders", p): (0, 10) for p in range(partitions)}
        record(target, reading("billing", committed, {"orders": partitions}, offsets))
        with CaptureQueriesContext(connection) as captured:
            record(target, reading("billing", committed, {"orders": partitions}, offsets))
        return len(captured)

    few = queries_for_second_poll(cluster, 2)
    many = queries_for_second_poll(Cluster.objects.create(name=f"{cluster.name}-big", bootstrap_servers="k:9092"), 400)

    assert many == few
    row = samples(ConsumerGroup.objects.get(cluster__name=f"{cluster.name}-big"))[("orders", 399)]
    assert row.time_lag_method == TimeLagMethod.EXTRAPOLATED


def test_a_deleted_groups_samples_are_never_read_again_and_a_deleted_cluster_takes_its_samples(cluster):
    record(cluster, reading("billing", {("orders", 0): 1}, {"orders": 1}, {("orders", 0): (0, 5)}))
    record(cluster, reading("shipping", {("orders", 0): 2}, {"orders": 1}, {("orders", 0): (0, 5)}))
    billing = ConsumerGroup.objects.get(cluster=cluster, name="billing")
    shipping = ConsumerGroup.objects.get(cluster=cluster, name="shipping")

    billing_id = billing.id
    billing.delete()

    assert {p.group_id for p in store.topic_points([billing_id, shipping.id], EPOCH)} == {shipping.id}
    cluster.delete()
    assert not LagFrame.objects.exists()


# -- claiming due clusters -------------------------------------------------------------

def test_claim_returns_due_enabled_clusters_once_until_their_interval_passes(db):
    now = timezone.now()
    due = Cluster.objects.create(name="due", bootstrap_servers="k:9092", poll_interval_seconds=30)
    later = Cluster.objects.create(name="later", bootstrap_servers="k:9092", next_poll_at=now + timedelta(seconds=5))
    Cluster.objects.create(name="off", bootstrap_servers="k:9092", enabled=False)

    assert claim_due_clusters(now) == [due.id]
    assert claim_due_clusters(now) == []
    assert sorted(claim_due_clusters(now + timedelta(seconds=30))) == sorted([due.id, later.id])
    due.refresh_from_db()
    assert due.next_poll_at == now + timedelta(seconds=60)


@pytest.mark.django_db(transaction=True)
def test_concurrent_schedulers_never_claim_one_cluster_twice():
    now = timezone.now()
    ids = [Cluster.objects.create(name=f"c{n}", bootstrap_servers="k:9092").id for n in range(5)]
    claimed = race(lambda: claim_due_clusters(now), runners=4)
    assert sorted(cluster_id for claim in claimed for cluster_id in claim) == sorted(ids)


def test_stalled_group_reason_names_the_owner_of_its_lagging_partition(cluster, settings):
    settings.MONITOR_STATUS_WINDOW_SECONDS = 600
    settings.MONITOR_STOPPED_AFTER_SECONDS = 3600
    owner = GroupMember("m-1", "billing-7f9c", "10.2.3.4", (("orders", 7),))
    idle = GroupMember("m-2", "billing-a1b2", "10.2.3.5", (("orders", 0),))
    membership = {"billing": GroupMembership("billing", "consumer", "Stable", (owner, idle), known=True)}
    now = timezone.now()
    for ago in (660, 300, 0):
        data = reading("billing", {("orders", 0): 5, ("orders", 7): 18223}, {"orders": 8},
                       {("orders", 0): (0, 5), ("orders", 7): (0, 20000)}, membership=membership)
        data.polled_at = now - timedelta(seconds=ago)
        record(cluster, data)

    group = ConsumerGroup.objects.get(cluster=cluster, name="billing")
    assert group.status == GroupStatus.STALLED
    assert group.status_reason.endswith("; partition 7 of orders owned by billing-7f9c on 10.2.3.4")
    assert (group.protocol, group.members) == ("consumer", 2)
    detail = snapshot.get_group_snapshot(cluster.name, "billing")
    owners = {p["partition"]: p["owner"] for p in detail["partitions"]}
    assert owners == {0: "m-2", 7: "m-1", **{p: None for p in range(1, 7)}}  # 1-6: nobody assigned


def test_membership_the_broker_did_not_tell_is_unknown_not_empty(cluster):
    membership = {"billing": GroupMembership("billing", "classic", error="UnsupportedVersionError")}
    record(cluster, reading("billing", {("orders", 0): 1}, {"orders": 1}, {("orders", 0): (0, 5)},
                            membership=membership))

    group = ConsumerGroup.objects.get(cluster=cluster, name="billing")
    assert group.member_details is None and group.protocol == "classic"
    detail = snapshot.get_group_snapshot(cluster.name, "billing")
    assert detail["partitions"][0]["owner"] is None


def test_status_since_is_when_the_status_last_changed(cluster, prefix, topic, kafka_settings):
    group_id = f"{prefix}-since"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 3})
    poll_cluster(cluster.id)
    assert ConsumerGroup.objects.get(name=group_id).status_since is not None
    poll_cluster(cluster.id)  # the status has its history now (a brand-new group may read differently)
    first = ConsumerGroup.objects.get(name=group_id)

    poll_cluster(cluster.id)
    same = ConsumerGroup.objects.get(name=group_id)
    assert same.status == first.status and same.status_since == first.status_since

    delete_groups(kafka_settings, [group_id])
    poll_cluster(cluster.id)
    gone = ConsumerGroup.objects.get(name=group_id)
    assert gone.status == GroupStatus.GONE and gone.status_since == gone.gone_at > first.status_since

# -- numbers you can trust at the edges (issue 9), through the recording path -----------

T0 = timezone.now().replace(microsecond=0) - timedelta(hours=3)


def reading_at(at, group: str, committed: dict, counts: dict, offsets: dict, state: str = "Stable",
               **extra) -> ClusterReading:
    """One poll at an explicit time: ``offsets`` maps (topic, partition) to (log start,
    log end), or to None when the broker did not answer for it (e.g. NotLeaderForPartition)."""
    answered = {tp: LogOffsets(*pair) for tp, pair in offsets.items() if pair is not None}
    errors = {tp: "NotLeaderForPartitionError" for tp, pair in offsets.items() if pair is None}
    return ClusterReading(
        polled_at=at, groups=[GroupListing(group, state, "consumer")], committed={group: committed},
        partition_counts=counts, log_offsets=answered, log_errors=errors, requests=5, **extra,
    )


def record_at(cluster: Cluster, data: ClusterReading):
    return record_cycle(cluster, data, data.polled_at, time.monotonic())


def test_partition_without_log_offsets_for_one_poll_makes_the_total_partial_never_lower(cluster, client, read_token):
    committed = {("orders", 0): 200, ("orders", 1): 200}
    full = {("orders", 0): (0, 1000), ("orders", 1): (0, 1000)}
    record_at(cluster, reading_at(T0, "billing", committed, {"orders": 2}, full))

    record_at(cluster, reading_at(T0 + timedelta(seconds=30), "billing", committed, {"orders": 2},
                                  {("orders", 0): (0, 1000), ("orders", 1): None}))

    group = ConsumerGroup.objects.get(cluster=cluster, name="billing")
    [stored] = [p for p in store.topic_points([group.id], EPOCH) if p.polled_at == T0 + timedelta(seconds=30)]
    assert (stored.lag, stored.partial_partitions, stored.unknown_partitions) == (800, 1, 1)
    assert (group.total_lag, group.partial_partitions) == (800, 1)
    assert group.status == GroupStatus.OK
    assert group.status_reason.endswith("(lag of 1 partition unknown in the latest poll)")
    body = client.get(f"/api/v1/clusters/{cluster.name}/groups/billing",
                      HTTP_AUTHORIZATION=f"Bearer {read_token}").json()
    assert (body["total_lag"], body["partial_partitions"]) == (800, 1)

    record_at(cluster, reading_at(T0 + timedelta(seconds=60), "billing", committed, {"orders": 2}, full))
    group.refresh_from_db()
    assert (group.total_lag, group.partial_partitions) == (1600, 0)


def test_totals_have_one_definition_in_the_current_poll_and_the_stored_ones(cluster):
    """One committed partition (1000 -> 1100 -> 1200 at 60 s steps, log end 2000) and one
    the group never committed on (log end 1,000,000): the forecast is 800 / (100/60 s)."""
    for step, offset in enumerate((1000, 1100, 1200)):
        record_at(cluster, reading_at(T0 + timedelta(seconds=60 * step), "billing", {("orders", 0): offset},
                                      {"orders": 2}, {("orders", 0): (0, 2000), ("orders", 1): (0, 1_000_000)}))

    group = ConsumerGroup.objects.get(cluster=cluster, name="billing")
    assert group.catch_up_seconds == pytest.approx(480.0)
    assert group.partial_partitions == 0  # a partition without a commit is not read by the group


def test_caught_up_group_on_a_quiet_topic_is_idle_whatever_its_other_partitions_hold(cluster):
    for step in range(3):
        record_at(cluster, reading_at(T0 + timedelta(seconds=300 * step), "quiet", {("orders", 0): 2000},
                                      {"orders": 2}, {("orders", 0): (0, 2000), ("orders", 1): (0, 1_000_000)}))

    group = ConsumerGroup.objects.get(cluster=cluster, name="quiet")
    assert group.status == GroupStatus.IDLE


def test_first_poll_has_no_catch_up_verdict_only_not_enough_history(cluster):
    record_at(cluster, reading_at(T0, "billing", {("orders", 0): 0}, {"orders": 1}, {("orders", 0): (0, 1000)}))

    group = ConsumerGroup.objects.get(cluster=cluster, name="billing")
    assert (group.catch_up_seconds, group.catch_up_never) == (None, False)


def test_window_holds_three_polls_when_the_poll_interval_is_longer_than_the_window(cluster, settings):
    settings.MONITOR_STATUS_WINDOW_SECONDS = 60
    cluster.poll_interval_seconds = 300
    cluster.save()
    for step, (offset, end) in enumerate(((0, 100), (100, 1200), (200, 2300))):
        record_at(cluster, reading_at(T0 + timedelta(seconds=300 * step), "slow", {("orders", 0): offset},
                                      {"orders": 1}, {("orders", 0): (0, end)}))

    group = ConsumerGroup.objects.get(cluster=cluster, name="slow")
    assert group.status == GroupStatus.GROWING
    assert group.status_reason == "lag grew from 100 to 2,100 messages in the last 10 min"


@pytest.mark.parametrize("described, expected", [(True, GroupStatus.STOPPED), (False, GroupStatus.STALLED)])
def test_poll_with_unknown_lag_never_counts_as_progress(cluster, described, expected):
    """Committed offset frozen for 20 minutes with lag 100; the poll 3 minutes ago could
    not read the log offsets. Stopped only where the coordinator described the group as
    having no members; where it could not (tansu), stalled with membership unknown."""
    membership = {"frozen": GroupMembership("frozen", "classic", "Empty", (), known=described)}
    for minute in range(21):
        offsets = {("orders", 0): None if minute == 17 else (0, 1100)}
        record_at(cluster, reading_at(T0 + timedelta(minutes=minute), "frozen", {("orders", 0): 1000},
                                      {"orders": 1}, offsets, state="Empty", membership=membership))

    group = ConsumerGroup.objects.get(cluster=cluster, name="frozen")
    assert group.status == expected
    assert group.status_reason.startswith("no progress for 20 min while 100 messages wait")
    if expected == GroupStatus.STALLED:
        assert group.status_reason.endswith("(membership unknown)")


def test_data_loss_is_counted_once_across_a_gap_longer_than_the_raw_retention(cluster):
    lost = reading_at(T0 - timedelta(hours=50), "billing", {("orders", 0): 100}, {"orders": 1},
                      {("orders", 0): (600, 1000)})
    record_at(cluster, lost)
    LagFrame.objects.filter(cluster=cluster).delete()  # pruned after 48 h

    record_at(cluster, reading_at(T0, "billing", {("orders", 0): 100}, {"orders": 1}, {("orders", 0): (600, 1200)}))
    record_at(cluster, reading_at(T0 + timedelta(seconds=30), "billing", {("orders", 0): 100}, {"orders": 1},
                                  {("orders", 0): (700, 1200)}))

    group = ConsumerGroup.objects.get(cluster=cluster, name="billing")
    assert group.lost_messages == 600  # 500, then the 100 more deleted since
    assert GroupEvent.objects.filter(group=group, kind=GroupEventKind.DATA_LOSS).count() == 1  # one episode


def test_partition_stuck_while_the_others_progress_is_named_with_its_offset_and_lag(cluster, client, read_token):
    for step in range(23):  # every 30 s for 11 minutes: p0 stuck at 100 with 50 behind, p1 moving
        at = T0 + timedelta(seconds=30 * step)
        record_at(cluster, reading_at(at, "billing", {("orders", 0): 100, ("orders", 1): 1000 + 60 * step},
                                      {"orders": 2},
                                      {("orders", 0): (0, 150), ("orders", 1): (0, 1010 + 60 * step)}))

    group = ConsumerGroup.objects.get(cluster=cluster, name="billing")
    assert (group.status, group.stalled_partitions) == (GroupStatus.STALLED, 1)
    assert group.status_reason == ("orders/0 stuck at offset 100 for 11 min with 50 messages behind; "
                                   "1 other partition progressing")
    body = client.get(f"/api/v1/clusters/{cluster.name}/groups/billing",
                      HTTP_AUTHORIZATION=f"Bearer {read_token}").json()
    assert [(p["partition"], p["stalled"]) for p in body["partitions"]] == [(0, True), (1, False)]


def test_rewind_reason_measures_the_drop_from_the_highest_offset_of_the_window(cluster):
    for step, offset in enumerate((150, 190, 100, 0)):
        record_at(cluster, reading_at(T0 + timedelta(seconds=30 * step), "billing", {("orders", 0): offset},
                                      {"orders": 1}, {("orders", 0): (0, 200)}))

    group = ConsumerGroup.objects.get(cluster=cluster, name="billing")
    assert group.status == GroupStatus.REWIND
    assert group.status_reason.startswith(
        "orders/0: committed offset went back from 190 (the highest in the last 10 min) to 0 "
        "(190 messages to read again)")


def test_retention_risk_comes_from_the_topics_retention_ms_and_the_age_of_the_oldest_unread_message(
        cluster, prefix, kafka_settings, unique, client, read_token):
    """The broker reports retention.ms (DescribeConfigs); the oldest unread message was
    written 50 minutes ago: about 10 minutes are left before retention deletes it."""
    topic = unique("audit")
    create_topics(kafka_settings, {topic: 1}, {topic: {"retention.ms": "3600000"}})
    producer = Producer(kafka_settings)
    written = int((timezone.now() - timedelta(minutes=50)).timestamp() * 1000)
    try:
        producer.send_many(topic, 0, 5, timestamp_ms=written)
    finally:
        producer.close()
    group_id = f"{prefix}-audit"
    commit_offsets(kafka_settings, group_id, {(topic, 0): 0})

    poll_cluster(cluster.id)

    group = ConsumerGroup.objects.get(cluster=cluster, name=group_id)
    assert group.retention_risk_method == "retention_ms"
    assert group.retention_risk_seconds == pytest.approx(600, abs=60)
    body = client.get(f"/api/v1/clusters/{cluster.name}/groups/{group_id}",
                      HTTP_AUTHORIZATION=f"Bearer {read_token}").json()
    assert body["retention_risk_method"] == "retention_ms"


def test_retention_risk_without_retention_settings_falls_back_to_the_log_start_rate(cluster):
    for step, start in enumerate((0, 100)):
        record_at(cluster, reading_at(T0 + timedelta(seconds=100 * step), "billing", {("orders", 0): 300},
                                      {"orders": 1}, {("orders", 0): (start, 1000)}))

    group = ConsumerGroup.objects.get(cluster=cluster, name="billing")
    assert (group.retention_risk_method, group.retention_risk_seconds) == ("log_start_rate", pytest.approx(200.0))


def test_log_starts_are_stored_once_a_period_and_the_log_start_rate_still_answers_every_poll(cluster, settings):
    """Log ends at every poll (time lag needs them); log starts at the first poll of each
    MONITOR_PARTITION_DETAIL_SECONDS period; the retention forecast from the log-start
    rate (no retention.ms known) is there at every poll all the same."""
    settings.MONITOR_PARTITION_DETAIL_SECONDS = 300
    start = datetime.fromtimestamp((T0.timestamp() // 300 + 1) * 300, tz=dt_timezone.utc)  # a period starts
    for step in range(20):  # 30 s apart: 10 minutes, two periods
        record_at(cluster, reading_at(start + timedelta(seconds=30 * step), "billing", {("orders", 0): 300},
                                      {"orders": 1}, {("orders", 0): (10 * step, 1000 + step)}))
        group = ConsumerGroup.objects.get(cluster=cluster, name="billing")
        if step:
            # 10 messages a poll leave the log start; 300 - 10 x step left before the group loses any.
            assert (group.retention_risk_method, group.retention_risk_seconds) == (
                "log_start_rate", pytest.approx((300 - 10 * step) * 3.0, rel=0.01))

    points = store.log_points(cluster.id, EPOCH)[("orders", 0)]
    assert [p.log_end_offset for p in points] == [1000 + step for step in range(20)]
    assert [(p.polled_at, p.log_start_offset) for p in points if p.log_start_offset is not None] == [
        (start, 0), (start + timedelta(seconds=300), 100)]
