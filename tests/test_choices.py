"""The orders and sets built on the choices are defined once and agree everywhere."""
from monitor.alerts.metrics import STATUS_RANK
from monitor.choices import (
    CONSUMER_STAGES,
    FAILURE_STAGES,
    HANDLED_STAGES,
    PROBLEM_STATUSES,
    STATUS_SEVERITY,
    STATUS_SEVERITY_RANK,
    GroupStatus,
    Stage,
    worst_status,
)


def test_every_group_status_has_one_place_in_the_severity_order():
    assert sorted(STATUS_SEVERITY) == sorted(GroupStatus)
    assert len(set(STATUS_SEVERITY)) == len(STATUS_SEVERITY)


def test_the_stored_alert_ranks_follow_the_severity_order():
    """Alert states store a status as its rank (append-only); the ranks must sort the
    statuses exactly as the one severity order does, worst highest."""
    by_rank = sorted(STATUS_RANK, key=STATUS_RANK.__getitem__, reverse=True)
    by_severity = [status for status in STATUS_SEVERITY if status in STATUS_RANK]
    assert by_rank == by_severity


def test_ok_is_better_than_idle_everywhere():
    assert STATUS_SEVERITY_RANK[GroupStatus.IDLE] > STATUS_SEVERITY_RANK[GroupStatus.OK]
    assert STATUS_RANK[GroupStatus.IDLE] > STATUS_RANK[GroupStatus.OK]


def test_the_worst_status_is_the_one_that_needs_a_human_first():
    assert worst_status([GroupStatus.OK, GroupStatus.STOPPED, GroupStatus.GROWING]) == GroupStatus.STOPPED
    assert worst_status([GroupStatus.OK, GroupStatus.IDLE]) == GroupStatus.IDLE
    assert worst_status([]) is None


def test_problem_statuses_are_the_ones_before_unknown():
    assert PROBLEM_STATUSES == {GroupStatus.DATA_LOSS, GroupStatus.STOPPED, GroupStatus.STALLED,
                                GroupStatus.GROWING, GroupStatus.REWIND, GroupStatus.EMPTY}


def test_stage_sets():
    assert set(FAILURE_STAGES) == {Stage.FAILED, Stage.DEAD_LETTERED}
    assert HANDLED_STAGES == {Stage.CONSUMED, Stage.PROCESSED}
    assert CONSUMER_STAGES == HANDLED_STAGES | set(FAILURE_STAGES)
    assert Stage.PUBLISHED not in CONSUMER_STAGES
