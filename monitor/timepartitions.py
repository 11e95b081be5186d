"""Native declarative range partitioning by time (PostgreSQL), one daily partition a day.

The contract, shared by every time-series table that opts in (``register(table, column)``):

- A partitioned table ``T`` is ``PARTITION BY RANGE (column)`` with daily partitions
  ``T_pYYYYMMDD`` covering ``[day 00:00 UTC, next day 00:00 UTC)`` and one DEFAULT partition
  ``T_pdefault`` (created with the table), so a row outside the created days is never
  refused: it waits in the default partition until its day's partition is created, which
  moves it there (:func:`ensure_partitions`).
- Retention drops whole partitions (:func:`drop_partitions_before`): no mass ``DELETE``, no
  bloat, no long locks. Rows left in the default partition are the caller's to delete.
- PostgreSQL requires the partition column in every primary key and unique constraint, so a
  converted table's primary key is e.g. ``(id, timestamp)``; the Django model may keep ``id``
  as its primary key (ids stay unique: they come from one identity sequence).
- On SQLite (the demo) and for plain tables every function is a no-op: ``is_partitioned`` is
  False, the others return ``[]`` / ``{}``, so callers need no branch of their own beyond
  their SQLite fallback (e.g. chunked deletes).

Beat's ``ensure_time_partitions`` task calls :func:`ensure_registered` hourly (and workers once
at start), so tomorrow's partition exists long before midnight.
"""
from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ProjectState

UTC = dt.timezone.utc
DEFAULT_SUFFIX = "_pdefault"
_DAY_SUFFIX = re.compile(r"_p(\d{8})$")

_registry_lock = threading.Lock()
_registry: dict[str, str] = {}


# -- registry ------------------------------------------------------------------------

def register(table: str, column: str) -> None:
    """Declare ``table`` as partitioned by time on ``column`` (a model module calls this)."""
    with _registry_lock:
        _registry[table] = column


def registered() -> dict[str, str]:
    """Table -> partition column of every registered table."""
    with _registry_lock:
        return dict(_registry)


def ensure_registered(now: dt.datetime, days_ahead: int = 2, using: str = DEFAULT_DB_ALIAS) -> dict[str, list[str]]:
    """:func:`ensure_partitions` for every registered table; table -> partitions created."""
    return {table: ensure_partitions(table, now, days_ahead=days_ahead, using=using)
            for table in sorted(registered())}


# -- names and days ------------------------------------------------------------------

def day_of(moment: dt.datetime) -> dt.date:
    """The UTC day of ``moment`` (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date()


def day_start(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)


def partition_name(table: str, day: dt.date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def default_partition_name(table: str) -> str:
    return f"{table}{DEFAULT_SUFFIX}"


def partition_day(table: str, name: str) -> dt.date | None:
    """The day a daily partition of ``table`` covers, from its name (None: not a daily one)."""
    if not name.startswith(f"{table}_p"):
        return None
    match = _DAY_SUFFIX.search(name)
    if match is None or len(name) != len(table) + 10:
        return None
    return dt.datetime.strptime(match.group(1), "%Y%m%d").date()


# -- inspection ----------------------------------------------------------------------

def _connection(using: str) -> BaseDatabaseWrapper:
    return connections[using]


def is_partitioned(table: str, using: str = DEFAULT_DB_ALIAS) -> bool:
    """True when ``table`` is a partitioned table on PostgreSQL (False on SQLite, for plain
    tables and for tables that do not exist)."""
    connection = _connection(using)
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(%s))",
                       [connection.ops.quote_name(table)])
        row = cursor.fetchone()
    return bool(row and row[0])


def partitions(table: str, using: str = DEFAULT_DB_ALIAS) -> dict[str, str]:
    """Partition name -> its bound (``FOR VALUES FROM (...) TO (...)`` or ``DEFAULT``)."""
    connection = _connection(using)
    if not is_partitioned(table, using):
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT child.relname, pg_get_expr(child.relpartbound, child.oid) FROM pg_inherits "
            "JOIN pg_class child ON child.oid = pg_inherits.inhrelid "
            "WHERE pg_inherits.inhparent = to_regclass(%s) ORDER BY child.relname",
            [connection.ops.quote_name(table)],
        )
        return {name: bound for name, bound in cursor.fetchall()}


def partition_sizes(table: str, using: str = DEFAULT_DB_ALIAS) -> dict[str, int]:
    """Bytes on disk (table, indexes, TOAST) of each partition; a plain PostgreSQL table is
    one entry under its own name; {} on SQLite."""
    connection = _connection(using)
    if connection.vendor != "postgresql":
        return {}
    names = list(partitions(table, using)) or [table]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, pg_total_relation_size(to_regclass(quote_ident(name))) "
            "FROM unnest(%s::text[]) AS name",
            [names],
        )
        return {name: int(size) for name, size in cursor.fetchall() if size is not None}


def total_size(table: str, using: str = DEFAULT_DB_ALIAS) -> int:
    """Bytes of the whole table (every partition, their indexes); 0 on SQLite."""
    return sum(partition_sizes(table, using).values())


def _default_partition(table: str, bounds: Mapping[str, str]) -> str | None:
    for name, bound in bounds.items():
        if bound == "DEFAULT":
            return name
    return None


def _columns(cursor: Any, table: str) -> list[str]:
    cursor.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum", [_quote(cursor, table)])
    return [name for (name,) in cursor.fetchall()]


def _quote(cursor: Any, name: str) -> str:
    return str(cursor.db.ops.quote_name(name))


# -- creating and dropping -----------------------------------------------------------

def ensure_partitions(table: str, now: dt.datetime, days_ahead: int = 2, days_back: int = 0,
                      using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Create the missing daily partitions of [day(now) - days_back, day(now) + days_ahead]
    (UTC days) and return their names; [] on SQLite or when ``table`` is not partitioned.

    Rows already waiting in the default partition for a day created here are moved into it
    in the same transaction (the default partition is locked against writes meanwhile, so
    none slips in between the move and the attach)."""
    today = day_of(now)
    days = [today + dt.timedelta(days=offset) for offset in range(-days_back, days_ahead + 1)]
    return create_day_partitions(table, days, using=using)


def create_day_partitions(table: str, days: Sequence[dt.date], using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Create the daily partitions of ``days`` that are missing (see :func:`ensure_partitions`)."""
    connection = _connection(using)
    if not is_partitioned(table, using):
        return []
    bounds = partitions(table, using)
    column = _partition_column(table, using)
    missing = sorted({day for day in days if partition_name(table, day) not in bounds})
    created: list[str] = []
    for day in missing:
        with transaction.atomic(using=using), connection.cursor() as cursor:
            if _create_day_partition(cursor, table, column, day, _default_partition(table, bounds)):
                created.append(partition_name(table, day))
    return created


def _partition_column(table: str, using: str) -> str:
    connection = _connection(using)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.attname FROM pg_partitioned_table p JOIN pg_attribute a "
            "ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] WHERE p.partrelid = to_regclass(%s)",
            [connection.ops.quote_name(table)])
        row = cursor.fetchone()
    if row is None:
        raise ValueError(f"{table} is not partitioned by a single column")
    return str(row[0])


def _create_day_partition(cursor: Any, table: str, column: str, day: dt.date, default: str | None) -> bool:
    name = partition_name(table, day)
    quoted_table, quoted_name, quoted_column = _quote(cursor, table), _quote(cursor, name), _quote(cursor, column)
    start, end = day_start(day), day_start(day + dt.timedelta(days=1))
    # A concurrent ensure may have created it since the caller looked: the lock on the
    # parent below serialises creators, and this second look sees the winner's partition.
    cursor.execute(f"LOCK TABLE {quoted_table} IN SHARE UPDATE EXCLUSIVE MODE")
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [quoted_name])
    if cursor.fetchone()[0]:
        return False
    # Built beside the table, then attached: ATTACH takes a weaker lock on the parent than
    # CREATE TABLE ... PARTITION OF, so ingest into other days carries on meanwhile.
    cursor.execute(f"CREATE TABLE {quoted_name} (LIKE {quoted_table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                   f"INCLUDING STORAGE)")
    cursor.execute(f"ALTER TABLE {quoted_name} ADD CONSTRAINT {_quote(cursor, name + '_range')} "
                   f"CHECK ({quoted_column} IS NOT NULL AND {quoted_column} >= %s AND {quoted_column} < %s)",
                   [start, end])
    if default is not None:
        quoted_default = _quote(cursor, default)
        # Writers into the default partition wait until the move is committed.
        cursor.execute(f"LOCK TABLE {quoted_default} IN SHARE ROW EXCLUSIVE MODE")
        columns = ", ".join(_quote(cursor, c) for c in _columns(cursor, table))
        cursor.execute(
            f"WITH moved AS (DELETE FROM {quoted_default} WHERE {quoted_column} >= %s AND {quoted_column} < %s "
            f"RETURNING {columns}) INSERT INTO {quoted_name} ({columns}) SELECT {columns} FROM moved",
            [start, end])
    # The CHECK constraint proves the range, so ATTACH skips scanning the new partition.
    cursor.execute(f"ALTER TABLE {quoted_table} ATTACH PARTITION {quoted_name} FOR VALUES FROM (%s) TO (%s)",
                   [start, end])
    cursor.execute(f"ALTER TABLE {quoted_name} DROP CONSTRAINT {_quote(cursor, name + '_range')}")
    return True


def partitions_before(table: str, cutoff: dt.datetime, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """The daily partitions whose whole day ends at or before ``cutoff`` (what
    :func:`drop_partitions_before` would drop), oldest first."""
    if cutoff.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=UTC)
    days = {name: partition_day(table, name) for name in partitions(table, using)}
    return sorted(name for name, day in days.items()
                  if day is not None and day_start(day + dt.timedelta(days=1)) <= cutoff)


def drop_partitions_before(table: str, cutoff: dt.datetime, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Drop every daily partition whose whole day ends at or before ``cutoff`` (never the
    default partition); return the names dropped; [] on SQLite or for a plain table."""
    connection = _connection(using)
    doomed = partitions_before(table, cutoff, using)
    for name in doomed:
        with transaction.atomic(using=using), connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {connection.ops.quote_name(name)}")
    return doomed


# -- migrations ----------------------------------------------------------------------

def create_partitioned_default(schema_editor: BaseDatabaseSchemaEditor, table: str) -> None:
    """Create ``table``'s DEFAULT partition (for a migration that creates a partitioned table)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    schema_editor.execute(f"CREATE TABLE IF NOT EXISTS {quote(default_partition_name(table))} "
                          f"PARTITION OF {quote(table)} DEFAULT")


def convert_to_partitioned(schema_editor: BaseDatabaseSchemaEditor, table: str, column: str,
                           primary_key: Sequence[str],
                           unique: Sequence[Sequence[str]] | Mapping[str, Sequence[str]] = (),
                           now: dt.datetime | None = None, days_ahead: int = 2) -> None:
    """Turn the plain table ``table`` into one partitioned by range of ``column``, carrying
    every row over; nothing on SQLite or when it already is partitioned.

    Columns, defaults, NOT NULL, CHECK constraints, identity (its sequence continues past the
    highest id) and every non-unique index keep their names and definitions. The primary key
    becomes ``primary_key`` and the unique constraints become ``unique`` (each must contain
    ``column``: PostgreSQL requires the partition key in them); a mapping gives each its name,
    a plain list names them ``{table}_{columns}_uniq``. A daily partition is created for each
    day present in the data, the default partition, and, given ``now``, the days up to
    ``days_ahead`` after it. Runs inside the migration's transaction: all or nothing.
    """
    connection = schema_editor.connection
    if connection.vendor != "postgresql" or is_partitioned(table, connection.alias):
        return
    named_unique = _named_unique(table, unique)
    if column not in primary_key:
        raise ValueError(f"the primary key of {table} must contain the partition column {column}")
    for name, columns in named_unique.items():
        if column not in columns:
            raise ValueError(f"unique constraint {name} of {table} must contain the partition column {column}")
    _rebuild(schema_editor, table, column, primary_key, named_unique)
    if now is not None:
        ensure_partitions(table, now, days_ahead=days_ahead, using=connection.alias)


def convert_to_plain(schema_editor: BaseDatabaseSchemaEditor, table: str, primary_key: Sequence[str],
                     unique: Sequence[Sequence[str]] | Mapping[str, Sequence[str]] = ()) -> None:
    """The reverse of :func:`convert_to_partitioned` (a migration's backwards step): one plain
    table with every row, the given primary key and unique constraints, the same indexes."""
    connection = schema_editor.connection
    if connection.vendor != "postgresql" or not is_partitioned(table, connection.alias):
        return
    _rebuild(schema_editor, table, None, primary_key, _named_unique(table, unique))


class UnlessPostgreSQL(Operation):
    """A migration operation whose schema change runs on every database but PostgreSQL
    (where :func:`convert_to_partitioned` builds the table instead); the model state changes
    everywhere alike. Wrap e.g. the ``AlterField`` dropping a unique that cannot survive
    partitioning, and the ``AddConstraint`` of its replacement."""

    reversible = True

    def __init__(self, operation: Operation) -> None:
        self.operation = operation

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return (self.__class__.__qualname__, [self.operation], {})

    def state_forwards(self, app_label: str, state: ProjectState) -> None:
        self.operation.state_forwards(app_label, state)

    def database_forwards(self, app_label: str, schema_editor: BaseDatabaseSchemaEditor,
                          from_state: ProjectState, to_state: ProjectState) -> None:
        if schema_editor.connection.vendor != "postgresql":
            self.operation.database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: BaseDatabaseSchemaEditor,
                           from_state: ProjectState, to_state: ProjectState) -> None:
        if schema_editor.connection.vendor != "postgresql":
            self.operation.database_backwards(app_label, schema_editor, from_state, to_state)

    def describe(self) -> str:
        return f"{self.operation.describe()} (not on PostgreSQL)"


def _named_unique(table: str, unique: Sequence[Sequence[str]] | Mapping[str, Sequence[str]]) -> dict[str, Sequence[str]]:
    if isinstance(unique, Mapping):
        return dict(unique)
    return {_unique_name(table, columns): columns for columns in unique}


def _rebuild(schema_editor: BaseDatabaseSchemaEditor, table: str, column: str | None,
             primary_key: Sequence[str], named_unique: Mapping[str, Sequence[str]]) -> None:
    """Copy ``table`` into a new table (partitioned by ``column``, or plain when None) and
    put it in the old one's place with the same columns, identity and plain indexes."""
    quote = schema_editor.quote_name
    staging = f"{table}__rebuilt"
    with schema_editor.connection.cursor() as cursor:
        columns = _columns(cursor, table)
        identity = _identity_columns(cursor, table)
        owned_sequences = _owned_sequences(cursor, table)
        indexes = _plain_indexes(cursor, table)
        days: list[dt.date] = []
        if column is not None:
            cursor.execute(f"SELECT DISTINCT ({quote(column)} AT TIME ZONE 'UTC')::date "
                           f"FROM {quote(table)} WHERE {quote(column)} IS NOT NULL")
            days = sorted(day for (day,) in cursor.fetchall())
    column_list = ", ".join(quote(c) for c in columns)
    partitioning = f" PARTITION BY RANGE ({quote(column)})" if column is not None else ""
    schema_editor.execute(f"CREATE TABLE {quote(staging)} (LIKE {quote(table)} INCLUDING DEFAULTS "
                          f"INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS){partitioning}")
    if column is not None:
        schema_editor.execute(f"CREATE TABLE {quote(default_partition_name(table))} "
                              f"PARTITION OF {quote(staging)} DEFAULT")
        for day in days:
            schema_editor.execute(
                f"CREATE TABLE {quote(partition_name(table, day))} PARTITION OF {quote(staging)} "
                f"FOR VALUES FROM (%s) TO (%s)", [day_start(day), day_start(day + dt.timedelta(days=1))])
    # Rows first, indexes after: one sorted build per index instead of row-by-row upkeep.
    schema_editor.execute(f"INSERT INTO {quote(staging)} ({column_list}) SELECT {column_list} FROM {quote(table)}")
    # A serial column's sequence would be dropped with the old table: the new one owns it.
    for sequence, owner_column in owned_sequences:
        schema_editor.execute(f"ALTER SEQUENCE {sequence} OWNED BY {quote(staging)}.{quote(owner_column)}")
    schema_editor.execute(f"DROP TABLE {quote(table)}")
    schema_editor.execute(f"ALTER TABLE {quote(staging)} RENAME TO {quote(table)}")
    for identity_column, kind in identity:
        generated = "ALWAYS" if kind == "a" else "BY DEFAULT"
        schema_editor.execute(f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(identity_column)} "
                              f"ADD GENERATED {generated} AS IDENTITY")
        schema_editor.execute(
            f"SELECT setval(pg_get_serial_sequence(%s, %s), "
            f"COALESCE((SELECT MAX({quote(identity_column)}) FROM {quote(table)}), 0) + 1, false)",
            [quote(table), identity_column])
    schema_editor.execute(f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(table + '_pkey')} "
                          f"PRIMARY KEY ({', '.join(quote(c) for c in primary_key)})")
    for name, unique_columns in named_unique.items():
        schema_editor.execute(f"ALTER TABLE {quote(table)} ADD CONSTRAINT {quote(name)} "
                              f"UNIQUE ({', '.join(quote(c) for c in unique_columns)})")
    for definition in indexes:
        # A partitioned table's index reads "ON ONLY t": built on the new table, it must
        # cover every partition (or the one plain table).
        schema_editor.execute(definition.replace(" ON ONLY ", " ON ", 1))


def _unique_name(table: str, columns: Sequence[str]) -> str:
    return f"{table}_{'_'.join(columns)}_uniq"[:63]


def _identity_columns(cursor: Any, table: str) -> list[tuple[str, str]]:
    cursor.execute("SELECT attname, attidentity FROM pg_attribute WHERE attrelid = to_regclass(%s) "
                   "AND attnum > 0 AND NOT attisdropped AND attidentity <> '' ORDER BY attnum",
                   [_quote(cursor, table)])
    return [(name, kind) for name, kind in cursor.fetchall()]


def _owned_sequences(cursor: Any, table: str) -> list[tuple[str, str]]:
    """(qualified sequence, column) of sequences owned by a column (serial), not identity."""
    cursor.execute(
        "SELECT seq.oid::regclass::text, a.attname FROM pg_depend d "
        "JOIN pg_class seq ON seq.oid = d.objid AND seq.relkind = 'S' "
        "JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
        "WHERE d.refobjid = to_regclass(%s) AND d.deptype = 'a'",
        [_quote(cursor, table)])
    return [(sequence, name) for sequence, name in cursor.fetchall()]


def _plain_indexes(cursor: Any, table: str) -> list[str]:
    """``CREATE INDEX`` statements of the indexes that back no constraint (the primary key
    and unique constraints are declared anew)."""
    cursor.execute(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid "
        "WHERE i.indrelid = to_regclass(%s) AND c.oid IS NULL AND NOT i.indisunique "
        "ORDER BY i.indexrelid",
        [_quote(cursor, table)])
    return [definition for (definition,) in cursor.fetchall()]
