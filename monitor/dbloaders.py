"""Reading PostgreSQL timestamps: each distinct text parsed once per result.

A poll stamps every group of a cluster with the same few moments (last seen, last
sample, status since, first seen), so the 10,000 group rows a poll of a large cluster
reads back hold ~40,000 ``timestamptz`` values but only a handful of distinct ones;
pages listing groups, alerts or polls repeat them the same way. Django reads each with a
Python parser (its loader sets the connection's time zone), ~7 µs a value: a third of
a second for those rows alone.

:func:`remember_timestamps` gives a connection a loader that keeps the values it has
parsed (up to :data:`KEPT` texts; a datetime is immutable, so one object can stand for
every row holding that text). psycopg makes a loader for each cursor's results, so
what it keeps lives no longer than those.
"""
from __future__ import annotations

from typing import Any

KEPT = 512
"""Distinct timestamp texts one loader keeps; later ones are parsed every time."""


def remember_timestamps(sender: Any, connection: Any, **_: Any) -> None:
    """``connection_created`` receiver: on PostgreSQL (psycopg 3), this connection's
    ``timestamptz`` text loader becomes the remembering subclass of the one Django set."""
    if connection.vendor != "postgresql":
        return
    try:
        from psycopg.pq import Format
        from psycopg.postgres import types
    except ImportError:  # psycopg2: Django's own loading stays
        return
    adapters = connection.connection.adapters
    oid = types["timestamptz"].oid
    base = adapters.get_loader(oid, Format.TEXT)
    if base is None or getattr(base, "remembers", False):
        return
    adapters.register_loader(oid, _remembering(base))


_classes: dict[type, type] = {}


def _remembering(base: type) -> type:
    """The subclass of ``base`` that remembers what it parsed (one per base: Django makes
    one base per time zone)."""
    found = _classes.get(base)
    if found is None:
        class RememberingLoader(base):
            remembers = True

            def __init__(self, oid: int, context: Any = None) -> None:
                super().__init__(oid, context)
                self._parsed: dict[bytes, Any] = {}

            def load(self, data: Any) -> Any:
                key = data if type(data) is bytes else bytes(data)
                value = self._parsed.get(key)
                if value is None:
                    value = super().load(data)
                    if len(self._parsed) < KEPT:
                        self._parsed[key] = value
                return value

        RememberingLoader.__name__ = RememberingLoader.__qualname__ = f"Remembering{base.__name__}"
        found = _classes[base] = RememberingLoader
    return found
