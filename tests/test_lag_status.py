"""Group status rules over a fixed time window of polls: pure."""
from datetime import datetime, timedelta, timezone

from monitor.choices import GroupStatus
from monitor.lag.compute import PartitionLag
from monitor.lag.status import (
    GroupPoint, PartitionState, Rewind, StatusInputs, comparable_window, group_status, is_stalled, partition_states,
    stuck_since,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
WINDOW = 600
STOPPED_AFTER = 900


def polls(*rows: tuple[float, int | None, int | None, int | None]) -> list[GroupPoint]:
    """(seconds before now, committed total, lag, log end total), oldest first."""
    return [GroupPoint(NOW - timedelta(seconds=ago), committed, lag, end) for ago, committed, lag, end in rows]


def status(history, **kwargs):
    return group_status(StatusInputs(now=NOW, history=history, window_seconds=WINDOW,
                                     stopped_after_seconds=STOPPED_AFTER, **kwargs))


def test_group_consuming_at_producer_pace_is_ok_with_its_lag_and_rate():
    verdict = status(polls((60, 1000, 50, 1050), (30, 1600, 40, 1640), (0, 2200, 50, 2250)))
    assert verdict.status == GroupStatus.OK
    assert verdict.reason == "50 messages behind, consuming 20/s"


def test_group_without_any_known_lag_is_unknown():
    verdict = status(polls((0, None, None, None)))
    assert verdict.status == GroupStatus.UNKNOWN


def test_data_loss_wins_over_every_other_status():
    history = polls((900, 100, 500, 600), (0, 100, 900, 1000))
    verdict = status(history, lost_messages=1200, data_loss_partitions=2,
                     rewinds=[Rewind(NOW - timedelta(seconds=60), "x")])
    assert verdict.status == GroupStatus.DATA_LOSS
    assert verdict.reason == "1,200 messages deleted before they were consumed (2 partitions)"


def test_offset_reset_inside_the_window_is_rewind_and_ages_out_after_it():
    rewind = Rewind(NOW - timedelta(seconds=240), "orders/3: committed offset went back from 5,000 to 100")
    history = polls((30, 5000, 0, 5000), (0, 100, 4900, 5000))
    verdict = status(history, rewinds=[rewind])
    assert verdict.status == GroupStatus.REWIND
    assert verdict.reason == "orders/3: committed offset went back from 5,000 to 100, 4 min ago"
    old = Rewind(NOW - timedelta(seconds=WINDOW + 1), rewind.detail)
    assert status(history, rewinds=[old]).status != GroupStatus.REWIND


def test_no_progress_while_messages_wait_for_the_whole_window_is_stalled():
    history = polls(*[(ago, 1000, 200 + (600 - ago), 1200 + (600 - ago)) for ago in range(600, -1, -30)])
    verdict = status(history)
    assert verdict.status == GroupStatus.STALLED
    assert verdict.reason == "no progress in the last 10 min while 800 messages wait"


def test_no_progress_for_the_stopped_after_period_is_stopped_only_when_the_broker_reports_no_members():
    history = polls(*[(ago, 1000, 4500, 5500) for ago in range(960, -1, -30)])

    dead = status(history, members_live=False)
    live = status(history, members_live=True)
    unknown = status(history)

    assert (dead.status, dead.reason) == (
        GroupStatus.STOPPED, "no progress for 16 min while 4,500 messages wait; no active members")
    assert (live.status, live.reason) == (
        GroupStatus.STALLED, "no progress for 16 min while 4,500 messages wait; the group still has members")
    assert (unknown.status, unknown.reason) == (
        GroupStatus.STALLED, "no progress for 16 min while 4,500 messages wait (membership unknown)")


def test_caught_up_group_that_gets_one_message_is_not_stopped():
    history = polls(*[(ago, 1000, 0, 1000) for ago in range(960, 0, -30)], (0, 1000, 1, 1001))
    assert status(history).status not in {GroupStatus.STOPPED, GroupStatus.STALLED}


def test_short_pause_in_commits_is_not_stalled():
    history = polls((120, 900, 100, 1000), (90, 1000, 50, 1050), (60, 1000, 60, 1060), (0, 1000, 80, 1080))
    assert status(history).status != GroupStatus.STALLED


def test_lag_trending_up_over_the_window_is_growing_with_first_and_last_in_the_reason():
    history = polls((600, 1000, 120, 1120), (300, 2000, 2000, 4000), (0, 3000, 4500, 7500))
    verdict = status(history)
    assert verdict.status == GroupStatus.GROWING
    assert verdict.reason == "lag grew from 120 to 4,500 messages in the last 10 min"


def test_lag_that_rose_and_fell_back_is_not_growing():
    history = polls((600, 1000, 300, 1300), (300, 2000, 900, 2900), (0, 3000, 100, 3100))
    assert status(history).status == GroupStatus.OK


def test_lag_wobbling_by_a_few_messages_is_not_growing():
    history = polls((60, 1000, 0, 1000), (30, 1030, 1, 1031), (0, 1060, 2, 1062))
    assert status(history).status == GroupStatus.OK


def test_large_lag_creeping_up_by_less_than_five_percent_is_not_growing():
    history = polls((600, 1000, 10_000, 11_000), (300, 2000, 10_200, 12_200), (0, 3000, 10_400, 13_400))
    assert status(history).status == GroupStatus.OK


def test_polls_older_than_the_window_do_not_count_for_growing():
    history = polls((1200, 0, 10, 10), (900, 100, 20, 120), (600, 200, 500, 700), (300, 900, 400, 1300),
                    (0, 1600, 300, 1900))
    assert status(history).status == GroupStatus.OK


def test_group_without_active_members_whose_offsets_do_not_move_is_empty():
    history = polls((30, 1000, 10, 1010), (0, 1000, 10, 1010))
    verdict = status(history, broker_state="Empty")
    assert verdict.status == GroupStatus.EMPTY
    assert verdict.reason == "no active members; 10 messages waiting"
    assert status(history, members=0).status == GroupStatus.EMPTY


def test_caught_up_group_on_a_quiet_topic_is_idle():
    history = polls((600, 1000, 0, 1000), (300, 1000, 0, 1000), (0, 1000, 0, 1000))
    verdict = status(history)
    assert verdict.status == GroupStatus.IDLE
    assert verdict.reason == "caught up; no new messages in the last 10 min"


def test_caught_up_group_on_a_busy_topic_is_ok():
    history = polls((60, 1000, 0, 1000), (0, 2000, 0, 2000))
    verdict = status(history)
    assert (verdict.status, verdict.reason) == (GroupStatus.OK, "caught up")


def test_group_without_members_whose_offsets_move_is_a_manually_assigned_consumer_not_empty():
    history = polls((30, 1000, 10, 1010), (0, 1005, 10, 1015))
    assert status(history, broker_state="Empty").status == GroupStatus.OK


def test_partition_stuck_for_the_window_is_named_with_offset_lag_and_owner_while_the_others_move():
    history = polls((60, 1000, 60, 1060), (30, 1030, 60, 1090), (0, 1060, 60, 1120))
    stuck = PartitionState("orders", 0, 100, 50, NOW - timedelta(seconds=WINDOW + 30), "billing-7f9c on 10.2.3.4")
    moving = PartitionState("orders", 1, 960, 10, NOW)

    verdict = status(history, partitions=[stuck, moving])

    assert verdict.status == GroupStatus.STALLED
    assert verdict.reason == ("orders/0 stuck at offset 100 for 10 min 30 s with 50 messages behind, owner billing-7f9c "
                              "on 10.2.3.4; 1 other partition progressing")


def test_a_poll_with_unknown_lag_neither_moves_nor_resets_a_stuck_partition():
    since = NOW - timedelta(minutes=5)
    assert stuck_since(100, since, 100, None, NOW) == since  # unknown: the stretch goes on
    assert stuck_since(100, since, 100, 40, NOW) == since
    assert stuck_since(100, since, 100, 0, NOW) is None  # caught up
    assert stuck_since(100, since, 120, 40, NOW) == NOW  # moved: a new stretch from this poll
    assert stuck_since(None, None, 100, None, NOW) == NOW  # first seen, lag unknown: may be lagging


def test_a_healthy_consumers_commit_sawtooth_is_not_growing():
    """8 messages/s, commits every 5-7 s, polls every 10 s: the polled lag is anywhere
    between 0 and ~56 depending on where the poll falls between two commits."""
    lags = [3, 52, 10, 41, 0, 56, 22, 48, 5, 50, 30, 55]
    rows = [(ago, 10_000 + 80 * n - lag, lag, 10_000 + 80 * n) for n, (ago, lag) in
            enumerate(zip(range(110, -1, -10), lags))]
    assert status(polls(*rows)).status == GroupStatus.OK


def test_partial_polls_are_not_compared_with_full_ones():
    history = [GroupPoint(NOW - timedelta(seconds=60), 1000, 1600, 2600, 2, 0),
               GroupPoint(NOW - timedelta(seconds=30), 500, 800, 1300, 1, 1),
               GroupPoint(NOW, 1000, 1600, 2600, 2, 0)]
    assert comparable_window(history, NOW, WINDOW) == [history[0], history[2]]


def test_partition_states_of_a_group_agree_with_the_rules_for_one_partition():
    window = 600.0
    long_ago, just_now = NOW - timedelta(seconds=900), NOW - timedelta(seconds=60)
    edge = NOW - timedelta(seconds=window)
    parts = [
        PartitionLag("t", 0, 100, 0, 150, 50), PartitionLag("t", 1, 100, 0, 150, 50),
        PartitionLag("t", 2, 100, 0, 100, 0), PartitionLag("t", 3, None, None, 90, None),
        PartitionLag("t", 4, 100, 0, None, None), PartitionLag("t", 5, 120, 0, 150, 30),
        PartitionLag("t", 6, 100, 0, 150, 50), PartitionLag("u", 0, 7, 0, 9, 2),
    ]
    previous = {("t", 0): (100, 0, long_ago), ("t", 1): (100, 0, just_now), ("t", 2): (100, 0, long_ago),
                ("t", 4): (100, 0, long_ago), ("t", 5): (100, 0, long_ago), ("t", 6): (100, 0, edge)}
    owners = {("t", 0): "billing-1 on 10.0.0.1"}
    states, stalled = partition_states(parts, previous, owners, NOW, window)
    expected = []
    for part in parts:
        before = previous.get(part.key)
        since = stuck_since(before[0] if before else None, before[2] if before else None,
                            part.committed_offset, part.lag, NOW)
        expected.append(PartitionState(part.topic, part.partition, part.committed_offset, part.lag, since,
                                       owners.get(part.key)))
    assert states == expected
    assert stalled == [is_stalled(state, NOW, window) for state in expected]
    assert stalled == [True, False, False, False, True, False, True, False]
    assert partition_states(parts, None, {}, NOW, window)[1] == [False] * len(parts)
