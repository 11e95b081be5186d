"""Writing event reports: idempotent, exact counts, a few statements per batch.

PostgreSQL: the batch is ``COPY``-ed into a session-private temporary table, then
``INSERT ... SELECT ... ON CONFLICT (timestamp, report_hash) DO NOTHING`` moves it into
the events table in one statement. The row count is exactly the reports this
request stored, also when identical retries race (the unique index makes the second
writer wait, then skip). COPY avoids building and parsing a 17,000-parameter statement;
it measured about twice as fast as a multi-row INSERT of the same batch. The COPY is
binary: PostgreSQL parses no text, and the report hash and attributes go as their wire
bytes (:func:`_binary_types`), ~2.5 µs less CPU an event between the two processes.

Other databases (SQLite in the demo): in one transaction, look up which hashes exist,
then ``bulk_create(ignore_conflicts=True)`` the rest; SQLite's IMMEDIATE transactions
serialise writers, so the count is exact there too.

Services and event types are registered in bulk; a process-local cache skips names it
registered in the last minute, so a steady stream costs no extra writes, and
:func:`unknown_names` (the new-name budget's lookup) skips services, types and topics this
process stored in the last minute, so it costs no queries either.
"""
from __future__ import annotations

import datetime as dt
import functools
from typing import Any
import threading
import time
from collections.abc import Iterable, Sequence

from django.db import connection, transaction

from monitor.events.config import IngestLimits
from monitor.events.ingest import EventRow, IngestResult, unique_rows, validate_payload
from monitor.lag.bulk import concrete_field, copy_types
from monitor.models import Event, EventType, Service

REGISTRY_REFRESH_SECONDS = 60.0
_SQLITE_CHUNK = 400  # stays below SQLite's bound-parameter limit

_registry_lock = threading.Lock()
_registry_seen: dict[tuple[str, str], float] = {}

_COLUMNS = ("event_id", "type", "service", "stage", "timestamp", "topic", "partition", "offset", "key",
            "consumer_group", "schema_version", "trace_id", "span_id", "parent_span_id", "attributes",
            "report_hash")
_BATCH_TABLE = "event_ingest_batch"


def store_rows(rows: Sequence[EventRow], received_at: dt.datetime) -> IngestResult:
    """Store normalised reports; a report already stored counts as a duplicate."""
    if not rows:
        return IngestResult(accepted=0, duplicates=0)
    unique = unique_rows(rows)
    if connection.vendor == "postgresql":
        inserted = _insert_postgresql(unique, received_at)
    else:
        inserted = _insert_generic(unique, received_at)
    register_names(((row.service, row.type) for row in unique), received_at)
    _remember_topics({row.topic for row in unique if row.topic})
    return IngestResult(accepted=inserted, duplicates=len(rows) - inserted)


def _column_list() -> str:
    quote = connection.ops.quote_name
    return ", ".join(quote(c) for c in (*_COLUMNS, "received_at"))


_WIRE_AS_BYTES = {"attributes": "jsonb", "report_hash": "uuid"}
"""Columns sent as the bytes of their binary forms, with the type each must have."""

if _COLUMNS != EventRow._fields or _COLUMNS[-2:] != tuple(_WIRE_AS_BYTES):
    raise ImportError("EventRow must hold the events table's columns in _COLUMNS' order, attributes and "
                      "report_hash last (the binary COPY sends those two as bytes)")
_HEAD = len(_COLUMNS) - 2


@functools.cache
def _binary_types() -> list[str]:
    """The types a binary ``COPY`` of :data:`_COLUMNS` and ``received_at`` sends: each
    column's own, except the attributes and report hash, which go as the bytes of their
    binary forms (jsonb's version byte 1 and the JSON text; a uuid's 16 bytes), so
    neither is parsed twice (the attributes as JSON, the hash as a ``UUID`` object)."""
    names = (*_COLUMNS, "received_at")
    types = copy_types([concrete_field(Event, name) for name in names])
    for name, kind in zip(names, types):
        if name in _WIRE_AS_BYTES and kind != _WIRE_AS_BYTES[name]:
            raise RuntimeError(f"events.{name} is {kind}, not {_WIRE_AS_BYTES[name]}: its wire bytes would be wrong")
    return ["bytea" if name in _WIRE_AS_BYTES else kind for name, kind in zip(names, types)]


def _insert_postgresql(rows: Sequence[EventRow], received_at: dt.datetime) -> int:
    quote = connection.ops.quote_name
    columns = _column_list()
    table = quote(Event._meta.db_table)
    # Inside a caller's transaction (tests, the tap) ON COMMIT does not empty the batch
    # table between calls, so it is emptied explicitly.
    nested = connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        # Created once per database session; ON COMMIT DELETE ROWS empties it cheaply.
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {_BATCH_TABLE} ON COMMIT DELETE ROWS AS "
            f"SELECT {columns} FROM {table} WITH NO DATA"
        )
        with cursor.copy(f"COPY {_BATCH_TABLE} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_binary_types())
            write, from_hex, head = copy.write_row, bytes.fromhex, _HEAD
            for row in rows:
                attributes = row.attributes
                write((*row[:head], None if attributes is None else b"\x01" + attributes.encode(),
                       from_hex(row.report_hash), received_at))
        # Sorted by the unique key: concurrent overlapping batches lock rows in one order, no deadlock.
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {_BATCH_TABLE} "
            f"ORDER BY {quote('timestamp')}, {quote('report_hash')} "
            f"ON CONFLICT ({quote('timestamp')}, {quote('report_hash')}) DO NOTHING"
        )
        inserted = cursor.rowcount  # the rows inserted: a conflict skipped is not counted
        if nested:
            cursor.execute(f"DELETE FROM {_BATCH_TABLE}")
    return inserted


def _insert_generic(rows: Sequence[EventRow], received_at: dt.datetime) -> int:
    import json

    with transaction.atomic():
        existing: set[str] = set()
        for start in range(0, len(rows), _SQLITE_CHUNK):
            chunk = rows[start:start + _SQLITE_CHUNK]
            # The unique key (timestamp, report_hash) leads with the timestamp: look up by both.
            existing.update(value.hex for value in Event.objects.filter(
                timestamp__in={row.timestamp for row in chunk}, report_hash__in=[row.report_hash for row in chunk],
            ).values_list("report_hash", flat=True))
        new = [row for row in rows if row.report_hash not in existing]
        Event.objects.bulk_create(
            [Event(**{**row._asdict(), "attributes": json.loads(row.attributes) if row.attributes else None},
                   received_at=received_at) for row in new],
            ignore_conflicts=True,
        )
    return len(new)


def register_names(pairs: Iterable[tuple[str, str]], seen_at: dt.datetime) -> None:
    """Create unknown services and event types, move ``last_seen_at`` of known ones."""
    clock = time.monotonic()
    services: set[str] = set()
    types: set[str] = set()
    with _registry_lock:
        for service, event_type in pairs:
            if clock - _registry_seen.get(("service", service), -1e9) > REGISTRY_REFRESH_SECONDS:
                services.add(service)
            if clock - _registry_seen.get(("type", event_type), -1e9) > REGISTRY_REFRESH_SECONDS:
                types.add(event_type)
    if not services and not types:
        return
    _upsert_names(Service, sorted(services), seen_at)
    _upsert_names(EventType, sorted(types), seen_at)
    with _registry_lock:
        _registry_seen.update({("service", name): clock for name in services})
        _registry_seen.update({("type", name): clock for name in types})


def _upsert_names(model: type[Service] | type[EventType], names: list[str], seen_at: dt.datetime) -> None:
    if not names:
        return
    rows: list[Any] = [model(name=name, first_seen_at=seen_at, last_seen_at=seen_at) for name in names]
    model.objects.bulk_create(
        rows,
        update_conflicts=True, unique_fields=["name"], update_fields=["last_seen_at"],
    )


def _remember_topics(topics: set[str]) -> None:
    clock = time.monotonic()
    with _registry_lock:
        _registry_seen.update({("topic", topic): clock for topic in topics})


def _recently_stored(kind: str, names: set[str]) -> set[str]:
    clock = time.monotonic()
    with _registry_lock:
        return {name for name in names
                if clock - _registry_seen.get((kind, name), -1e9) <= REGISTRY_REFRESH_SECONDS}


def forget_registry_cache() -> None:
    """Forget which names were registered (tests roll the database back between cases)."""
    with _registry_lock:
        _registry_seen.clear()


def ingest_payload(payload: object, now: dt.datetime, limits: IngestLimits | None = None) -> IngestResult:
    """Validate a decoded request body and store it; the whole batch or nothing."""
    limits = limits or IngestLimits.from_settings()
    rows = validate_payload(payload, now, limits)
    return store_rows(rows, now)


def unknown_names(rows: Sequence[EventRow]) -> dict[str, set[str]]:
    """The services, event types and topics of ``rows`` never reported before (three
    indexed lookups): what a per-token budget of new names counts."""
    services = {row.service for row in rows}
    types = {row.type for row in rows}
    topics = {row.topic for row in rows if row.topic}
    # Names this process stored within the last minute are known: no query for them.
    services -= _recently_stored("service", services)
    types -= _recently_stored("type", types)
    topics -= _recently_stored("topic", topics)
    known_services = set(Service.objects.filter(name__in=services).values_list("name", flat=True))
    known_types = set(EventType.objects.filter(name__in=types).values_list("name", flat=True))
    # One index probe per topic (a DISTINCT over the events would read them all); a batch
    # with more topics than any real one holds is counted as all new.
    known_topics = set() if len(topics) > 100 else {
        topic for topic in topics if Event.objects.filter(topic=topic).exists()}
    return {"services": services - known_services, "event_types": types - known_types,
            "topics": topics - known_topics}
