"""Packed, compressed columns of many sample rows: how lag samples are stored.

A frame holds the rows of one kind of sample (see :data:`TOTALS`, :data:`PARTITIONS`,
:data:`LOG_OFFSETS`) as columns. Each column is a list of integers stored as the
differences between neighbours, in the narrowest width that holds them (rows are sorted, so
neighbours are alike:
the same group, the same topic, offsets of the same size), strings as indexes into a
table of the frame's distinct strings, seconds as milliseconds, and unknown values in a
mask of their own; the whole is compressed with zlib. A row of ten numbers costs a few
bytes instead of the ~200 of a table row and its indexes.

Offsets are stored as what they differ by where that is mostly zero: a committed offset
as the log end minus the lag minus the committed offset (zero whenever the lag is known),
a log start as the log end minus the log start.
"""
from __future__ import annotations

import json
import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from itertools import accumulate
from typing import Any

INT, TEXT, SECONDS, BOOL, TIME, LAG_SECONDS = "i", "s", "f", "b", "t", "d"
"""Column kinds: integer, string, float seconds (kept to the millisecond), bool, datetime
(kept to the millisecond), time lag in seconds (kept to a tenth of a second: the history
behind a poll every few seconds is no finer)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
_HEADER = struct.Struct("<I")
_LITTLE = sys.byteorder == "little"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Schema:
    """The columns of one kind of frame, in stored order."""

    name: str
    columns: tuple[tuple[str, str], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


TOTALS = Schema("totals", (
    ("group_id", INT), ("topic", TEXT), ("lag", INT), ("time_lag_seconds", SECONDS), ("partitions", INT),
    ("unknown_partitions", INT), ("partial_partitions", INT), ("committed_offset_total", INT),
    ("log_end_offset_total", INT),
))
PARTITIONS = Schema("partitions", (
    ("group_id", INT), ("topic", TEXT), ("partition", INT), ("committed_offset", INT), ("log_start_offset", INT),
    ("log_end_offset", INT), ("lag", INT), ("time_lag_seconds", LAG_SECONDS), ("time_lag_method", TEXT),
    ("time_lag_reason", TEXT), ("stuck_since", TIME), ("stalled", BOOL),
))
LOG_OFFSETS = Schema("log_offsets", (("topic", TEXT), ("partition", INT), ("log_start_offset", INT),
                                     ("log_end_offset", INT)))

# Stored differences (see the module docstring): column -> (base column, minus columns).
_RELATIVE: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "totals": {"committed_offset_total": ("log_end_offset_total", ("lag",))},
    "partitions": {"committed_offset": ("log_end_offset", ("lag",)), "log_start_offset": ("log_end_offset", ())},
    "log_offsets": {"log_start_offset": ("log_end_offset", ())},
}


def millis(value: datetime) -> int:
    """A datetime as integer milliseconds since 1970."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _relative(values: list[Any], base: list[Any], minus: list[list[Any]]) -> tuple[list[Any], list[int]]:
    """``base - sum(minus) - value`` where every term is known, else the value itself; and
    a mask saying which (1: a difference)."""
    columns = [values, base, *minus]
    if not any(None in column for column in columns):  # the common case, at C speed
        if not minus:
            return [b - v for v, b in zip(values, base)], [1] * len(values)
        return [b - m - v for v, b, m in zip(values, base, minus[0])], [1] * len(values)
    out, mask = [], []
    for index, value in enumerate(values):
        b = base[index]
        if value is None or b is None or any(m[index] is None for m in minus):
            out.append(value)
            mask.append(0)
        else:
            out.append(b - sum(m[index] for m in minus) - value)
            mask.append(1)
    return out, mask


def encode(schema: Schema, rows: Sequence[Sequence[Any]], level: int = 9) -> bytes:
    """Rows (tuples in ``schema``'s column order) -> one compressed frame."""
    columns: dict[str, list[Any]] = {name: [row[i] for row in rows] for i, name in enumerate(schema.names)}
    strings: dict[str, list[str]] = {}
    relative_mask: dict[str, list[int]] = {}
    original = dict(columns)
    for name, (base, minus) in _RELATIVE.get(schema.name, {}).items():
        columns[name], relative_mask[name] = _relative(original[name], original[base],
                                                       [original[m] for m in minus])
    blobs: list[bytes] = []
    nulls: list[str] = []
    for name, kind in schema.columns:
        values = columns[name]
        if kind == TEXT:
            table: dict[str, int] = {}
            ints = [table.setdefault(v or "", len(table)) for v in values]
            strings[name] = list(table)
        else:
            if any(v is None for v in values):
                nulls.append(name)
                blobs.append(_pack([0 if v is None else 1 for v in values]))
            if kind == SECONDS:
                ints = [0 if v is None else round(v * 1000) for v in values]
            elif kind == LAG_SECONDS:
                ints = [0 if v is None else round(v * 10) for v in values]
            elif kind == TIME:
                ints = [0 if v is None else millis(v) for v in values]
            elif kind == BOOL:
                ints = [1 if v else 0 for v in values]
            else:
                ints = [0 if v is None else v for v in values]
        blobs.append(_pack(_deltas(ints)))
    for name in relative_mask:  # in _RELATIVE's order, which decode follows
        blobs.append(_pack(relative_mask[name]))
    header = json.dumps({"v": FORMAT_VERSION, "n": len(rows), "s": strings, "null": nulls},
                        separators=(",", ":"), ensure_ascii=False).encode()
    return zlib.compress(_HEADER.pack(len(header)) + header + b"".join(blobs), level)


def decode(schema: Schema, payload: bytes) -> list[tuple[Any, ...]]:
    """One frame -> its rows, as tuples in ``schema``'s column order."""
    data = zlib.decompress(payload)
    (length,) = _HEADER.unpack_from(data)
    header = json.loads(data[_HEADER.size:_HEADER.size + length])
    count: int = header["n"]
    if not count:
        return []
    offset = _HEADER.size + length

    def take() -> list[int]:
        nonlocal offset
        code = chr(data[offset])
        if code == _WIDE:
            (length,) = _HEADER.unpack_from(data, offset + 1)
            start = offset + 1 + _HEADER.size
            offset = start + length
            return [int(v) for v in data[start:offset].decode().split(",")]
        size = count * _SIZES[code]
        values = array(code)
        values.frombytes(data[offset + 1:offset + 1 + size])
        if not _LITTLE:
            values.byteswap()
        offset += 1 + size
        return values.tolist()

    nulls = set(header["null"])
    columns: dict[str, list[Any]] = {}
    for name, kind in schema.columns:
        mask = take() if name in nulls else None
        ints = list(accumulate(take()))
        if kind == TEXT:
            table = header["s"][name]
            values: list[Any] = [table[i] for i in ints]
        elif kind == SECONDS:
            values = [i / 1000 for i in ints]
        elif kind == LAG_SECONDS:
            values = [i / 10 for i in ints]
        elif kind == TIME:
            values = [_EPOCH + timedelta(milliseconds=i) for i in ints]
        elif kind == BOOL:
            values = [bool(i) for i in ints]
        else:
            values = ints
        if mask is not None:
            values = [v if known else None for v, known in zip(values, mask)]
        columns[name] = values
    relative = _RELATIVE.get(schema.name, {})
    for name in relative:  # bases before the columns measured from them
        flags = take()
        base, minus = relative[name]
        stored, base_values, minus_values = columns[name], columns[base], [columns[m] for m in minus]
        if 0 not in flags and not minus_values:
            columns[name] = [b - v for v, b in zip(stored, base_values)]
        elif 0 not in flags and len(minus_values) == 1:
            columns[name] = [b - m - v for v, b, m in zip(stored, base_values, minus_values[0])]
        else:
            columns[name] = [
                base_values[i] - sum(m[i] for m in minus_values) - v if flag else v
                for i, (v, flag) in enumerate(zip(stored, flags))
            ]
    return list(zip(*(columns[name] for name in schema.names)))


def _deltas(values: list[int]) -> list[int]:
    if not values:
        return values
    return [values[0]] + [b - a for a, b in zip(values, values[1:])]


_SIZES = {"b": 1, "h": 2, "i": 4, "q": 8}
_LIMITS = ((1 << 7, "b"), (1 << 15, "h"), (1 << 31, "i"), (1 << 63, "q"))
_WIDE = "x"
"""Type code of a column some value of which needs more than 64 bits (kept exactly)."""


def _pack(values: list[int]) -> bytes:
    """The values in the narrowest signed width that holds them all, after a one-byte
    type code (``b``, ``h``, ``i`` or ``q``); wider ones (``x``) as a length and their text."""
    code = _WIDE
    if values:
        low, high = min(values), max(values)
        for limit, narrow in _LIMITS:
            if -limit <= low and high < limit:
                code = narrow
                break
    else:
        code = "b"
    if code == _WIDE:
        text = ",".join(map(str, values)).encode()
        return code.encode() + _HEADER.pack(len(text)) + text
    packed = array(code, values)
    if not _LITTLE:
        packed.byteswap()
    return code.encode() + packed.tobytes()
