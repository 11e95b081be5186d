"""Is the background still working? Heartbeats of the scheduler (Celery beat) and the
worker, the last poll per cluster, and the outbox backlog, read for ``/readyz``,
``/metrics`` and the page banners.

* The scheduler writes its heartbeat every ``MONITOR_HEARTBEAT_INTERVAL_SECONDS`` from
  its own loop (``monitor.beat``), so a dead beat is seen even though every alert runs on
  beat: ``/readyz`` answers 503 naming ``scheduler`` after three intervals without a
  tick, and an external Prometheus alerts on the tick timestamp (a dead-man rule in
  ``deploy/prometheus/liveness-rules.yml``).
* The scheduler's heartbeat row is also its lock: one beat sends tasks, a second one
  waits and takes over when the first has not ticked for three intervals.
* The worker writes its heartbeat from a thread of its own (``monitor.celery``).

A component that has never written a heartbeat (a fresh install whose web process
starts first) is reported as "not seen yet", not as failing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

SCHEDULER = "scheduler"
WORKER = "worker"
STALE_AFTER_INTERVALS = 3
OUTBOX_LATE_SECONDS = 300.0  # a due notification older than this means delivery is stuck


def interval_seconds() -> float:
    return float(settings.MONITOR_HEARTBEAT_INTERVAL_SECONDS)


def stale_after() -> timedelta:
    return timedelta(seconds=STALE_AFTER_INTERVALS * interval_seconds())


def beat(component: str, now: datetime | None = None, owner: str = "", detail: dict | None = None) -> None:
    """Record that ``component`` is alive now."""
    from monitor.models import Heartbeat

    Heartbeat.objects.update_or_create(component=component, defaults={
        "at": now or timezone.now(), "owner": owner[:200], "detail": detail or {}})


def hold_scheduler_lock(owner: str, now: datetime | None = None) -> bool:
    """Compare-and-set on the scheduler's heartbeat: True when ``owner`` holds the lock
    (it did already, or the holder has not ticked for three intervals); holding it
    records the tick."""
    from monitor.models import Heartbeat

    now = now or timezone.now()
    with transaction.atomic():
        taken = Heartbeat.objects.filter(
            Q(owner=owner[:200]) | Q(owner="") | Q(at__lt=now - stale_after()),
            component=SCHEDULER).update(at=now, owner=owner[:200])
        if taken:
            return True
        _, created = Heartbeat.objects.get_or_create(component=SCHEDULER, defaults={"at": now, "owner": owner[:200]})
        return created


def release_scheduler_lock(owner: str) -> None:
    """A beat that stops cleanly hands the lock over at once (the last tick stays)."""
    from monitor.models import Heartbeat

    Heartbeat.objects.filter(component=SCHEDULER, owner=owner[:200]).update(owner="")


@dataclass(frozen=True)
class Problem:
    component: str   # scheduler | worker | outbox
    failing: bool    # True: /readyz answers 503; False: degraded
    text: str


@dataclass
class Liveness:
    now: datetime
    scheduler_at: datetime | None = None
    worker_at: datetime | None = None
    last_poll_at: dict[str, datetime | None] = field(default_factory=dict)  # cluster name -> time
    outbox_due: int = 0
    oldest_due_at: datetime | None = None

    @property
    def oldest_due_age_seconds(self) -> float:
        return max((self.now - self.oldest_due_at).total_seconds(), 0.0) if self.oldest_due_at else 0.0

    def problems(self) -> list[Problem]:
        found = []
        late = stale_after()
        if self.scheduler_at is not None and self.now - self.scheduler_at > late:
            found.append(Problem(SCHEDULER, True, f"the scheduler (Celery beat) has not ticked for "
                                                  f"{_seconds(self.now - self.scheduler_at)}: nothing is polled "
                                                  "or evaluated and no alert can fire"))
        if self.worker_at is not None and self.now - self.worker_at > late:
            found.append(Problem(WORKER, False, f"the Celery worker has not reported for "
                                               f"{_seconds(self.now - self.worker_at)}: polls, alerts and "
                                               "notifications wait"))
        if self.oldest_due_age_seconds > OUTBOX_LATE_SECONDS:
            found.append(Problem("outbox", False, f"{self.outbox_due} notification(s) due and not delivered; "
                                                  f"the oldest for {_seconds(timedelta(seconds=self.oldest_due_age_seconds))}"))
        return found


def _seconds(delta: timedelta) -> str:
    from monitor.humanize import duration

    return duration(int(delta.total_seconds()))


def read(now: datetime | None = None) -> Liveness:
    from monitor.models import Cluster, Heartbeat, Notification

    now = now or timezone.now()
    beats = dict(Heartbeat.objects.values_list("component", "at"))
    due = Notification.objects.filter(sent_at=None, failed_at=None, muted=False, due_at__lte=now).aggregate(
        oldest=Min("due_at"), count=Count("id"))
    return Liveness(
        now=now, scheduler_at=beats.get(SCHEDULER), worker_at=beats.get(WORKER),
        last_poll_at=dict(Cluster.objects.filter(enabled=True).order_by("name").values_list("name", "last_poll_at")),
        outbox_due=due["count"], oldest_due_at=due["oldest"],
    )
