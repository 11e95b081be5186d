"""Packed frames of lag samples (monitor.lag.frames): what goes in comes out, in a few
bytes a row."""
from datetime import datetime, timedelta, timezone as dt_timezone

from hypothesis import given, settings as hypothesis_settings, strategies as st

from monitor.lag import frames

AT = datetime(2026, 12, 6, 7, 0, tzinfo=dt_timezone.utc)
offsets = st.one_of(st.none(), st.integers(min_value=-1, max_value=2**62))
small = st.integers(min_value=0, max_value=10_000)
seconds = st.one_of(st.none(), st.integers(min_value=0, max_value=10**12).map(lambda ms: ms / 1000))
lag_seconds = st.one_of(st.none(), st.integers(min_value=0, max_value=10**10).map(lambda tenths: tenths / 10))
names = st.text(max_size=30)
moments = st.one_of(st.none(), st.integers(min_value=0, max_value=10**12).map(
    lambda ms: datetime(1970, 1, 1, tzinfo=dt_timezone.utc) + timedelta(milliseconds=ms)))


@hypothesis_settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(min_value=1, max_value=2**31), names, offsets, seconds, small, small, small,
                          offsets, offsets)))
def test_topic_totals_come_back_as_written(rows):
    assert frames.decode(frames.TOTALS, frames.encode(frames.TOTALS, rows)) == rows


@hypothesis_settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(min_value=1, max_value=2**31), names, small, offsets, offsets, offsets, offsets,
                          lag_seconds, names, names, moments, st.booleans())))
def test_partition_detail_comes_back_as_written(rows):
    assert frames.decode(frames.PARTITIONS, frames.encode(frames.PARTITIONS, rows)) == rows


@hypothesis_settings(max_examples=200)
@given(st.lists(st.tuples(names, small, offsets, offsets)))
def test_log_offsets_come_back_as_written(rows):
    assert frames.decode(frames.LOG_OFFSETS, frames.encode(frames.LOG_OFFSETS, rows)) == rows


def test_offsets_whose_differences_need_more_than_64_bits_come_back_exactly():
    rows = [(1, "t", 0, None, 1, 0, 0, 2**63 - 1, -(2**63)), (2, "t", 0, None, 1, 0, 0, -(2**63), 2**63 - 1)]
    assert frames.decode(frames.TOTALS, frames.encode(frames.TOTALS, rows)) == rows


def test_unknown_values_stay_unknown_and_never_become_zero():
    rows = [(7, "orders", None, None, 3, 3, 1, None, None), (7, "payments", 0, 0.0, 1, 0, 0, 5, 5)]
    assert frames.decode(frames.TOTALS, frames.encode(frames.TOTALS, rows)) == rows


def test_hostile_names_survive_a_frame():
    hostile = ["orders\nv2", "a\x00b", "\u202eevil", "<script>", "{{x}}", "😀", "", "x" * 10_000]
    rows = [(name, i, 0, i) for i, name in enumerate(hostile)]
    assert frames.decode(frames.LOG_OFFSETS, frames.encode(frames.LOG_OFFSETS, rows)) == rows


def test_a_partition_of_a_busy_cluster_costs_a_few_bytes():
    """The design goal behind the storage budget (README "Scale"): neighbouring rows are
    alike, so a sample costs a few bytes, not the ~200 of a table row and its indexes."""
    rows = []
    for group in range(200):
        for partition in range(10):
            end = 1_000_000_000 + 7_919 * partition + 13 * group
            lag = (group * 31 + partition * 7) % 500
            rows.append((1000 + group, f"orders-{group % 20}", partition, end - lag, end - 50_000, end, lag,
                         lag / 10, "interpolated", "", None, False))
    payload = frames.encode(frames.PARTITIONS, rows)
    assert frames.decode(frames.PARTITIONS, payload) == rows
    assert len(payload) / len(rows) < 8


def test_time_lag_is_kept_to_a_tenth_of_a_second():
    rows = [(1, "t", 0, 5, 0, 5, 5, 1.26, "m", "", None, False)]
    assert frames.decode(frames.PARTITIONS, frames.encode(frames.PARTITIONS, rows))[0][7] == 1.3


def test_a_time_survives_to_the_millisecond():
    rows = [(1, "t", 0, 5, 0, 5, 5, 1.234, "m", "", AT + timedelta(microseconds=123_000), True)]
    assert frames.decode(frames.PARTITIONS, frames.encode(frames.PARTITIONS, rows))[0][10] == rows[0][10]
