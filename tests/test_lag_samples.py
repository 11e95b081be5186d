"""The lag sample store (monitor.lag.samples) against real PostgreSQL: what a poll stores
is what every reader gets back, rollups take over where polled frames end, and time-lag
anchors match a search through every point."""
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest

from monitor.lag import samples
from monitor.lag.timelag import OffsetPoint
from monitor.models import Cluster, ConsumerGroup, LagFrame, LagRollup

NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=dt_timezone.utc)


@pytest.fixture
def plain_cluster(db):
    return Cluster.objects.create(name="frames", bootstrap_servers="127.0.0.1:1")


def make_groups(cluster, count):
    return [ConsumerGroup.objects.create(cluster=cluster, name=f"g{i}", first_seen_at=NOW, last_seen_at=NOW)
            for i in range(count)]


def totals_row(group, topic, lag, committed=None, log_end=None, partial=0):
    return (group.id, topic, lag, None if lag is None else lag / 10, 2, 0 if lag is not None else 2, partial,
            committed, log_end)


def test_topic_totals_of_many_groups_come_back_per_group_in_time_order(plain_cluster):
    groups = make_groups(plain_cluster, 130)  # more than one bucket each
    for step in range(3):
        at = NOW + timedelta(seconds=30 * step)
        samples.store_poll(plain_cluster.id, at, totals=[
            totals_row(g, topic, step + i, 100 * step, 100 * step + step + i)
            for i, g in enumerate(groups) for topic in ("b-topic", "a-topic")])
    wanted = [groups[0].id, groups[64].id, groups[129].id]
    points = samples.topic_points(wanted, NOW, NOW + timedelta(seconds=60))
    assert [(p.group_id, p.polled_at, p.topic) for p in points] == [
        (gid, NOW + timedelta(seconds=30 * step), topic)
        for gid in sorted(wanted) for step in range(3) for topic in ("a-topic", "b-topic")]
    first = points[0]
    assert (first.lag, first.time_lag_seconds, first.committed_offset_total, first.log_end_offset_total) == (0, 0.0, 0, 0)
    assert samples.topic_points(wanted, NOW, NOW + timedelta(seconds=60), until_inclusive=False)[-1].polled_at \
        == NOW + timedelta(seconds=30)
    assert {p.topic for p in samples.topic_points(wanted, NOW, None, topics=["b-topic"])} == {"b-topic"}


def test_rollups_are_read_only_before_the_oldest_polled_frame(plain_cluster):
    group, = make_groups(plain_cluster, 1)
    old = NOW - timedelta(hours=3)
    samples.store_rollup(plain_cluster.id, old, [totals_row(group, "t", 500)])
    samples.store_rollup(plain_cluster.id, NOW, [totals_row(group, "t", 999)])  # overlaps the polled ones
    samples.store_poll(plain_cluster.id, NOW, totals=[totals_row(group, "t", 7)])
    both = samples.topic_points([group.id], old - timedelta(minutes=1), NOW + timedelta(minutes=1), resolution=None)
    assert [(p.polled_at, p.lag, p.resolution) for p in both] == [(old, 500, samples.ROLLUP_SECONDS), (NOW, 7, 0)]
    rollups = samples.topic_points([group.id], old, NOW, resolution=samples.ROLLUP_SECONDS)
    assert [p.lag for p in rollups] == [500, 999]


def test_poll_totals_sum_topics_and_leave_unknown_sums_unknown(plain_cluster):
    group, = make_groups(plain_cluster, 1)
    samples.store_poll(plain_cluster.id, NOW, totals=[totals_row(group, "a", 5, 10, 15),
                                                      totals_row(group, "b", None, None, None, partial=2)])
    samples.store_poll(plain_cluster.id, NOW + timedelta(seconds=30), totals=[totals_row(group, "a", None, None, None)])
    assert samples.poll_totals(plain_cluster.id, [group.id], NOW, None) == {group.id: [
        (NOW, 10, 5, 15, 2, 2),
        (NOW + timedelta(seconds=30), None, None, None, 0, 0),
    ]}


def test_poll_totals_read_again_see_new_frames_and_not_deleted_ones(plain_cluster):
    """Frames are summed once per process: a later read must still see every frame
    written since, drop frames deleted meanwhile, and equal a read from scratch."""
    one, two = make_groups(plain_cluster, 2)
    samples.store_poll(plain_cluster.id, NOW, totals=[totals_row(one, "a", 5, 10, 15), totals_row(two, "a", 1, 2, 3)])
    assert samples.poll_totals(plain_cluster.id, [one.id, two.id], NOW, None) == {
        one.id: [(NOW, 10, 5, 15, 2, 0)], two.id: [(NOW, 2, 1, 3, 2, 0)]}
    later = NOW + timedelta(seconds=30)
    samples.store_poll(plain_cluster.id, later, totals=[totals_row(one, "a", 6, 11, 17), totals_row(one, "b", 1, 1, 1)])
    LagFrame.objects.filter(cluster=plain_cluster, polled_at=NOW).delete()
    cached = samples.poll_totals(plain_cluster.id, [one.id, two.id], NOW, None)
    assert cached == {one.id: [(later, 12, 7, 18, 4, 0)]}
    samples.forget_summed_frames()
    assert samples.poll_totals(plain_cluster.id, [one.id, two.id], NOW, None) == cached
    assert samples.poll_totals(plain_cluster.id, [two.id], NOW, None) == {}
    assert samples.poll_totals(plain_cluster.id, [one.id], later + timedelta(seconds=1), None) == {}


def test_poll_totals_add_up_one_group_found_in_two_frames_of_one_poll(plain_cluster):
    group, = make_groups(plain_cluster, 1)
    samples.store_poll(plain_cluster.id, NOW, totals=[totals_row(group, "a", 5, 10, 15)])
    samples.store_poll(plain_cluster.id, NOW, totals=[totals_row(group, "b", None, None, None, partial=1)])
    samples.store_poll(plain_cluster.id, NOW, totals=[totals_row(group, "c", 2, 3, 4)])
    assert samples.poll_totals(plain_cluster.id, [group.id], NOW, None) == {group.id: [(NOW, 13, 7, 19, 4, 1)]}


def test_poll_totals_beyond_64_bits_come_back_exact(plain_cluster):
    group, = make_groups(plain_cluster, 1)
    big = 2 ** 63 - 1  # each topic's summed offsets fit a bigint column; their sum does not
    samples.store_poll(plain_cluster.id, NOW, totals=[totals_row(group, "a", 1, big, big),
                                                      totals_row(group, "b", 1, big, big)])
    for _ in range(2):  # read, then kept
        assert samples.poll_totals(plain_cluster.id, [group.id], NOW, None) == {
            group.id: [(NOW, 2 * big, 2, 2 * big, 4, 0)]}


def test_frames_kept_between_polls_are_bounded_by_the_history_asked_for(plain_cluster):
    group, = make_groups(plain_cluster, 1)
    for step in range(4):
        samples.store_poll(plain_cluster.id, NOW + timedelta(seconds=30 * step), totals=[totals_row(group, "a", step)])
    samples.poll_totals(plain_cluster.id, [group.id], NOW, None)
    assert samples._TOTAL_SUMS.kept(plain_cluster.id) == 4
    samples.poll_totals(plain_cluster.id, [group.id], NOW + timedelta(seconds=60), None)
    assert samples._TOTAL_SUMS.kept(plain_cluster.id) == 2  # older than any later poll asks for
    samples.forget_summed_frames()
    # A shard's read (its frames hold every shard's groups) keeps nothing.
    found = samples.poll_totals(plain_cluster.id, [group.id], NOW, None, keep=False)
    assert len(found[group.id]) == 4 and samples._TOTAL_SUMS.kept(plain_cluster.id) == 0


def test_a_cluster_not_asked_about_for_an_hour_is_no_longer_kept(plain_cluster, monkeypatch):
    other = Cluster.objects.create(name="other", bootstrap_servers="k:9092")
    groups = {}
    for cluster in (plain_cluster, other):
        groups[cluster.id], = make_groups(cluster, 1)
        samples.store_poll(cluster.id, NOW, totals=[totals_row(groups[cluster.id], "a", 1)])
        samples.poll_totals(cluster.id, [groups[cluster.id].id], NOW, None)
    clock = samples.time.monotonic() + samples._FrameSums.UNUSED_SECONDS + 1
    monkeypatch.setattr(samples.time, "monotonic", lambda: clock)
    samples.poll_totals(other.id, [groups[other.id].id], NOW, None)
    assert (samples._TOTAL_SUMS.kept(plain_cluster.id), samples._TOTAL_SUMS.kept(other.id)) == (0, 1)


def test_latest_poll_of_a_group_reads_from_its_row(plain_cluster):
    group, = make_groups(plain_cluster, 1)
    state = [samples.PartitionState("orders\nv2", 1, 90, 0, 100, 10, 2.5, "interpolated", "why", NOW - timedelta(minutes=3),
                                    True, 120, NOW - timedelta(seconds=40)),
             samples.PartitionState("orders\nv2", 0, None, None, None, None, None, "unknown", "", None, False, None, None)]
    group.partition_state = samples.pack_state(state)
    group.last_sample_at = NOW
    group.save()
    group.refresh_from_db()
    assert samples.group_state(group) == state
    latest = samples.latest_partitions([group])[group.id]
    assert [(p.partition, p.lag, p.stalled) for p in latest] == [(0, None, False), (1, 10, True)]
    group.gone_at = NOW
    assert samples.latest_partitions([group]) == {}
    assert samples.latest_partitions([group], include_gone=True)[group.id][1].stuck_since == NOW - timedelta(minutes=3)


def test_latest_topic_points_are_those_of_each_groups_own_latest_poll(plain_cluster):
    first, second = make_groups(plain_cluster, 2)
    samples.store_poll(plain_cluster.id, NOW, totals=[totals_row(first, "t", 1), totals_row(second, "t", 2)])
    samples.store_poll(plain_cluster.id, NOW + timedelta(seconds=30), totals=[totals_row(first, "t", 3)])
    first.last_sample_at, second.last_sample_at = NOW + timedelta(seconds=30), NOW
    latest = samples.latest_topic_points([first, second])
    assert latest[first.id][0].lag == 3 and latest[second.id][0].lag == 2


def test_partition_series_holds_the_detail_and_the_latest_poll(plain_cluster, settings):
    group, = make_groups(plain_cluster, 1)
    detail = (group.id, "t", 0, 5, 0, 10, 5, 1.0, "interpolated", "", None, False)
    samples.store_poll(plain_cluster.id, NOW, partitions=[detail])
    group.last_sample_at = NOW + timedelta(seconds=30)
    group.partition_state = samples.pack_state([samples.PartitionState("t", 0, 8, 0, 10, 2, 0.5, "interpolated", "",
                                                                       None, False, 8, group.last_sample_at)])
    group.save()
    series = samples.partition_points(group.id, NOW - timedelta(minutes=1), NOW + timedelta(minutes=1))
    assert [(p.polled_at, p.lag) for p in series] == [(NOW, 5), (NOW + timedelta(seconds=30), 2)]


def test_partition_detail_is_due_once_per_period(settings):
    settings.MONITOR_PARTITION_DETAIL_SECONDS = 300
    start = datetime(2026, 12, 6, 12, 0, 10, tzinfo=dt_timezone.utc)
    assert samples.detail_due(None, start)
    assert not samples.detail_due(start, start + timedelta(seconds=30))
    assert samples.detail_due(start + timedelta(seconds=280), start + timedelta(seconds=310))
    settings.MONITOR_PARTITION_DETAIL_SECONDS = 0
    assert samples.detail_due(start, start + timedelta(seconds=1))



def test_log_starts_are_due_once_a_period_and_twice_a_window_when_the_window_is_shorter(settings):
    settings.MONITOR_PARTITION_DETAIL_SECONDS = 300
    start = datetime(2026, 12, 6, 12, 0, 10, tzinfo=dt_timezone.utc)
    assert samples.log_start_due(None, start, 600)
    assert not samples.log_start_due(start, start + timedelta(seconds=30), 600)
    assert samples.log_start_due(start + timedelta(seconds=280), start + timedelta(seconds=310), 600)
    # A 2-minute window: every minute, so the window holds two for the log-start rate.
    assert samples.log_start_due(start + timedelta(seconds=40), start + timedelta(seconds=70), 120)
    assert not samples.log_start_due(start + timedelta(seconds=70), start + timedelta(seconds=100), 120)
    settings.MONITOR_PARTITION_DETAIL_SECONDS = 0
    assert samples.log_start_due(start, start + timedelta(seconds=1), 600)

def test_log_points_use_rollups_before_the_polled_frames(plain_cluster):
    old = NOW - timedelta(days=3)
    LagRollup.objects.bulk_create([LagRollup(
        cluster=plain_cluster, kind=3, bucket=0, polled_at=old, resolution=300,
        payload=samples.frames.encode(samples.frames.LOG_OFFSETS, [("t", 0, 0, 50)]))])
    samples.store_poll(plain_cluster.id, NOW, log_offsets=[("t", 0, 10, 80), ("u", 1, 0, 3)])
    assert samples.log_points(plain_cluster.id, old - timedelta(days=1)) == {
        ("t", 0): [OffsetPoint(old, 50, 0), OffsetPoint(NOW, 80, 10)], ("u", 1): [OffsetPoint(NOW, 3, 0)]}
    assert samples.log_points(plain_cluster.id, old, topic="u") == {("u", 1): [OffsetPoint(NOW, 3, 0)]}


def test_time_lag_anchors_match_a_search_through_every_point(plain_cluster):
    ends = {}
    for step in range(200):
        at = NOW + timedelta(seconds=30 * step)
        rows = [("t", 0, 0, 10 * step)]
        if step >= 50:
            rows.append(("late", 0, 0, 5 * (step - 50)))  # a partition that appears later
        ends[at] = dict(((r[0], r[1]), r[3]) for r in rows)
        samples.store_poll(plain_cluster.id, at, log_offsets=rows)

    def brute(key, offset):
        points = sorted((at, e[key]) for at, e in ends.items() if key in e)
        below = [p for p in points if p[1] <= offset]
        above = [p for p in points if p[1] > offset]
        if not below:
            return [points[0]]
        return [max(below, key=lambda p: (p[1], p[0]))] + ([min(above, key=lambda p: (p[1], p[0]))] if above else [])

    far = [("t", 0, 0), ("t", 0, 5), ("t", 0, 995), ("t", 0, 5000), ("late", 0, 7), ("late", 0, -1)]
    found = samples.log_anchors(plain_cluster.id, far)
    expected = [(key[:2], OffsetPoint(at, end, 0)) for key in far for at, end in brute(key[:2], key[2])]
    assert sorted(found) == sorted(expected)


def test_rollups_keep_each_buckets_maximum_and_last_offsets_and_run_once(plain_cluster):
    group, = make_groups(plain_cluster, 1)
    start = datetime(2026, 12, 6, 11, 0, 0, tzinfo=dt_timezone.utc)
    for step, (lag, committed) in enumerate([(5, 100), (50, 110), (None, None), (7, 130)]):
        samples.store_poll(plain_cluster.id, start + timedelta(seconds=60 * step),
                           totals=[totals_row(group, "t", lag, committed, None if committed is None else committed + 1)],
                           log_offsets=[("t", 0, 0, 1000 + step)])
    samples.store_poll(plain_cluster.id, start + timedelta(seconds=330), totals=[totals_row(group, "t", 1, 140, 141)])
    written = samples.roll_up(plain_cluster.id, start + timedelta(minutes=11))
    assert written == 3  # the first bucket's totals, the second's, one log-offset frame
    rolled = samples.topic_points([group.id], start, start + timedelta(hours=1), resolution=samples.ROLLUP_SECONDS)
    assert [(p.polled_at, p.lag, p.committed_offset_total) for p in rolled] == [
        (start, 50, 130), (start + timedelta(seconds=300), 1, 140)]
    assert samples.roll_up(plain_cluster.id, start + timedelta(minutes=11)) == 0
    assert LagRollup.objects.filter(kind=3).count() == 1
    assert samples.log_points(plain_cluster.id, start)[("t", 0)][-1].log_end_offset == 1003
    assert LagFrame.objects.count() == 9
