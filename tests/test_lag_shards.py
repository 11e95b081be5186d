"""Polling a cluster in shards against a real broker (tansu) and real PostgreSQL: a
sharded cycle records what an unsharded one records, every group in exactly one shard,
and a shard that cannot reach Kafka (a real closed port) leaves only its groups unknown."""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone

import pytest
from django.utils import timezone

from monitor.choices import ClusterStatus, GroupEventKind, GroupStatus
from monitor.kafka.adapter import Producer, commit_offsets_of_many_groups, create_topics
from monitor.lag.poll import poll_cluster
from monitor.lag.shards import Shard, planned_shards, shard_count, shard_of
from monitor.lag import samples
from monitor.models import Cluster, ConsumerGroup, GroupEvent, PollRun
from monitor.tasks import poll_cluster_shard
from tests.services import free_port

SHARDS = 3


def test_every_group_id_is_owned_by_exactly_one_shard_whatever_it_holds():
    ids = [f"group-{i}" for i in range(500)] + ["", "\x00", "é" * 300, "\ud800lone", "<script>", "a/b%2Fc"]
    for shards in (1, 2, 3, 7):
        owners = {group_id: [s for s in range(shards) if Shard(s, shards).owns(group_id)] for group_id in ids}
        assert all(len(found) == 1 for found in owners.values())
        assert {shard_of(group_id, shards) for group_id in ids} == set(range(shards))
    assert shard_of("orders", 3) == shard_of("orders", 3)  # stable: no per-process hash seed


def test_shard_count_keeps_at_most_the_setting_groups_per_shard_and_zero_never_shards():
    assert shard_count(12, 0) == 1
    assert shard_count(12, 12) == 1
    assert shard_count(13, 12) == 2
    assert shard_count(12, 5) == 3
    with pytest.raises(ValueError):
        Shard(3, 3)


def _names_covering_every_shard(prefix: str, per_shard: int) -> list[str]:
    """Group ids chosen so each shard owns ``per_shard`` of them (ids are random per run)."""
    chosen: dict[int, list[str]] = {s: [] for s in range(SHARDS)}
    i = 0
    while any(len(names) < per_shard for names in chosen.values()):
        name = f"{prefix}-g{i}"
        owner = chosen[shard_of(name, SHARDS)]
        if len(owner) < per_shard:
            owner.append(name)
        i += 1
    return sorted(n for names in chosen.values() for n in names)


@pytest.fixture
def seeded(cluster, unique, kafka_settings):
    """Twelve groups on two topics, four per shard, each lagging differently; the
    ``cluster`` and a twin cluster (same broker, same include glob) both watch them."""
    prefix = unique("shard")
    orders, payments = unique("orders"), unique("payments")
    create_topics(kafka_settings, {orders: 3, payments: 2})
    producer = Producer(kafka_settings)
    try:
        for topic, partition, count in ((orders, 0, 9), (orders, 1, 5), (payments, 0, 6), (payments, 1, 3)):
            for _ in range(count):
                producer.send(topic, b"event", partition=partition)
    finally:
        producer.close()
    names = _names_covering_every_shard(prefix, 4)
    offsets = {}
    for i, name in enumerate(names):
        chosen = {(orders, 0): i % 10, (orders, 1): min(i, 5)}
        if i % 2:
            chosen[(payments, i % 2)] = i % 4
        offsets[name] = chosen
    commit_offsets_of_many_groups(kafka_settings, offsets)
    cluster.group_include = f"{prefix}*"
    cluster.save()
    twin = Cluster.objects.create(name=f"{cluster.name}-twin", bootstrap_servers=cluster.bootstrap_servers,
                                  group_include=cluster.group_include)
    return cluster, twin, names


def _poll_in_shards(cluster: Cluster, started_at: datetime) -> None:
    for shard in range(SHARDS):
        poll_cluster_shard(cluster.id, shard, SHARDS, started_at.isoformat())  # the task, run inline


EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
FAR = datetime(9999, 1, 1, tzinfo=dt_timezone.utc)


def _recorded(cluster: Cluster) -> dict[str, tuple]:
    """Per group what a cycle stores, but the time lag seconds (measured at each poll's own time)."""
    found = {}
    for group in ConsumerGroup.objects.filter(cluster=cluster):
        partitions = sorted((p.topic, p.partition, p.committed_offset, p.log_start_offset, p.log_end_offset, p.lag,
                             p.time_lag_method) for p in samples.partition_points(group.id, EPOCH, FAR))
        topics = sorted((t.topic, t.lag, t.partitions, t.unknown_partitions, t.committed_offset_total,
                         t.log_end_offset_total, t.partial_partitions) for t in samples.topic_points([group.id], EPOCH))
        found[group.name] = (group.status, group.status_reason, group.total_lag, group.topics,
                             group.partial_partitions, group.stalled_partitions, group.lost_messages,
                             group.gone_at, partitions, topics)
    return found


def test_a_sharded_cycle_records_exactly_what_an_unsharded_cycle_records(seeded):
    unsharded, sharded, names = seeded

    assert poll_cluster(unsharded.id).ok
    started_at = timezone.now()
    _poll_in_shards(sharded, started_at)

    expected, got = _recorded(unsharded), _recorded(sharded)
    assert sorted(expected) == sorted(got) == names
    assert got == {name: value for name, value in expected.items()}
    assert any(value[2] for value in got.values())  # some group lags: the comparison compares something
    runs = PollRun.objects.filter(cluster=sharded)
    assert runs.count() == SHARDS and {r.started_at for r in runs} == {started_at}
    assert all(r.ok and r.groups == 4 for r in runs)  # each group in exactly one shard's cycle
    assert sum(r.groups for r in runs) == PollRun.objects.get(cluster=unsharded).groups == len(names)


def test_after_a_sharded_cycle_the_clusters_summary_lists_every_shards_groups(seeded):
    """Each shard reads and holds only its own group rows, so none of them may cache the
    cluster's summary: it is read again, whole, when asked for."""
    from monitor.lag import snapshot

    _, sharded, names = seeded
    _poll_in_shards(sharded, timezone.now())

    summary = snapshot.get_cluster_snapshot(sharded.name)

    assert sorted(g["group"] for g in summary["groups"]) == names


def test_a_failed_shard_marks_only_its_groups_unknown_and_none_gone(seeded, settings):
    from monitor.lag import snapshot

    settings.MONITOR_KAFKA_TIMEOUT_SECONDS = 2
    _, cluster, names = seeded
    _poll_in_shards(cluster, timezone.now())
    before = {g.name: g.total_lag for g in ConsumerGroup.objects.filter(cluster=cluster)}
    good_bootstrap = cluster.bootstrap_servers

    # Shard 2 of the next cycle reads from a closed port; shards 1 and 3 from the broker.
    started_at = timezone.now()
    poll_cluster_shard(cluster.id, 0, SHARDS, started_at.isoformat())
    Cluster.objects.filter(pk=cluster.pk).update(bootstrap_servers=f"127.0.0.1:{free_port()}")
    poll_cluster_shard(cluster.id, 1, SHARDS, started_at.isoformat())
    Cluster.objects.filter(pk=cluster.pk).update(bootstrap_servers=good_bootstrap)
    poll_cluster_shard(cluster.id, 2, SHARDS, started_at.isoformat())

    groups = {g.name: g for g in ConsumerGroup.objects.filter(cluster=cluster)}
    assert sorted(groups) == names
    failed = {name for name in names if shard_of(name, SHARDS) == 1}
    assert len(failed) == 4
    for name, group in groups.items():
        assert group.gone_at is None
        if name in failed:
            assert group.status == GroupStatus.UNKNOWN and group.total_lag is None
            assert group.status_reason.startswith("offsets not read in the latest poll (shard 2/3: ")
            assert group.unread_since is not None  # what the alerts and /metrics read (one mark)
        else:
            assert group.status != GroupStatus.UNKNOWN and group.total_lag == before[name]
            assert group.unread_since is None
    assert not GroupEvent.objects.filter(cluster=cluster, kind=GroupEventKind.GROUP_DELETED).exists()
    summary = {g["group"]: g for g in snapshot.get_cluster_snapshot(cluster.name)["groups"]}
    assert {name for name, g in summary.items() if g["status"] == GroupStatus.UNKNOWN} == failed
    detail = snapshot.get_group_snapshot(cluster.name, sorted(failed)[0])
    assert (detail["status"], detail["total_lag"]) == (GroupStatus.UNKNOWN, None)
    runs = {r.error.split(":")[0] if r.error else "": r for r in
            PollRun.objects.filter(cluster=cluster, started_at=started_at)}
    assert len(PollRun.objects.filter(cluster=cluster, started_at=started_at)) == SHARDS
    assert not runs["shard 2/3"].ok
    cluster.refresh_from_db()
    assert cluster.status == ClusterStatus.OK  # the other shards read the cluster

    # Every shard of a cycle failing is an unreachable cluster.
    Cluster.objects.filter(pk=cluster.pk).update(bootstrap_servers=f"127.0.0.1:{free_port()}")
    _poll_in_shards(cluster, timezone.now())
    cluster.refresh_from_db()
    assert cluster.status == ClusterStatus.UNREACHABLE and "cannot reach" in cluster.last_error
    assert all(g.status == GroupStatus.UNKNOWN and g.gone_at is None
               for g in ConsumerGroup.objects.filter(cluster=cluster))
    Cluster.objects.filter(pk=cluster.pk).update(bootstrap_servers=good_bootstrap)

    # The next cycle reads every shard again: the groups come back with their lag.
    _poll_in_shards(cluster, timezone.now())
    for group in ConsumerGroup.objects.filter(cluster=cluster):
        assert group.status != GroupStatus.UNKNOWN and group.total_lag == before[group.name]
        assert group.unread_since is None


def test_a_cluster_is_planned_in_shards_only_beyond_the_groups_one_shard_may_poll(seeded, settings):
    cluster, _, names = seeded
    assert poll_cluster(cluster.id).ok
    settings.MONITOR_POLL_SHARD_GROUPS = 0
    assert planned_shards(cluster.id) == 1
    settings.MONITOR_POLL_SHARD_GROUPS = len(names)
    assert planned_shards(cluster.id) == 1
    settings.MONITOR_POLL_SHARD_GROUPS = 5
    assert planned_shards(cluster.id) == 3


def test_the_scheduler_fans_a_big_cluster_out_in_shard_tasks_and_polls_a_small_one_whole(seeded, settings):
    """Tasks run eagerly (inline): the fan-out is under test, not the Celery broker."""
    from monitor.celery import app
    from monitor.tasks import schedule_polls

    big, small, names = seeded
    assert poll_cluster(big.id).ok  # the big cluster's groups are known; the small one has none stored yet
    PollRun.objects.filter(cluster=big).delete()
    Cluster.objects.filter(pk__in=[big.pk, small.pk]).update(next_poll_at=None)
    settings.MONITOR_POLL_SHARD_GROUPS = 5
    app.conf.task_always_eager = True
    try:
        assert schedule_polls() >= 2
    finally:
        app.conf.task_always_eager = False

    shard_runs = list(PollRun.objects.filter(cluster=big))
    assert len(shard_runs) == 3 and len({r.started_at for r in shard_runs}) == 1
    assert all(r.ok for r in shard_runs) and sum(r.groups for r in shard_runs) == len(names)
    [whole] = PollRun.objects.filter(cluster=small)
    assert whole.ok and whole.groups == len(names)
    # (statuses may differ: the big cluster has one more poll of history)
    lags = {g.name: g.total_lag for g in ConsumerGroup.objects.filter(cluster=big)}
    assert lags == {g.name: g.total_lag for g in ConsumerGroup.objects.filter(cluster=small)}
