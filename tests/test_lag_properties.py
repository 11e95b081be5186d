"""Property tests of the lag maths, totals, forecasts and status rules against a small
reference model: random poll sequences with unknown partitions, broker errors, rewinds,
offset resets, new partitions and gaps longer than any retention. Pure: no database.

Invariants:
- lag is never negative, and an unknown lag is None, never 0;
- a total is the sum over the partitions whose lag is known, and a partition becoming
  unknown never lowers a total silently: the total is marked partial instead;
- losses are counted once, whatever the gaps between polls;
- catch-up is finite only while the consume rate exceeds the produce rate;
- status never claims progress that the committed offsets do not show.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings, strategies as st

from monitor.choices import GroupStatus
from monitor.lag.compute import group_partition_lags, group_totals, newly_lost, partition_lag
from monitor.lag.forecast import catch_up
from monitor.lag.status import (
    GroupPoint, PartitionState, StatusInputs, comparable_window, group_status, stuck_since,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
offsets = st.integers(min_value=0, max_value=10_000)
maybe = lambda strategy: st.one_of(st.none(), strategy)  # noqa: E731


@given(committed=maybe(offsets), start=maybe(offsets), end=maybe(offsets))
def test_lag_is_never_negative_and_unknown_is_never_zero(committed, start, end):
    if start is not None and end is not None and start > end:
        start, end = end, start
    part = partition_lag("orders", 0, committed, start, end)

    if committed is None or end is None:
        assert part.lag is None
    else:
        assert part.lag is not None and part.lag >= 0
        readable = end - max(committed, start if start is not None else committed)
        assert part.lag == max(0, readable)  # the reference: what is still readable
        assert part.lost_messages == max(0, (start or 0) - committed) if start is not None else part.lost_messages == 0


partitions = st.lists(
    st.tuples(maybe(offsets), offsets, offsets, st.booleans()),  # committed, start, length, log offsets answered
    min_size=1, max_size=6,
)


def _lags(rows):
    committed = {("orders", p): c for p, (c, _, _, _) in enumerate(rows) if c is not None}
    log_offsets = {("orders", p): (s, s + n) for p, (_, s, n, ok) in enumerate(rows) if ok}
    errors = {("orders", p): "NotLeaderForPartitionError" for p, (_, _, _, ok) in enumerate(rows) if not ok}
    if not committed:
        committed = {("orders", 0): 0}
    return group_partition_lags(committed, {"orders": len(rows)}, log_offsets, errors)


@given(rows=partitions)
def test_totals_sum_the_known_lags_and_say_how_many_are_left_out(rows):
    lags = _lags(rows)
    totals = group_totals(lags, [None] * len(lags))

    known = [p for p in lags if p.lag is not None]
    assert totals.lag == (sum(p.lag for p in known) if known else None)
    assert totals.counted_partitions == len(known)
    assert totals.partial_partitions == sum(1 for p in lags if p.lag is None and p.committed_offset is not None)
    assert sum(t.lag or 0 for t in totals.topic_lags) == (totals.lag or 0)
    assert sum(t.partial_partitions for t in totals.topic_lags) == totals.partial_partitions


@given(rows=partitions, lose=st.data())
def test_a_partition_becoming_unknown_never_lowers_a_total_silently(rows, lose):
    full_rows = [(c, s, n, True) for c, s, n, _ in rows]
    before = group_totals(_lags(full_rows), [None] * len(full_rows))
    gone = lose.draw(st.sets(st.integers(0, len(rows) - 1)))
    after_rows = [(c, s, n, p not in gone) for p, (c, s, n, _) in enumerate(full_rows)]
    after = group_totals(_lags(after_rows), [None] * len(after_rows))

    if (after.lag or 0) < (before.lag or 0):
        assert after.partial_partitions > 0  # marked partial, never read as a drop
    comparable = (after.counted_partitions, after.partial_partitions) == (before.counted_partitions,
                                                                          before.partial_partitions)
    assert not comparable or after.lag == before.lag


@given(steps=st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500), st.booleans()), min_size=1, max_size=12),
       committed=offsets)
def test_losses_are_counted_once_across_any_gap(steps, committed):
    """Reference: the size of the union of every lost range [committed, log start) seen.
    The log start only advances; a step may be a gap of any length (nothing else carries
    over between polls but the group's mark)."""
    start, mark, counted, lost = committed, None, 0, set()
    for advance, extra, _gap in steps:
        start += advance
        part = partition_lag("orders", 0, committed, start, start + extra)
        new, mark = newly_lost(mark, part)
        counted += new
        lost.update(range(committed, start))
    assert counted == len(lost)


rates = st.one_of(st.none(), st.floats(min_value=0, max_value=1e4, allow_nan=False))


@given(lag=maybe(st.integers(0, 10**9)), consume=rates, produce=rates)
def test_catch_up_is_finite_only_when_consuming_faster_than_producing(lag, consume, produce):
    forecast = catch_up(lag, consume, produce)

    if lag == 0:
        assert forecast.seconds == 0
    elif forecast.seconds is not None:
        assert consume is not None and produce is not None and consume > produce
        assert forecast.seconds >= 0
    if lag and consume is not None and produce is not None and consume > produce:
        assert forecast.seconds is not None
    if forecast.never:
        assert consume is not None and produce is not None and consume <= produce
    if consume is None or produce is None:
        assert not forecast.never  # not enough history is no verdict


NO_PROGRESS = {GroupStatus.STALLED, GroupStatus.STOPPED, GroupStatus.UNKNOWN, GroupStatus.DATA_LOSS,
               GroupStatus.EMPTY}

polls = st.lists(
    st.tuples(st.integers(5, 120),  # seconds since the previous poll (gaps included)
              st.lists(st.tuples(st.integers(0, 50), st.booleans()), min_size=2, max_size=2)),  # produced, answered
    min_size=2, max_size=25,
)


@given(sequence=polls, committed=st.lists(st.integers(0, 1000), min_size=2, max_size=2),
       backlog=st.integers(1, 100), members=st.sampled_from([None, True, False]))
@settings(max_examples=300)
def test_status_never_claims_progress_the_committed_offsets_do_not_show(sequence, committed, backlog, members):
    """Committed offsets frozen over the whole sequence while messages wait (some polls
    cannot read the log offsets): once the window has passed, never ok, growing or idle."""
    window, stopped_after = 300.0, 600.0
    ends = [c + backlog for c in committed]
    at = T0
    history: list[GroupPoint] = []
    previous: dict[int, tuple[int, datetime | None]] = {}
    for gap, per_partition in sequence:
        at += timedelta(seconds=gap)
        rows = []
        for p, (produced, answered) in enumerate(per_partition):
            ends[p] += produced
            rows.append((committed[p], 0, ends[p], answered))
        lags = group_partition_lags({("orders", p): c for p, c in enumerate(committed)}, {"orders": 2},
                                    {("orders", p): (s, e) for p, (_, s, e, ok) in enumerate(rows) if ok},
                                    {("orders", p): "NotLeaderForPartitionError" for p, r in enumerate(rows)
                                     if not r[3]})
        totals = group_totals(lags, [None] * len(lags))
        states = []
        for part in lags:
            before = previous.get(part.partition)
            since = stuck_since(before[0] if before else None, before[1] if before else None,
                                part.committed_offset, part.lag, at)
            previous[part.partition] = (part.committed_offset or 0, since)
            states.append(PartitionState("orders", part.partition, part.committed_offset, part.lag, since))
        history.append(GroupPoint(at, totals.committed_total, totals.lag, totals.log_end_total,
                                  totals.counted_partitions, totals.partial_partitions))
        inputs = StatusInputs(now=at, history=history, window_seconds=window, stopped_after_seconds=stopped_after,
                              partitions=states, members_live=members)
        verdict = group_status(inputs)
        # A cycle hands over the comparable polls it has already picked: the same verdict.
        assert group_status(replace(inputs, comparable=comparable_window(history, at, window))) == verdict
        observed = (at - history[0].polled_at).total_seconds()
        if observed >= window + 120 and totals.lag:
            assert verdict.status in NO_PROGRESS, (verdict, observed)
        if verdict.status == GroupStatus.STOPPED:
            assert members is False  # stopped only on the broker's word that nobody is there
