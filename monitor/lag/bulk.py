"""One bulk write per table for a poll cycle's samples.

A cycle of a big cluster writes tens of thousands of rows; Django's ``bulk_create``
spends most of that time preparing each value. On PostgreSQL the rows go through one
``COPY`` instead (several times faster); elsewhere (the demo's SQLite) through
``bulk_create``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection, models

BATCH_SIZE = 2000


def insert_rows(model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert plain tuples of ``columns`` (attribute names, e.g. ``group_id``) into ``model``'s table."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create([model(**dict(zip(columns, row))) for row in rows], batch_size=BATCH_SIZE)
        return
    fields = [model._meta.get_field(name) for name in columns]  # attribute names resolve too
    quoted = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def update_rows(model: type[models.Model], objs: Sequence[models.Model], fields: Sequence[str]) -> None:
    """Write ``fields`` of ``objs`` back in one statement (``bulk_update`` elsewhere).

    ``bulk_update`` builds a CASE expression per field and row, which costs more than
    the rest of a cycle; PostgreSQL takes ``UPDATE ... FROM (VALUES ...)`` instead.
    """
    if not objs:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_update(objs, fields, batch_size=BATCH_SIZE)
        return
    qn = connection.ops.quote_name
    model_fields = [model._meta.get_field(name) for name in fields]
    pk = model._meta.pk
    casts = [f"%s::{pk.db_type(connection)}"] + [f"%s::{field.db_type(connection)}" for field in model_fields]
    row_sql = "(" + ", ".join(casts) + ")"
    names = ["id"] + [f"c{n}" for n in range(len(model_fields))]
    assignments = ", ".join(f"{qn(field.column)} = v.{name}" for field, name in zip(model_fields, names[1:]))
    table = qn(model._meta.db_table)
    with connection.cursor() as cursor:
        for start in range(0, len(objs), BATCH_SIZE):
            batch = objs[start:start + BATCH_SIZE]
            params: list[Any] = []
            for obj in batch:
                params.append(obj.pk)
                params.extend(field.get_db_prep_save(getattr(obj, field.attname), connection) for field in model_fields)
            cursor.execute(
                f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([row_sql] * len(batch))}) "
                f"AS v({', '.join(names)}) WHERE {table}.{qn(pk.column)} = v.id",
                params,
            )
