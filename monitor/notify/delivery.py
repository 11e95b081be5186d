"""Delivering the outbox: claim a notification with a compare-and-set, send it, record
the attempt; retry with exponential back-off; a periodic sweep delivers whatever is due.

* A claim is ``UPDATE ... SET claimed_at=now WHERE id=? AND sent_at IS NULL AND
  failed_at IS NULL AND (claimed_at IS NULL OR claimed_at < now - lease)``: one worker
  wins; a worker that dies after claiming leaves a claim that expires after
  ``CLAIM_LEASE_SECONDS`` and the sweep delivers it then.
* Messages of one channel go out in order (oldest first), so a ``resolved`` never
  overtakes its ``firing`` while the receiver is down.
* A permanent error fails the notification and marks the channel failing (shown in the
  admin); a later success clears it.
"""
from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from monitor.choices import NotificationKind
from monitor.notify.base import NotifierError, redact
from monitor.notify.registry import notifier_for

if TYPE_CHECKING:
    from monitor.models import Channel, Notification

log = logging.getLogger(__name__)

CLAIM_LEASE_SECONDS = 120  # well above the 10 s send timeout: a live sender never loses its claim
BACKOFF_BASE_SECONDS = 15.0
BACKOFF_MAX_SECONDS = 900.0
GIVE_UP_AFTER = timedelta(hours=24)
SWEEP_LIMIT = 200


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
    """Wait before attempt ``attempts + 1``: 15 s, 30 s, 60 s ... capped at 15 min; a
    receiver's ``Retry-After`` is honoured as asked."""
    if retry_after_seconds is not None and retry_after_seconds > 0:
        return max(retry_after_seconds, 1.0)
    return min(BACKOFF_BASE_SECONDS * (2 ** max(attempts - 1, 0)), BACKOFF_MAX_SECONDS)


def _claimable(now: datetime) -> Q:
    lease_expired = now - timedelta(seconds=CLAIM_LEASE_SECONDS)
    return Q(sent_at=None, failed_at=None, muted=False, due_at__lte=now) & (
        Q(claimed_at=None) | Q(claimed_at__lt=lease_expired))


def claim(notification_id: int, now: datetime) -> bool:
    """Compare-and-set: True when this caller now owns the notification."""
    from monitor.models import Notification

    return Notification.objects.filter(_claimable(now), pk=notification_id).update(claimed_at=now) == 1


def deliver(notification_id: int, now: datetime | None = None) -> DeliveryResult:
    """Deliver one notification if it is due and nobody else is delivering it."""
    from monitor.models import Notification

    now = now or timezone.now()
    if not claim(notification_id, now):
        return DeliveryResult(Outcome.SKIPPED)
    notification = Notification.objects.select_related("channel").get(pk=notification_id)
    channel = notification.channel

    if notification.kind != NotificationKind.TEST:
        older = (Notification.objects.filter(channel_id=channel.id, sent_at=None, failed_at=None, muted=False)
                 .exclude(kind=NotificationKind.TEST)
                 .filter(Q(created_at__lt=notification.created_at)
                         | Q(created_at=notification.created_at, pk__lt=notification.pk))
                 .order_by("due_at").values_list("due_at", flat=True).first())
        if older is not None:
            due = max(older, now) + timedelta(seconds=1)
            Notification.objects.filter(pk=notification.pk, claimed_at=now).update(claimed_at=None, due_at=due)
            return DeliveryResult(Outcome.POSTPONED, retry_at=due)

    if not channel.enabled:
        return _record(notification, now, DeliveryResult(Outcome.FAILED, error="the channel is disabled"), channel)

    notifier = notifier_for(channel)
    started = time.monotonic()
    try:
        notifier.send(notification)
        result = DeliveryResult(Outcome.SENT, status_code=notifier.last_status_code)
    except NotifierError as exc:
        message = redact(exc.message, notifier.secrets())
        if exc.permanent:
            result = DeliveryResult(Outcome.FAILED, status_code=exc.status_code, error=message, channel_broken=True)
        else:
            result = DeliveryResult(Outcome.RETRY, status_code=exc.status_code, error=message)
            wait = backoff_seconds(notification.attempts + 1, exc.retry_after_seconds)
            result.retry_at = now + timedelta(seconds=wait)
    except Exception as exc:  # noqa: BLE001 - a bug in one notifier must not lose the message
        log.exception("notifier %s crashed on notification %s", channel.kind, notification.pk)
        result = DeliveryResult(Outcome.RETRY, error=redact(f"{type(exc).__name__}: {exc}", notifier.secrets()))
        result.retry_at = now + timedelta(seconds=backoff_seconds(notification.attempts + 1))
    result.duration_seconds = time.monotonic() - started
    if result.outcome == Outcome.RETRY and now - notification.created_at >= GIVE_UP_AFTER:
        result.outcome = Outcome.FAILED
        result.error = f"gave up after {notification.attempts + 1} attempts over {GIVE_UP_AFTER}: {result.error}"
    return _record(notification, now, result, channel)


def _record(n: Notification, now: datetime, result: DeliveryResult, channel: Channel) -> DeliveryResult:
    from monitor.models import Channel, DeliveryAttempt, Notification

    values: dict[str, object] = {
        "attempts": F("attempts") + 1, "last_status_code": result.status_code, "last_error": result.error[:2000],
    }
    if result.outcome == Outcome.SENT:
        values["sent_at"] = now
    elif result.outcome == Outcome.FAILED:
        values["failed_at"] = now
    else:
        values["claimed_at"] = None
        values["due_at"] = result.retry_at
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            notification_id=n.pk, at=now, status_code=result.status_code, error=result.error[:2000],
            duration_seconds=result.duration_seconds, ok=result.outcome == Outcome.SENT,
        )
        if not Notification.objects.filter(pk=n.pk, claimed_at=now).update(**values):
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

    now = now or timezone.now()
    result = SweepResult()
    unavailable: set[int] = set()
    channel_of = dict(Notification.objects.filter(pk__in=due_ids(now, limit)).values_list("id", "channel_id"))
    for notification_id in sorted(channel_of):
        if channel_of[notification_id] in unavailable:
            continue
        outcome = deliver(notification_id, now).outcome
        if outcome in (Outcome.RETRY, Outcome.POSTPONED):
            unavailable.add(channel_of[notification_id])
        result.outcomes[outcome.value] = result.outcomes.get(outcome.value, 0) + 1
    return result
