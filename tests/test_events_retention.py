"""Retention: event reports and stale findings older than the retention are deleted."""
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.events.retention import prune_events

NOW = dt.datetime(2024, 5, 10, 12, 0, tzinfo=dt.timezone.utc)
ROOT = Path(__file__).resolve().parent.parent
# Ages in hours around the cutoff of a 7-day retention at NOW (the start of May 3rd, UTC).
AGES_HOURS = [24 * 9, 24 * 8, 24 * 7 + 12 + 1, 24 * 7 + 12, 24 * 7 + 11, 24 * 7, 24 * 6, 1]


def _event(event_id, age_days):
    from monitor.events.ingest import report_hash
    from monitor.models import Event

    timestamp = NOW - dt.timedelta(days=age_days) if isinstance(age_days, int) else NOW - age_days
    return Event(event_id=event_id, type="T", service="s", stage="published", timestamp=timestamp,
                 received_at=timestamp, report_hash=report_hash(event_id, "published", "s", "", timestamp))


def _finding(name, age_days):
    from monitor.models import Finding

    seen = NOW - dt.timedelta(days=age_days)
    return Finding(kind="lost", fingerprint=name, summary=name, first_seen_at=seen, last_seen_at=seen)


@pytest.mark.django_db
def test_reports_and_findings_older_than_the_retention_are_deleted_in_chunks():
    from monitor.models import Event, Finding

    Event.objects.bulk_create([_event(f"old-{i}", 8) for i in range(25)] + [_event("fresh", 6)])
    Finding.objects.bulk_create([_finding("stale", 9), _finding("recent", 1)])
    result = prune_events(NOW, retention_days=7, chunk=10)
    assert (result.events, result.findings) == (25, 1)
    assert list(Event.objects.values_list("event_id", flat=True)) == ["fresh"]
    assert list(Finding.objects.values_list("fingerprint", flat=True)) == ["recent"]


@pytest.mark.django_db
def test_retention_comes_from_the_settings(settings):
    from monitor.models import Event

    settings.MONITOR_EVENT_RETENTION_DAYS = 2
    Event.objects.bulk_create([_event("three-days", 3), _event("one-day", 1)])
    assert prune_events(NOW).events == 1
    assert list(Event.objects.values_list("event_id", flat=True)) == ["one-day"]


@pytest.mark.django_db
def test_prune_task_runs_through_celery_eagerly(settings):
    from monitor.celery import app
    from monitor.models import Event
    from monitor.tasks import prune_events as prune_task

    settings.MONITOR_EVENT_RETENTION_DAYS = 1
    Event.objects.bulk_create([_event("ancient", 400)])
    app.conf.task_always_eager = True
    try:
        prune_task.delay()
    finally:
        app.conf.task_always_eager = False
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_on_postgresql_whole_days_are_dropped_as_partitions_and_the_default_ones_rows_deleted():
    from monitor import timepartitions
    from monitor.models import Event

    table = Event._meta.db_table
    Event.objects.bulk_create([_event(f"h{hours}", dt.timedelta(hours=hours)) for hours in AGES_HOURS])
    timepartitions.ensure_partitions(table, NOW, days_ahead=0, days_back=8)  # May 2nd..10th; the 1st waits
    result = prune_events(NOW, retention_days=7, chunk=2)
    assert result.partitions_dropped == (f"{table}_p20240502",)
    assert result.events == 3
    assert sorted(Event.objects.values_list("event_id", flat=True)) == sorted(_survivors_of_a_7_day_retention())
    assert f"{table}_pdefault" in timepartitions.partitions(table)


def _survivors_of_a_7_day_retention():
    return [f"h{hours}" for hours in AGES_HOURS if NOW - dt.timedelta(hours=hours) >= dt.datetime(
        2024, 5, 3, tzinfo=dt.timezone.utc)]


def test_on_sqlite_the_same_reports_are_pruned_in_chunks(tmp_path):
    """The demo's database keeps the same reports as PostgreSQL's partition drops do."""
    script = f"""
import datetime as dt, json, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from tests.test_events_retention import AGES_HOURS, NOW, _event
from monitor.events.retention import prune_events
from monitor.models import Event
Event.objects.bulk_create([_event(f"h{{hours}}", dt.timedelta(hours=hours)) for hours in AGES_HOURS])
result = prune_events(NOW, retention_days=7, chunk=2)
print(json.dumps([result.events, list(result.partitions_dropped), sorted(Event.objects.values_list("event_id", flat=True))]))
"""
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("REDIS_URL", "MONITOR_TEST_DB_NAME")}
    environment.update(DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}", DEBUG="true",
                       DJANGO_SETTINGS_MODULE="monitor.settings")
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                           env=environment, timeout=300)
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout.strip().splitlines()[-1]) == [3, [], sorted(_survivors_of_a_7_day_retention())]
