"""W3C Trace Context: the ``traceparent`` header and bare trace/span ids.

https://www.w3.org/TR/trace-context/#traceparent-header

    traceparent = version "-" trace-id "-" parent-id "-" trace-flags
    version     = 2 lowercase hex, not "ff"
    trace-id    = 32 lowercase hex, not all zeros
    parent-id   = 16 lowercase hex, not all zeros
    trace-flags = 2 lowercase hex

Version 00 has exactly these four fields. A later version may append fields after a
further "-", which a receiver must ignore; for version 00 anything more is invalid.
"""
from __future__ import annotations

import re
from typing import NamedTuple

# Used with fullmatch: "$" would also match before a trailing newline.
_HEX = re.compile(r"[0-9a-f]+")
INVALID_TRACE_ID = "0" * 32
INVALID_SPAN_ID = "0" * 16


class TraceParent(NamedTuple):
    version: str
    trace_id: str
    parent_id: str
    flags: str

    @property
    def sampled(self) -> bool:
        return bool(int(self.flags, 16) & 0x01)


class TraceContextError(ValueError):
    """A traceparent or id that breaks the W3C rules; the message says which rule."""


def _is_hex(value: str, length: int) -> bool:
    return len(value) == length and _HEX.fullmatch(value) is not None


def check_trace_id(value: object) -> str:
    """A valid trace id (32 lowercase hex, not all zeros) or TraceContextError."""
    if not isinstance(value, str):
        raise TraceContextError("must be a string of 32 lowercase hex digits")
    if not _is_hex(value, 32):
        raise TraceContextError("must be 32 lowercase hex digits")
    if value == INVALID_TRACE_ID:
        raise TraceContextError("must not be all zeros")
    return value


def check_span_id(value: object) -> str:
    """A valid span id (16 lowercase hex, not all zeros) or TraceContextError."""
    if not isinstance(value, str):
        raise TraceContextError("must be a string of 16 lowercase hex digits")
    if not _is_hex(value, 16):
        raise TraceContextError("must be 16 lowercase hex digits")
    if value == INVALID_SPAN_ID:
        raise TraceContextError("must not be all zeros")
    return value


_WELL_FORMED_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def parse(value: object) -> TraceParent:
    """Parse a traceparent header value by the W3C rules; TraceContextError names the broken rule."""
    # Fast path for the common case (version 00, well formed); the rules below name what is wrong.
    match = _WELL_FORMED_00.fullmatch(value) if isinstance(value, str) else None
    if match is not None and match[1] != INVALID_TRACE_ID and match[2] != INVALID_SPAN_ID:
        return TraceParent("00", match[1], match[2], match[3])
    if not isinstance(value, str):
        raise TraceContextError("must be a string like 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>")
    if value != value.strip():
        raise TraceContextError("must not have leading or trailing whitespace")
    parts = value.split("-")
    if len(parts) < 4:
        raise TraceContextError("must have four dash-separated fields: version-trace_id-parent_id-flags")
    version, trace_id, parent_id, flags = parts[:4]
    if not _is_hex(version, 2):
        raise TraceContextError("version must be 2 lowercase hex digits")
    if version == "ff":
        raise TraceContextError("version ff is forbidden")
    if version == "00" and len(parts) != 4:
        raise TraceContextError("version 00 has exactly four fields")
    if not _is_hex(trace_id, 32):
        raise TraceContextError("trace id must be 32 lowercase hex digits")
    if trace_id == INVALID_TRACE_ID:
        raise TraceContextError("trace id must not be all zeros")
    if not _is_hex(parent_id, 16):
        raise TraceContextError("parent id must be 16 lowercase hex digits")
    if parent_id == INVALID_SPAN_ID:
        raise TraceContextError("parent id must not be all zeros")
    if not _is_hex(flags, 2):
        raise TraceContextError("trace flags must be 2 lowercase hex digits")
    return TraceParent(version, trace_id, parent_id, flags)


def format_traceparent(trace_id: str, span_id: str, sampled: bool = True) -> str:
    return f"00-{check_trace_id(trace_id)}-{check_span_id(span_id)}-{'01' if sampled else '00'}"
