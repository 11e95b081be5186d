"""Event reports: validate, normalise, store idempotently.

Validation is plain Python over the decoded JSON (no per-event ORM objects) so a batch
of 1,000 reports costs milliseconds. Every problem is collected with its location
(``["events", 3, "timestamp"]``) and a batch with any problem stores nothing.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from monitor.choices import Stage
from monitor.events import traceparent as tp
from monitor.events.config import IngestLimits

STAGES = frozenset(Stage.values)
REQUIRED = ("event_id", "type", "service", "stage", "timestamp")
OPTIONAL = ("topic", "partition", "offset", "key", "consumer_group", "schema_version",
            "traceparent", "trace_id", "span_id", "parent_span_id", "attributes")
KNOWN_FIELDS = frozenset(REQUIRED + OPTIONAL)

# Column lengths of monitor.models.Event.
_MAX_LENGTH = {"event_id": 200, "type": 200, "service": 200, "key": 255, "consumer_group": 255}
# Kafka's own topic name rule.
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")  # used with fullmatch
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
_FUTURE_SLACK = dt.timedelta(days=1)
_UTC = dt.timezone.utc
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


class EventRow(NamedTuple):
    """One normalised report, in the column order of the events table."""

    event_id: str
    type: str
    service: str
    stage: str
    timestamp: dt.datetime
    topic: str
    partition: int | None
    offset: int | None
    key: str
    consumer_group: str
    schema_version: int | None
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: str | None  # JSON text, ready for the jsonb column
    report_hash: str


@dataclass(frozen=True)
class FieldError:
    loc: tuple[str | int, ...]
    msg: str

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg}


class IngestError(Exception):
    """A request that cannot be accepted; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, detail: str, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"detail": self.detail}
        if self.errors:
            body["errors"] = [error.as_dict() for error in self.errors]
        return body


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int


def report_hash(event_id: str, stage: str, service: str, consumer_group: str, timestamp: dt.datetime) -> str:
    """Identity of a report: a client retry repeats all five and is stored once."""
    text = "\x1f".join((event_id, stage, service, consumer_group, timestamp.isoformat()))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def parse_timestamp(value: object, now: dt.datetime) -> dt.datetime:
    """An aware UTC datetime from an ISO-8601 string; ValueError with a message otherwise."""
    if not isinstance(value, str):
        raise ValueError("must be an ISO-8601 string with a timezone, e.g. 2024-05-01T12:00:00Z")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except (ValueError, UnicodeError):
        raise ValueError("is not an ISO-8601 date-time, e.g. 2024-05-01T12:00:00.123Z") from None
    if parsed.tzinfo is None:
        raise ValueError("must include a timezone (Z or +00:00)")
    try:
        parsed = parsed.astimezone(_UTC)
    except OverflowError:  # 9999-12-31T23:59:59-23:59 is after the last datetime
        raise ValueError("is out of range") from None
    if parsed < _EARLIEST:
        raise ValueError("is before the year 2000")
    if parsed > now + _FUTURE_SLACK:
        raise ValueError("is more than a day in the future")
    return parsed


# Names are shown on pages, in links and in message headers: no control characters
# (C0, DEL, C1: line breaks, tabs, NUL). No text may hold a lone surrogate, which is not
# Unicode and cannot be stored.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
NAME_FIELDS = frozenset(("event_id", "type", "service", "consumer_group"))


# One search decides the common case (nothing wrong) in a single pass over the text.
_NAME_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_TEXT_UNSAFE = re.compile("[\x00\ud800-\udfff]")


def text_problem(value: str, name_rules: bool) -> str | None:
    """Why ``value`` cannot be stored as a name (``name_rules``) or as text; None if it can."""
    if (_NAME_UNSAFE if name_rules else _TEXT_UNSAFE).search(value) is None:
        return None
    if _SURROGATE.search(value):
        return "must be valid Unicode (it holds a lone surrogate)"
    if "\x00" in value:
        return "must not contain NUL characters"
    if name_rules and _CONTROL.search(value):
        return "must not contain control characters (line breaks, tabs, ...)"
    return None


def _text(raw: dict[str, Any], name: str, index: int, errors: list[FieldError], required: bool) -> str:
    value = raw.get(name)
    if value is None:
        if required:
            errors.append(FieldError(("events", index, name), "field required"))
        return ""
    if not isinstance(value, str):
        errors.append(FieldError(("events", index, name), "must be a string"))
        return ""
    if not value:
        if required:
            errors.append(FieldError(("events", index, name), "must not be empty"))
        return ""
    if len(value) > _MAX_LENGTH[name]:
        errors.append(FieldError(("events", index, name), f"must be at most {_MAX_LENGTH[name]} characters"))
        return value
    problem = text_problem(value, name in NAME_FIELDS)
    if problem is not None:
        errors.append(FieldError(("events", index, name), problem))
    return value


def _integer(raw: dict[str, Any], name: str, index: int, errors: list[FieldError], maximum: int) -> int | None:
    value = raw.get(name)
    if value is None:
        return None
    # bool is an int in Python; JSON true is not a partition number.
    if type(value) is not int:
        if type(value) is float and value.is_integer():
            value = int(value)
        else:
            errors.append(FieldError(("events", index, name), "must be an integer"))
            return None
    if not 0 <= value <= maximum:
        errors.append(FieldError(("events", index, name), f"must be between 0 and {maximum}"))
        return None
    return value


def validate_event(raw: object, index: int, now: dt.datetime, limits: IngestLimits,
                   errors: list[FieldError]) -> EventRow | None:
    """Normalise one report, appending every problem to ``errors`` (None when any)."""
    if not isinstance(raw, dict):
        errors.append(FieldError(("events", index), "must be an object"))
        return None
    before = len(errors)
    unknown = raw.keys() - KNOWN_FIELDS
    for name in sorted(unknown):
        errors.append(FieldError(("events", index, name), "unknown field"))

    event_id = _text(raw, "event_id", index, errors, required=True)
    event_type = _text(raw, "type", index, errors, required=True)
    service = _text(raw, "service", index, errors, required=True)

    stage = raw.get("stage")
    if stage is None:
        errors.append(FieldError(("events", index, "stage"), "field required"))
    elif not isinstance(stage, str) or stage not in STAGES:
        errors.append(FieldError(("events", index, "stage"), f"must be one of {', '.join(Stage.values)}"))

    timestamp = None
    if raw.get("timestamp") is None:
        errors.append(FieldError(("events", index, "timestamp"), "field required"))
    else:
        try:
            timestamp = parse_timestamp(raw["timestamp"], now)
        except ValueError as exc:
            errors.append(FieldError(("events", index, "timestamp"), str(exc)))

    topic = raw.get("topic")
    if topic is None or topic == "":
        topic = ""
    elif not isinstance(topic, str) or not _TOPIC.fullmatch(topic):
        errors.append(FieldError(("events", index, "topic"),
                                 "must be a Kafka topic name: 1-249 of letters, digits, '.', '_', '-'"))
    partition = _integer(raw, "partition", index, errors, _INT32_MAX)
    offset = _integer(raw, "offset", index, errors, _INT64_MAX)
    key = _text(raw, "key", index, errors, required=False)
    consumer_group = _text(raw, "consumer_group", index, errors, required=False)
    schema_version = _integer(raw, "schema_version", index, errors, _INT32_MAX)

    trace_id, span_id, parent_span_id = _trace_fields(raw, index, errors)

    attributes = raw.get("attributes")
    attributes_json = None
    if attributes is not None:
        if not isinstance(attributes, dict):
            errors.append(FieldError(("events", index, "attributes"), "must be an object"))
        elif attributes:
            attributes_json = _attributes_json(attributes, index, errors, limits.max_attributes_bytes)

    if len(errors) != before or timestamp is None or not isinstance(stage, str):
        return None
    return EventRow(
        event_id, event_type, service, stage, timestamp, topic, partition, offset, key, consumer_group,
        schema_version, trace_id, span_id, parent_span_id, attributes_json,
        report_hash(event_id, stage, service, consumer_group, timestamp),
    )


MAX_ATTRIBUTE_DEPTH = 16


def _depth_problem(value: object) -> str | None:
    """Nesting deeper than MAX_ATTRIBUTE_DEPTH (iteratively: no recursion on hostile input)."""
    if not isinstance(value, (dict, list)):
        return None
    # Only containers are stacked: most attributes are one flat object of plain values.
    stack: list[tuple[dict | list, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_ATTRIBUTE_DEPTH:
            return f"must be nested at most {MAX_ATTRIBUTE_DEPTH} levels deep"
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return None


def _attributes_json(attributes: dict[str, Any], index: int, errors: list[FieldError], max_bytes: int) -> str | None:
    loc = ("events", index, "attributes")
    problem = _depth_problem(attributes)
    if problem is not None:
        errors.append(FieldError(loc, problem))
        return None
    try:
        text = _encode_json(attributes)
    except ValueError:
        errors.append(FieldError(loc, "must not contain NaN or Infinity"))
        return None
    except TypeError:  # keys that are not strings (OTLP decoders only give strings)
        errors.append(FieldError(loc, "must be a JSON object"))
        return None
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        errors.append(FieldError(loc, "must be valid Unicode (it holds a lone surrogate)"))
        return None
    if size > max_bytes:
        errors.append(FieldError(loc, f"must be at most {max_bytes} bytes as JSON"))
        return None
    if "\\u0000" in text:  # PostgreSQL's jsonb cannot store NUL
        errors.append(FieldError(loc, "must not contain NUL characters"))
        return None
    return text


def _trace_fields(raw: dict[str, Any], index: int, errors: list[FieldError]) -> tuple[str, str, str]:
    """trace_id, span_id, parent_span_id from ``traceparent`` or the bare ids.

    A traceparent's parent-id is the span that sent the message; it becomes the
    report's span id, so every report about one message shares it.
    """
    header = raw.get("traceparent")
    trace_id = raw.get("trace_id")
    span_id = raw.get("span_id")
    parent_span_id = raw.get("parent_span_id")
    out_trace = out_span = ""
    if header is not None:
        try:
            parsed = tp.parse(header)
        except tp.TraceContextError as exc:
            errors.append(FieldError(("events", index, "traceparent"), str(exc)))
        else:
            out_trace, out_span = parsed.trace_id, parsed.parent_id
    for name, value, check in (("trace_id", trace_id, tp.check_trace_id), ("span_id", span_id, tp.check_span_id),
                               ("parent_span_id", parent_span_id, tp.check_span_id)):
        if value is None:
            continue
        try:
            check(value)
        except tp.TraceContextError as exc:
            errors.append(FieldError(("events", index, name), str(exc)))
    if header is None:
        if trace_id is not None and span_id is None:
            errors.append(FieldError(("events", index, "span_id"), "required with trace_id"))
        elif span_id is not None and trace_id is None:
            errors.append(FieldError(("events", index, "trace_id"), "required with span_id"))
        out_trace, out_span = trace_id or "", span_id or ""
    else:
        if trace_id is not None and out_trace and trace_id != out_trace:
            errors.append(FieldError(("events", index, "trace_id"), "does not match traceparent"))
        if span_id is not None and out_span and span_id != out_span:
            errors.append(FieldError(("events", index, "span_id"), "does not match traceparent"))
    if parent_span_id is not None and not (out_trace or trace_id):
        errors.append(FieldError(("events", index, "parent_span_id"), "needs traceparent or trace_id"))
    return out_trace, out_span, parent_span_id or ""


def validate_payload(payload: object, now: dt.datetime, limits: IngestLimits) -> list[EventRow]:
    """Every report of a request body, normalised; IngestError (422/413/400) otherwise."""
    if not isinstance(payload, dict):
        raise IngestError(400, "body must be a JSON object like {\"events\": [...]}")
    events = payload.get("events")
    if events is None:
        raise IngestError(422, "events: field required", [FieldError(("events",), "field required")])
    if not isinstance(events, list):
        raise IngestError(422, "events must be a list", [FieldError(("events",), "must be a list")])
    if len(events) > limits.max_events:
        raise IngestError(413, f"at most {limits.max_events} events per request, got {len(events)}")
    unknown = payload.keys() - {"events"}
    errors: list[FieldError] = [FieldError((name,), "unknown field") for name in sorted(unknown)]
    rows: list[EventRow] = []
    for index, raw in enumerate(events):
        row = validate_event(raw, index, now, limits, errors)
        if row is not None:
            rows.append(row)
    if errors:
        bad = sorted({error.loc[1] for error in errors if len(error.loc) > 1 and isinstance(error.loc[1], int)})
        shown = ", ".join(str(i) for i in bad[:20]) + (" ..." if len(bad) > 20 else "")
        detail = f"{len(bad)} invalid event(s) at index {shown}; nothing was stored" if bad else \
            "invalid request; nothing was stored"
        raise IngestError(422, detail, errors)
    return rows


def unique_rows(rows: Iterable[EventRow]) -> list[EventRow]:
    """Rows without repeats of one report, sorted by hash so concurrent writers lock
    rows in one order (no deadlocks between overlapping batches)."""
    by_hash = {row.report_hash: row for row in rows}
    return [by_hash[h] for h in sorted(by_hash)]
