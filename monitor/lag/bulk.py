"""One bulk write per table for a poll cycle's samples.

A cycle of a big cluster writes tens of thousands of rows; Django's ``bulk_create``
spends most of that time preparing each value. On PostgreSQL the rows go through one
binary ``COPY`` instead (several times faster), updates through a ``COPY`` into a staging
table and one ``UPDATE ... FROM`` it; elsewhere (the demo's SQLite) through ``bulk_create`` and
one prepared ``UPDATE`` run per row.
"""
from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction

BATCH_SIZE = 2000


def insert_rows(model: type[models.Model], columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert plain tuples of ``columns`` (attribute names, e.g. ``group_id``) into ``model``'s
    table; no rows, no statement."""
    rows = list(rows)
    if rows:
        with row_writer(model, columns) as write:
            for row in rows:
                write(row)


def concrete_field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    """A stored column's field (``get_field`` also returns relations without columns)."""
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field) or field.column is None:
        raise ValueError(f"{model.__name__}.{name} is not a stored column")
    return field


@contextmanager
def row_writer(model: type[models.Model], columns: Sequence[str]) -> Iterator[Callable[[Sequence[Any]], None]]:
    """``write(row)`` for one row at a time into one statement: on PostgreSQL a binary
    ``COPY``, which stores the rows while the caller computes the next ones; elsewhere one
    ``bulk_create`` at the end. An exception inside the block aborts the statement."""
    if connection.vendor != "postgresql":
        pending: list[Sequence[Any]] = []
        yield pending.append
        if pending:
            model._default_manager.bulk_create([model(**dict(zip(columns, row))) for row in pending], batch_size=BATCH_SIZE)
        return
    fields = [concrete_field(model, name) for name in columns]  # attribute names resolve too
    with connection.cursor() as cursor, _binary_copy(cursor, connection.ops.quote_name(model._meta.db_table),
                                                     fields) as write:
        yield write


def copy_types(fields: Sequence[models.Field[Any, Any]]) -> list[str]:
    """The type names a binary ``COPY`` of ``fields``' columns sends: each column's own,
    without its modifier (binary values need exact types: "varchar(255)" -> "varchar")."""
    return [str(field.db_type(connection)).split("(")[0] for field in fields]


@contextmanager
def _binary_copy(cursor: Any, table: str, fields: Sequence[models.Field[Any, Any]]
                 ) -> Iterator[Callable[[Sequence[Any]], None]]:
    """``write(row)`` of ``fields``' columns into ``table`` (quoted) by one binary ``COPY``."""
    quoted = ", ".join(connection.ops.quote_name(str(field.column)) for field in fields)
    statement = f"COPY {table} ({quoted}) FROM STDIN (FORMAT BINARY)"
    started = time.monotonic()
    with cursor.cursor.copy(statement) as copy:
        copy.set_types(copy_types(fields))
        yield copy.write_row
    if connection.queries_logged:
        # COPY goes around Django's cursor wrapper; logged here so that query counts
        # (CaptureQueriesContext, the debug toolbar) see every statement of a cycle.
        connection.queries_log.append({"sql": statement, "time": f"{time.monotonic() - started:.3f}"})


_AS_IS = (models.IntegerField, models.FloatField, models.CharField, models.TextField, models.BooleanField,
          models.DateTimeField, models.BinaryField)
"""Fields whose Python values the driver takes as they are (no per-value preparation)."""


def update_rows(model: type[models.Model], objs: Sequence[models.Model], fields: Sequence[str]) -> None:
    """Write ``fields`` of ``objs`` back in one statement.

    ``bulk_update`` builds a CASE expression per field and row, which costs more than
    the rest of a cycle. PostgreSQL: the new values go by binary ``COPY`` into a
    session-private table of those columns (created once per connection, emptied after each
    use), then one ``UPDATE ... FROM`` it; psycopg formats the rows in C. SQLite
    (the demo): one prepared UPDATE run for every row, in the database's own loop.
    """
    if not objs:
        return
    # The connection itself, not the proxy: JSON fields look it up for every value.
    db = connections[DEFAULT_DB_ALIAS]
    qn = db.ops.quote_name
    model_fields = [concrete_field(model, name) for name in fields]
    pk = model._meta.pk
    table = qn(model._meta.db_table)
    if db.vendor != "postgresql":
        assignments = ", ".join(f"{qn(str(field.column))} = %s" for field in model_fields)
        with db.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {table} SET {assignments} WHERE {qn(pk.column)} = %s",
                [[field.get_db_prep_save(getattr(obj, field.attname), db) for field in model_fields]
                 + [obj.pk] for obj in objs])
        return
    columns = [pk, *model_fields]
    types = [str(field.db_type(db)) for field in columns]
    quoted = ", ".join(qn(str(field.column)) for field in columns)
    # One staging table per set of columns and their types: a table made before a
    # migration changed a column is never reused for it.
    shape = zlib.crc32("\0".join([str(model._meta.db_table), quoted, *types]).encode())
    staging = qn(f"_update_{shape:08x}")
    as_is = [isinstance(field, _AS_IS) for field in model_fields]
    with transaction.atomic(using=db.alias), db.cursor() as cursor:  # a failure rolls the staged rows back too
        # CREATE TABLE AS copies no constraints: the UPDATE is what checks the values.
        cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} AS SELECT {quoted} FROM {table} WITH NO DATA")
        with _binary_copy(cursor, staging, columns) as write:
            for obj in objs:
                write([obj.pk] + [getattr(obj, field.attname) if plain
                                  else field.get_db_prep_save(getattr(obj, field.attname), db)
                                  for field, plain in zip(model_fields, as_is)])
        assignments = ", ".join(f"{qn(str(field.column))} = v.{qn(str(field.column))}" for field in model_fields)
        cursor.execute(f"UPDATE {table} SET {assignments} FROM {staging} AS v "
                       f"WHERE {table}.{qn(pk.column)} = v.{qn(pk.column)}")
        cursor.execute(f"TRUNCATE {staging}")  # the next update, in this transaction or another, starts empty
