"""Heartbeats of the scheduler and the worker, the scheduler's lock, and the problems
that /readyz, /metrics and the banners report."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from monitor import liveness
from monitor.choices import ChannelKind, NotificationKind
from monitor.models import Channel, Heartbeat, Notification


@pytest.fixture
def t0():
    return timezone.now().replace(microsecond=0)


def test_one_scheduler_holds_the_lock_and_a_second_waits_until_the_first_stops_ticking(db, t0):
    stale = liveness.stale_after()
    assert liveness.hold_scheduler_lock("beat-a", t0)
    assert not liveness.hold_scheduler_lock("beat-b", t0 + timedelta(seconds=1))
    assert liveness.hold_scheduler_lock("beat-a", t0 + stale)  # a's tick renews it
    assert not liveness.hold_scheduler_lock("beat-b", t0 + stale + stale)  # exactly three intervals: still a's
    assert liveness.hold_scheduler_lock("beat-b", t0 + stale + stale + timedelta(seconds=1))  # a stopped
    assert not liveness.hold_scheduler_lock("beat-a", t0 + stale + stale + timedelta(seconds=2))
    row = Heartbeat.objects.get(component=liveness.SCHEDULER)
    assert (row.owner, row.at) == ("beat-b", t0 + 2 * stale + timedelta(seconds=1))


def test_a_beat_that_stops_cleanly_hands_the_lock_over_at_once(db, t0):
    assert liveness.hold_scheduler_lock("beat-a", t0)
    liveness.release_scheduler_lock("beat-a")
    assert liveness.hold_scheduler_lock("beat-b", t0 + timedelta(seconds=1))
    assert Heartbeat.objects.get(component=liveness.SCHEDULER).owner == "beat-b"


def test_nothing_is_reported_before_a_component_first_ticks(db, t0):
    state = liveness.read(t0)
    assert (state.scheduler_at, state.worker_at, state.outbox_due, state.oldest_due_age_seconds) == (None, None, 0, 0)
    assert state.problems() == []


def test_a_scheduler_silent_for_three_intervals_is_failing_and_named(db, t0):
    liveness.beat(liveness.SCHEDULER, t0)
    liveness.beat(liveness.WORKER, t0)
    assert liveness.read(t0 + liveness.stale_after()).problems() == []
    [problem] = liveness.read(t0 + liveness.stale_after() + timedelta(seconds=1)).problems()[:1]
    assert problem.component == "scheduler" and problem.failing
    assert problem.text.startswith("the scheduler (Celery beat) has not ticked for 16 s")


def test_a_silent_worker_and_a_late_outbox_are_degraded_not_failing(db, t0):
    liveness.beat(liveness.SCHEDULER, t0 + timedelta(minutes=10))
    liveness.beat(liveness.WORKER, t0)
    channel = Channel.objects.create(name="hook", kind=ChannelKind.WEBHOOK, webhook_url="http://127.0.0.1:9/")
    for minutes in (0, 2):
        Notification.objects.create(channel=channel, kind=NotificationKind.FIRING, payload={},
                                    created_at=t0 + timedelta(minutes=minutes), due_at=t0 + timedelta(minutes=minutes))
    Notification.objects.create(channel=channel, kind=NotificationKind.FIRING, payload={}, created_at=t0,
                                due_at=t0, muted=True)
    state = liveness.read(t0 + timedelta(minutes=10))
    assert (state.outbox_due, state.oldest_due_age_seconds) == (2, 600)
    problems = state.problems()
    assert [(p.component, p.failing) for p in problems] == [("worker", False), ("outbox", False)]
    assert problems[1].text == "2 notification(s) due and not delivered; the oldest for 10 min"
