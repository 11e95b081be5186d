"""Retention: event reports and stale findings older than the retention are deleted."""
import datetime as dt

import pytest

from monitor.events.retention import prune_events

NOW = dt.datetime(2024, 5, 10, 12, 0, tzinfo=dt.timezone.utc)


def _event(event_id, age_days):
    from monitor.events.ingest import report_hash
    from monitor.models import Event

    timestamp = NOW - dt.timedelta(days=age_days)
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
