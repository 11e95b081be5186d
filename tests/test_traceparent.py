"""W3C traceparent rules (https://www.w3.org/TR/trace-context/#traceparent-header)."""
import pytest

from monitor.events import traceparent as tp

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
SPAN_ID = "b7ad6b7169203331"
VALID = f"00-{TRACE_ID}-{SPAN_ID}-01"


def test_valid_traceparent_is_split_into_its_four_fields():
    parsed = tp.parse(VALID)
    assert parsed == tp.TraceParent("00", TRACE_ID, SPAN_ID, "01")
    assert parsed.sampled is True
    assert tp.parse(f"00-{TRACE_ID}-{SPAN_ID}-00").sampled is False


def test_future_version_may_carry_extra_fields_which_are_ignored():
    parsed = tp.parse(f"cc-{TRACE_ID}-{SPAN_ID}-01-what-the-future-brings")
    assert (parsed.version, parsed.trace_id, parsed.parent_id) == ("cc", TRACE_ID, SPAN_ID)


@pytest.mark.parametrize(("value", "rule"), [
    (f"00-{TRACE_ID}-{SPAN_ID}-01-extra", "version 00 has exactly four fields"),
    (f"ff-{TRACE_ID}-{SPAN_ID}-01", "version ff is forbidden"),
    (f"0-{TRACE_ID}-{SPAN_ID}-01", "version must be 2 lowercase hex digits"),
    (f"0g-{TRACE_ID}-{SPAN_ID}-01", "version must be 2 lowercase hex digits"),
    (f"00-{TRACE_ID.upper()}-{SPAN_ID}-01", "trace id must be 32 lowercase hex digits"),
    (f"00-{TRACE_ID[:31]}-{SPAN_ID}-01", "trace id must be 32 lowercase hex digits"),
    (f"00-{'0' * 32}-{SPAN_ID}-01", "trace id must not be all zeros"),
    (f"00-{TRACE_ID}-{SPAN_ID[:15]}x-01", "parent id must be 16 lowercase hex digits"),
    (f"00-{TRACE_ID}-{'0' * 16}-01", "parent id must not be all zeros"),
    (f"00-{TRACE_ID}-{SPAN_ID}-1", "trace flags must be 2 lowercase hex digits"),
    (f"00-{TRACE_ID}-{SPAN_ID}", "four dash-separated fields"),
    (f" {VALID}", "whitespace"),
    (42, "must be a string"),
])
def test_traceparent_breaking_a_rule_is_refused_naming_the_rule(value, rule):
    with pytest.raises(tp.TraceContextError, match=rule):
        tp.parse(value)


@pytest.mark.parametrize(("value", "rule"), [
    ("0" * 32, "must not be all zeros"),
    (TRACE_ID[:-1], "32 lowercase hex"),
    (TRACE_ID.upper(), "32 lowercase hex"),
    (None, "must be a string"),
])
def test_bare_trace_id_follows_the_same_rules(value, rule):
    with pytest.raises(tp.TraceContextError, match=rule):
        tp.check_trace_id(value)


@pytest.mark.parametrize(("value", "rule"), [
    ("0" * 16, "must not be all zeros"),
    (SPAN_ID + "0", "16 lowercase hex"),
    (123, "must be a string"),
])
def test_bare_span_id_follows_the_same_rules(value, rule):
    with pytest.raises(tp.TraceContextError, match=rule):
        tp.check_span_id(value)


def test_formatted_traceparent_round_trips():
    assert tp.format_traceparent(TRACE_ID, SPAN_ID) == VALID
    assert tp.parse(tp.format_traceparent(TRACE_ID, SPAN_ID, sampled=False)).sampled is False


@pytest.mark.parametrize("value", ["0" * 30 + "1\n", "a" * 31 + "\n"])
def test_a_trace_id_with_a_trailing_newline_is_refused(value):
    with pytest.raises(tp.TraceContextError):
        tp.check_trace_id(value)


def test_a_traceparent_with_a_trailing_newline_is_refused():
    with pytest.raises(tp.TraceContextError):
        tp.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n")
