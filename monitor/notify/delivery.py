"""Delivering the outbox: claim a notification with a compare-and-set, record the
attempt, send it, complete the attempt; retry with exponential back-off; a periodic sweep
delivers whatever is due.

The guarantee is **at-least-once with a stable idempotency key**: every attempt carries
the notification's ``idempotency_key`` (HTTP header ``Idempotency-Key``, the webhook
body, Slack message metadata, the email Message-ID), so a receiver can drop a repeat.
Exactly-once over HTTP or SMTP is impossible: a worker can die after the receiver took
the message and before the outcome is stored.

* A claim is ``UPDATE ... SET claimed_at=<the claim's own time> WHERE id=? AND sent_at
  IS NULL AND failed_at IS NULL AND (claimed_at IS NULL OR claimed_at < now - lease)``:
  one worker wins. The lease counts from the claim itself (never from the start of a
  sweep), and a send never outlives its lease: its timeout is cut to what is left of it.
* Before sending, the attempt is written and committed (``DeliveryAttempt`` without
  ``finished_at``, ``attempts`` counted): a worker killed mid-send leaves a visible
  unfinished attempt, and the next attempt marks it "interrupted".
* The duplicate window is therefore one send: only a worker that dies (or a database
  that goes away) between the receiver's answer and the commit of the outcome causes a
  repeat, sent when its lease (``MONITOR_DELIVERY_LEASE_SECONDS``) expires, with the same key.
* Messages about one alert go out in order (a ``resolved`` never overtakes its
  ``firing``), and while a channel is failing its messages queue in order. A claim that
  is stuck (a hung worker) delays only itself and later messages about the same alert.
* A permanent error fails the notification and marks the channel failing (shown in the
  admin); a later success clears it.
"""
from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from monitor.choices import NotificationKind
from monitor.notify.base import NotifierError, redact
from monitor.notify.registry import notifier_for

if TYPE_CHECKING:
    from monitor.models import Channel, DeliveryAttempt, Notification

log = logging.getLogger(__name__)

BACKOFF_MAX_SECONDS = 900.0
GIVE_UP_AFTER = timedelta(hours=24)
SWEEP_LIMIT = 200
# A send is not started with less of its lease left than this: it could not finish in time.
MIN_SEND_SECONDS = 2.0
INTERRUPTED = ("interrupted: the worker stopped or lost its claim before recording an outcome; "
               "the receiver may have it (same idempotency key)")


def lease_seconds() -> float:
    """How long a claim holds (``MONITOR_DELIVERY_LEASE_SECONDS``): longer than any send."""
    return float(settings.MONITOR_DELIVERY_LEASE_SECONDS)


class Outcome(str, enum.Enum):
    SENT = "sent"
    RETRY = "retry"          # temporary error: due again later
    FAILED = "failed"        # permanent error, or retried for too long
    POSTPONED = "postponed"  # an older message to the same channel goes first
    SKIPPED = "skipped"      # not ours: sent, failed, muted, not due, or claimed by another worker


@dataclass
class DeliveryResult:
    outcome: Outcome
    status_code: int | None = None
    error: str = ""
    duration_seconds: float = 0.0
    retry_at: datetime | None = None
    channel_broken: bool = False  # a permanent error of the channel itself: mark it failing


def backoff_seconds(attempts: int, retry_after_seconds: float | None = None) -> float:
    """Wait before attempt ``attempts + 1``: 15 s, 30 s, 60 s ... (``MONITOR_DELIVERY_BACKOFF_SECONDS``
    doubling) capped at 15 min; a
    receiver's ``Retry-After`` is honoured as asked."""
    if retry_after_seconds is not None and retry_after_seconds > 0:
        return max(retry_after_seconds, 1.0)
    base = float(settings.MONITOR_DELIVERY_BACKOFF_SECONDS)
    return min(base * (2 ** max(attempts - 1, 0)), BACKOFF_MAX_SECONDS)


def _claimable(now: datetime) -> Q:
    lease_expired = now - timedelta(seconds=lease_seconds())
    return Q(sent_at=None, failed_at=None, muted=False, due_at__lte=now) & (
        Q(claimed_at=None) | Q(claimed_at__lt=lease_expired))


def claim(notification_id: int, now: datetime) -> bool:
    """Compare-and-set: True when this caller now owns the notification."""
    from monitor.models import Notification

    return Notification.objects.filter(_claimable(now), pk=notification_id).update(claimed_at=now) == 1


Clock = Callable[[], datetime]


def _clock_from(start: datetime | None) -> Clock:
    """Wall time that starts at ``start`` (tests pass a fixed time) and runs on from it."""
    origin, began = start or timezone.now(), time.monotonic()
    return lambda: origin + timedelta(seconds=time.monotonic() - began)


def deliver(notification_id: int, now: datetime | None = None) -> DeliveryResult:
    """Deliver one notification if it is due and nobody else is delivering it. ``now`` is
    the time of the claim; times recorded after the send are later by the time it took."""
    from monitor.models import Notification

    clock = _clock_from(now)
    claimed_at = clock()
    if not claim(notification_id, claimed_at):
        return DeliveryResult(Outcome.SKIPPED)
    notification = Notification.objects.select_related("channel").get(pk=notification_id)
    channel = notification.channel

    if notification.kind != NotificationKind.TEST:
        blocker = _earlier_message(notification, claimed_at)
        if blocker is not None:
            due = max(blocker, claimed_at) + timedelta(seconds=1)
            Notification.objects.filter(pk=notification.pk, claimed_at=claimed_at).update(claimed_at=None, due_at=due)
            return DeliveryResult(Outcome.POSTPONED, retry_at=due)

    if not channel.enabled:
        result = DeliveryResult(Outcome.FAILED, error="the channel is disabled")
        return _record(notification, claimed_at, clock(), result, channel, None)

    attempt = _begin_attempt(notification, claimed_at, clock())
    if attempt is None:
        return DeliveryResult(Outcome.SKIPPED)  # the claim expired before the send began

    notifier = notifier_for(channel)
    left = lease_seconds() - (clock() - claimed_at).total_seconds()
    notifier.timeout_seconds = max(min(notifier.timeout_seconds, left - MIN_SEND_SECONDS), MIN_SEND_SECONDS)
    started = time.monotonic()
    try:
        notifier.send(notification)
        result = DeliveryResult(Outcome.SENT, status_code=notifier.last_status_code)
    except NotifierError as exc:
        message = redact(exc.message, notifier.secrets())
        if exc.permanent:
            result = DeliveryResult(Outcome.FAILED, status_code=exc.status_code, error=message,
                                    channel_broken=not exc.of_message)
        else:
            result = DeliveryResult(Outcome.RETRY, status_code=exc.status_code, error=message)
            result.retry_at = clock() + timedelta(seconds=backoff_seconds(attempt.number, exc.retry_after_seconds))
    except Exception as exc:  # noqa: BLE001 - a bug in one notifier must not stop the channel
        # Not about the connection (those are NotifierErrors): retrying the same message
        # fails the same way and, since a channel delivers in order, would hold back every
        # later one for a day. It fails alone; the channel stays healthy.
        log.exception("notifier %s crashed on notification %s", channel.kind, notification.pk)
        result = DeliveryResult(Outcome.FAILED, error=redact(f"{type(exc).__name__}: {exc}", notifier.secrets()))
    result.duration_seconds = time.monotonic() - started
    if result.outcome == Outcome.RETRY and claimed_at - notification.created_at >= GIVE_UP_AFTER:
        result.outcome = Outcome.FAILED
        result.error = f"gave up after {attempt.number} attempts over {GIVE_UP_AFTER}: {result.error}"
    return _record(notification, claimed_at, clock(), result, channel, attempt.row)


def _earlier_message(notification: Notification, now: datetime) -> datetime | None:
    """The due time of an unsent message that must go before this one, or None.

    Earlier messages of the channel go first while they wait for a retry (the channel is
    failing: keep its order); one that another worker is sending right now (a live claim)
    holds back only the later messages about the same alert."""
    from monitor.models import Notification

    live_claim = Q(claimed_at__isnull=False, claimed_at__gte=now - timedelta(seconds=lease_seconds()))
    blocking = ~live_claim
    if notification.alert_id is not None:
        blocking |= Q(alert_id=notification.alert_id)
    return (Notification.objects.filter(channel_id=notification.channel_id, sent_at=None, failed_at=None, muted=False)
            .exclude(kind=NotificationKind.TEST).exclude(pk=notification.pk)
            .filter(Q(created_at__lt=notification.created_at)
                    | Q(created_at=notification.created_at, pk__lt=notification.pk))
            .filter(blocking).order_by("due_at").values_list("due_at", flat=True).first())


@dataclass
class _Attempt:
    row: DeliveryAttempt
    number: int  # 1 for the first attempt


def _begin_attempt(n: Notification, claimed_at: datetime, now: datetime) -> _Attempt | None:
    """Commit the attempt before sending, so a send whose worker dies leaves a trace."""
    from monitor.models import DeliveryAttempt, Notification

    with transaction.atomic():
        if not Notification.objects.filter(pk=n.pk, claimed_at=claimed_at).update(attempts=F("attempts") + 1):
            return None
        DeliveryAttempt.objects.filter(notification_id=n.pk, finished_at=None).update(error=INTERRUPTED)
        row = DeliveryAttempt.objects.create(notification_id=n.pk, at=now, duration_seconds=0.0, ok=False)
        number = Notification.objects.filter(pk=n.pk).values_list("attempts", flat=True).get()
    return _Attempt(row, number)


def _record(n: Notification, claimed_at: datetime, now: datetime, result: DeliveryResult, channel: Channel,
            attempt: DeliveryAttempt | None) -> DeliveryResult:
    from monitor.models import Channel, DeliveryAttempt, Notification

    values: dict[str, object] = {"last_status_code": result.status_code, "last_error": result.error[:2000]}
    if result.outcome == Outcome.SENT:
        values["sent_at"] = now
    elif result.outcome == Outcome.FAILED:
        values["failed_at"] = now
    else:
        values["claimed_at"] = None
        values["due_at"] = result.retry_at
    outcome = {"finished_at": now, "status_code": result.status_code, "error": result.error[:2000],
               "duration_seconds": result.duration_seconds, "ok": result.outcome == Outcome.SENT}
    with transaction.atomic():
        if attempt is None:
            values["attempts"] = F("attempts") + 1
            DeliveryAttempt.objects.create(notification_id=n.pk, at=now, **outcome)
        else:
            DeliveryAttempt.objects.filter(pk=attempt.pk).update(**outcome)
        if not Notification.objects.filter(pk=n.pk, claimed_at=claimed_at).update(**values):
            log.warning("notification %s: claim expired while sending; another worker owns it now", n.pk)
        if result.outcome == Outcome.SENT and channel.failing:
            Channel.objects.filter(pk=channel.pk).update(failing=False)
        elif result.channel_broken:
            Channel.objects.filter(pk=channel.pk).update(
                failing=True, last_error=result.error[:2000], last_error_at=now)
    level = logging.INFO if result.outcome == Outcome.SENT else logging.WARNING
    log.log(level, "notification %s (%s) to channel %s: %s%s", n.pk, n.kind, channel.name, result.outcome.value,
            f" ({result.error})" if result.error else "")
    return result


@dataclass
class SweepResult:
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def summary(self) -> str:
        if not self.outcomes:
            return "no notifications due"
        return ", ".join(f"{count} {outcome}" for outcome, count in sorted(self.outcomes.items()))


def due_ids(now: datetime, limit: int = SWEEP_LIMIT) -> list[int]:
    from monitor.models import Notification

    return list(Notification.objects.filter(_claimable(now)).order_by("created_at", "id")
                .values_list("id", flat=True)[:limit])


def sweep_due(now: datetime | None = None, limit: int = SWEEP_LIMIT) -> SweepResult:
    """Deliver every notification that is due (new, retry time reached, or claimed by a
    worker that died). A channel that fails temporarily is skipped for the rest of the
    sweep instead of timing out once per queued message."""
    from monitor.models import Notification

    clock = _clock_from(now)
    result = SweepResult()
    unavailable: set[int] = set()
    channel_of = dict(Notification.objects.filter(pk__in=due_ids(clock(), limit)).values_list("id", "channel_id"))
    for notification_id in sorted(channel_of):
        if channel_of[notification_id] in unavailable:
            continue
        # Each claim is stamped with its own time: a long sweep never hands out claims
        # that already look expired to the next worker.
        outcome = deliver(notification_id, clock()).outcome
        if outcome in (Outcome.RETRY, Outcome.POSTPONED):
            unavailable.add(channel_of[notification_id])
        result.outcomes[outcome.value] = result.outcomes.get(outcome.value, 0) + 1
    return result
