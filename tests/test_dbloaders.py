"""monitor/dbloaders.py: PostgreSQL timestamps read through the remembering loader are the
values written (time zone included), each distinct text parsed once per result, and a
result with more distinct values than a loader keeps is read right too."""
from datetime import datetime, timedelta, timezone

import pytest
from django.db import connection

from monitor import dbloaders
from monitor.models import Cluster, ConsumerGroup

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 12, 6, 22, 30, 15, 123456, tzinfo=timezone.utc)


def _groups(stamps: list[datetime]) -> Cluster:
    cluster = Cluster.objects.create(name="stamps", bootstrap_servers="127.0.0.1:9")
    ConsumerGroup.objects.bulk_create([
        ConsumerGroup(cluster=cluster, name=f"g{n:05d}", first_seen_at=T0, last_seen_at=at, status_since=at)
        for n, at in enumerate(stamps)])
    return cluster


def _timestamp_loader() -> type:
    """The class this connection reads timestamptz text with."""
    from psycopg.pq import Format
    from psycopg.postgres import types

    connection.ensure_connection()
    return connection.connection.adapters.get_loader(types["timestamptz"].oid, Format.TEXT)


def test_every_connection_reads_timestamps_with_the_remembering_loader():
    loader = _timestamp_loader()
    assert getattr(loader, "remembers", False) is True
    assert loader.timezone == connection.timezone  # Django's choice kept: no per-cursor override


def test_repeated_timestamps_read_back_as_written_and_are_parsed_once_per_result(monkeypatch):
    stamps = [T0 + timedelta(seconds=30 * (n % 3)) for n in range(300)]
    cluster = _groups(stamps)
    loader = _timestamp_loader()
    parsed = []
    parent = loader.__mro__[1]
    original = parent.load

    def counting(self, data):
        parsed.append(bytes(data))
        return original(self, data)

    monkeypatch.setattr(parent, "load", counting)
    rows = list(ConsumerGroup.objects.filter(cluster=cluster).order_by("name"))
    assert [r.last_seen_at for r in rows] == stamps
    assert all(r.last_seen_at.utcoffset() == timedelta(0) for r in rows)
    assert {r.first_seen_at for r in rows} == {T0}
    assert len(parsed) == len(set(parsed)) == 3  # T0 and two more; each text parsed once


def test_more_distinct_timestamps_than_a_loader_keeps_are_all_read_right():
    stamps = [T0 + timedelta(microseconds=7 * n) for n in range(dbloaders.KEPT + 100)]
    cluster = _groups(stamps)
    rows = ConsumerGroup.objects.filter(cluster=cluster).order_by("name").values_list("last_seen_at", "status_since")
    assert [r[0] for r in rows] == stamps
    assert [r[1] for r in rows] == stamps


def test_timestamps_of_another_time_zone_and_null_read_back_as_written():
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::timestamptz, %s::timestamptz, NULL::timestamptz, %s::timestamptz",
                       ["2026-12-06T23:30:15.5+01:00", "2026-12-06T23:30:15.5+01:00", "1999-01-01T00:00:00Z"])
        first, again, null, old = cursor.fetchone()
    assert first == again == datetime(2026, 12, 6, 22, 30, 15, 500000, tzinfo=timezone.utc)
    assert first.utcoffset() == timedelta(0)
    assert null is None
    assert old == datetime(1999, 1, 1, tzinfo=timezone.utc)
