"""Alert evaluation: every enabled rule against the latest readings, per subject.

One evaluation is one transaction: the alerts' state changes and the notification rows
they cause (the outbox) commit together or not at all. Evaluations are serialised (an
advisory lock on PostgreSQL; SQLite's write transactions already are), and every state
transition is a compare-and-set on the state read, backed by the unique constraint on
open alerts per (rule, subject): a second evaluation, in a row or racing in another
worker, finds nothing left to change.

Queries per evaluation do not grow with rules or subjects: rules, open alerts, mutes and
each metric's readings are read in bulk; writes are bulk inserts/updates, one CAS update
per kind of transition.
"""
from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from monitor.lag.bulk import concrete_field
from monitor.alerts import metrics as metric_registry
from monitor.notify import render
from monitor.alerts.rules import (
    Action, AlertStatus, Reading, RuleSpec, Scope, Step, Subject, comparison, reminder_due, step,
)
from monitor.alerts.silences import Mute, active_mutes, muted_by
from monitor.choices import AlertState, ChannelKind, NotificationKind

if TYPE_CHECKING:
    from monitor.models import Alert, AlertRule

log = logging.getLogger(__name__)

_LOCK_KEY = 0x6B6D_6F6E_616C_7274  # "kmonalrt": one evaluation at a time, cluster-wide
_WRITE_BATCH = 500
NO_LONGER_REPORTED = "no longer reported: the subject disappeared or no longer matches the rule"


class EvaluationConflict(Exception):
    """Another evaluation changed an alert between our read and our write."""


@dataclass
class EvaluationResult:
    rules: int = 0
    subjects: int = 0
    pending: int = 0
    fired: int = 0
    resolved: int = 0
    dropped: int = 0
    notification_ids: list[int] = field(default_factory=list)
    muted_notifications: int = 0
    errors: list[str] = field(default_factory=list)
    raced: bool = False
    duration_seconds: float = 0.0

    def summary(self) -> str:
        text = (f"{self.rules} rules, {self.subjects} subjects: {self.pending} new pending, {self.fired} fired, "
                f"{self.resolved} resolved, {self.dropped} cleared before firing; "
                f"{len(self.notification_ids)} notifications queued, {self.muted_notifications} muted; "
                f"{self.duration_seconds:.2f}s")
        if self.raced:
            text += " (another evaluation was running; nothing changed)"
        return text


def rule_spec(rule: AlertRule) -> RuleSpec:
    return RuleSpec(
        id=rule.id, name=rule.name, metric=rule.metric, op=rule.op, threshold=rule.threshold,
        cluster=rule.cluster, group=rule.group, topic=rule.topic,
        for_seconds=rule.for_seconds, keep_firing_seconds=rule.keep_firing_seconds,
        repeat_seconds=rule.repeat_seconds, severity=rule.severity, enabled=rule.enabled,
    )


def alert_status(alert: Alert) -> AlertStatus:
    return AlertStatus(
        id=alert.id, state=alert.state, started_at=alert.started_at, fired_at=alert.fired_at,
        clear_since=alert.clear_since, last_notified_at=alert.last_notified_at,
        acknowledged_at=alert.acknowledged_at, no_data=alert.no_data,
    )


def evaluate(now: datetime | None = None) -> EvaluationResult:
    """Evaluate every enabled rule once. Safe to run concurrently and repeatedly."""
    now = now or timezone.now()
    started = time.monotonic()
    try:
        with transaction.atomic():
            _serialise()
            result = _evaluate_locked(now)
    except EvaluationConflict as exc:
        log.info("alert evaluation skipped: %s", exc)
        result = EvaluationResult(raced=True)
    result.duration_seconds = time.monotonic() - started
    return result


def _serialise() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])


@dataclass
class _Change:
    """One open alert (or one to create) and the step the state machine took."""

    rule: RuleSpec
    subject: Subject
    step: Step
    alert: Alert | None  # None until created

    @property
    def rule_id(self) -> int:
        """The stored rule's id (the engine evaluates saved rules only)."""
        if self.rule.id is None:
            raise ValueError(f"rule {self.rule.name!r} is not saved")
        return self.rule.id

    @property
    def stored(self) -> Alert:
        """The alert row, once it exists: _apply creates the missing ones before anything reads them."""
        if self.alert is None:
            raise ValueError(f"no alert yet for rule {self.rule.name!r} on {self.subject.key}")
        return self.alert


def _evaluate_locked(now: datetime) -> EvaluationResult:
    from monitor.models import Alert, AlertRule

    result = EvaluationResult()
    rules = list(AlertRule.objects.prefetch_related("channels"))
    rules_by_id = {rule.id: rule for rule in rules}
    open_alerts: dict[int | None, dict[str, Alert]] = defaultdict(dict)
    for alert in Alert.objects.filter(state__in=[AlertState.PENDING, AlertState.FIRING]):
        open_alerts[alert.rule_id][alert.subject] = alert

    changes: list[_Change] = []
    enabled_by_metric: dict[str, list[RuleSpec]] = defaultdict(list)
    for rule in rules:
        spec = rule_spec(rule)
        if rule.enabled:
            enabled_by_metric[spec.metric].append(spec)
        else:
            changes.extend(_close_all(spec, open_alerts.pop(rule.id, {}), RULE_DISABLED, now))

    with metric_registry.shared_reads():
        _evaluate_metrics(enabled_by_metric, open_alerts, changes, now, result)
    if changes:
        _apply(changes, rules_by_id, now, result)
    return result


def _evaluate_metrics(enabled_by_metric: dict[str, list[RuleSpec]], open_alerts: dict[int | None, dict[str, Alert]],
                      changes: list[_Change], now: datetime, result: EvaluationResult) -> None:
    """Each metric's readings (one bulk fetch per metric) stepped through its rules."""
    for metric_name, specs in enabled_by_metric.items():
        readings = _fetch(metric_name, specs, now, result)
        if readings is None:
            for spec in specs:
                open_alerts.pop(spec.id, None)  # unknown or broken metric: leave its alerts as they are
            continue
        result.subjects += len(readings)
        # (subject, key, reading, value or None): computed once per metric, not per rule.
        entries = [(s, s.key, r, r.value if r.has_data else None) for s, r in readings.items()]
        matched: dict[Scope, list[tuple]] = {}
        for spec in specs:
            result.rules += 1
            scope = spec.scope
            subjects = matched.get(scope)
            if subjects is None:
                if scope == EVERYTHING:
                    subjects = entries
                else:
                    subjects = [e for e in entries if scope.matches(e[0], _reading_topics(e[2]))]
                matched[scope] = subjects
            current = open_alerts.pop(spec.id, {})
            holds, threshold = comparison(spec.op), spec.threshold
            for subject, key, reading, value in subjects:
                alert = current.pop(key, None) if current else None
                if alert is None and (value is None or not holds(value, threshold)):
                    continue  # the common case: nothing open, nothing breached (step() would say None)
                outcome = step(spec, alert_status(alert) if alert else None, reading, now)
                if outcome is not None:
                    changes.append(_Change(spec, subject, outcome, alert))
            for key, alert in current.items():
                gone = Reading.no_data(NO_LONGER_REPORTED, final=True)
                outcome = step(spec, alert_status(alert), gone, now)
                if outcome is not None:
                    changes.append(_Change(spec, Subject.from_key(key), outcome, alert))


EVERYTHING = Scope()
RULE_DELETED = "the rule was deleted"
RULE_DISABLED = "the rule was disabled"


def close_rule(rule: AlertRule, reason: str, now: datetime | None = None) -> EvaluationResult:
    """Resolve a rule's open alerts now, saying why (a firing alert's channels get a
    resolved message; pending ones are dropped), and detach its notifications from its
    alerts so queued messages (digests shared with other rules included) survive the
    rule's deletion. Runs inside the caller's transaction when there is one."""
    from monitor.models import Alert, Notification

    now = now or timezone.now()
    result = EvaluationResult(rules=1)
    with transaction.atomic():
        _serialise()
        spec = rule_spec(rule)
        open_alerts = {a.subject: a for a in Alert.objects.filter(
            rule_id=rule.id, state__in=[AlertState.PENDING, AlertState.FIRING])}
        changes = _close_all(spec, open_alerts, reason, now)
        if changes:
            _apply(changes, {rule.id: rule}, now, result)
        if reason == RULE_DELETED:
            Notification.objects.filter(alert__rule_id=rule.id).update(alert=None)
    return result


def _fetch(metric_name: str, specs: list[RuleSpec], now: datetime,
           result: EvaluationResult) -> dict[Subject, Reading] | None:
    try:
        metric = metric_registry.get(metric_name)
    except KeyError:
        names = ", ".join(spec.name for spec in specs)
        result.errors.append(f"unknown metric {metric_name!r} (rules: {names})")
        log.warning("alert rules use the unknown metric %r: %s", metric_name, names)
        return None
    try:
        with transaction.atomic():  # a savepoint: a failing plugin leaves the evaluation usable
            return metric_registry.normalise(metric.fetch([spec.scope for spec in specs], now))
    except Exception as exc:  # noqa: BLE001 - one broken metric must not stop the others
        log.exception("metric %s failed", metric_name)
        result.errors.append(f"metric {metric_name} failed: {type(exc).__name__}: {exc}")
        return None


def _close_all(spec: RuleSpec, alerts: dict[str, Alert], reason: str, now: datetime) -> list[_Change]:
    changes = []
    for key, alert in alerts.items():
        outcome = step(spec, alert_status(alert), Reading.no_data(reason, final=True), now)
        if outcome is not None:
            changes.append(_Change(spec, Subject.from_key(key), outcome, alert))
    return changes


def _reading_topics(reading: Reading) -> list[str]:
    """The topics a group-level reading carries (a topic scope matches a group through them)."""
    topics = reading.detail.get("topics")
    return topics if isinstance(topics, list) else []


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


_TRACKED_FIELDS = ("value", "threshold", "no_data", "clear_since", "detail", "last_notified_at")


def _tracked(alert: Alert) -> tuple:
    return tuple(getattr(alert, name) for name in _TRACKED_FIELDS)


def _apply(changes: list[_Change], rules_by_id: dict[int, AlertRule], now: datetime,
           result: EvaluationResult) -> None:
    from monitor.models import Alert

    by_action: dict[Action, list[_Change]] = defaultdict(list)
    for change in changes:
        by_action[change.step.action].append(change)

    dropped = [c.stored.id for c in by_action[Action.DROP_PENDING]]
    if dropped:
        _, deleted = Alert.objects.filter(pk__in=dropped, state=AlertState.PENDING).delete()
        if deleted.get(Alert._meta.label, 0) != len(dropped):
            raise EvaluationConflict("a pending alert changed state during evaluation")
    _cas(by_action[Action.FIRE], AlertState.PENDING, {"state": AlertState.FIRING, "fired_at": now})
    _cas(by_action[Action.RESOLVE], AlertState.FIRING, {"state": AlertState.RESOLVED, "resolved_at": now})
    result.dropped = len(dropped)
    result.fired = len(by_action[Action.FIRE]) + len(by_action[Action.CREATE_FIRING])
    result.resolved = len(by_action[Action.RESOLVE])
    result.pending = len(by_action[Action.CREATE_PENDING])

    kept = [c for c in changes if c.step.action != Action.DROP_PENDING]
    new_alerts, before = [], {}
    for change in kept:
        status = change.step.status
        assert status is not None
        if change.alert is None:
            change.alert = Alert(
                rule_id=change.rule_id, subject=change.subject.key, cluster=change.subject.cluster,
                group=change.subject.group, topic=change.subject.topic, state=status.state,
                started_at=status.started_at, fired_at=status.fired_at, value=None,
                threshold=change.rule.threshold, last_evaluated_at=now,
            )
            new_alerts.append(change.alert)
        else:
            before[id(change.alert)] = _tracked(change.alert)
        alert = change.alert
        if change.step.reading.has_data:
            alert.value = _finite(change.step.reading.value)
        alert.threshold = change.rule.threshold
        alert.no_data = status.no_data
        alert.clear_since = status.clear_since
        alert.detail = _with_worst(_detail(change.step, previous=alert.detail), alert.value, change.rule.op)
        alert.last_evaluated_at = now
    if new_alerts:
        try:
            with transaction.atomic():
                Alert.objects.bulk_create(new_alerts, batch_size=_WRITE_BATCH)
        except IntegrityError as exc:
            raise EvaluationConflict("an open alert for the same rule and subject already exists") from exc

    notifications = _notifications(kept, rules_by_id, now)
    # Only rows whose content changed are rewritten; the evaluation time of the others is
    # one plain UPDATE (a steady state of many open alerts costs a single statement).
    changed = [c.stored for c in kept if _tracked(c.stored) != before.get(id(c.alert))]
    _write_fields(changed, list(_TRACKED_FIELDS) + ["last_evaluated_at"])
    changed_ids = {id(alert) for alert in changed}
    unchanged = [c.stored.pk for c in kept if id(c.alert) in before and id(c.alert) not in changed_ids]
    for start in range(0, len(unchanged), 5000):
        Alert.objects.filter(pk__in=unchanged[start:start + 5000]).update(last_evaluated_at=now)
    _store_notifications(notifications, now, result)


def _write_fields(alerts: list[Alert], names: list[str]) -> None:
    """Write these fields of many alerts: one parameterised UPDATE run with executemany
    (Django's bulk_update builds a CASE expression per row, ~100x slower at 10,000 rows)."""
    from monitor.models import Alert

    if not alerts:
        return
    fields = [concrete_field(Alert, name) for name in names]
    pk = Alert._meta.pk
    quote = connection.ops.quote_name
    sql = (f"UPDATE {quote(Alert._meta.db_table)} SET "
           + ", ".join(f"{quote(str(field.column))} = %s" for field in fields)
           + f" WHERE {quote(str(pk.column))} = %s")
    rows = [[field.get_db_prep_save(getattr(alert, field.attname), connection) for field in fields] + [alert.pk]
            for alert in alerts]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _cas(changes: list[_Change], expected_state: str, values: dict[str, object]) -> None:
    from monitor.models import Alert

    ids = [change.stored.id for change in changes]
    for start in range(0, len(ids), _WRITE_BATCH):
        batch = ids[start:start + _WRITE_BATCH]
        if Alert.objects.filter(pk__in=batch, state=expected_state).update(**values) != len(batch):
            raise EvaluationConflict(f"an alert left the {expected_state} state during evaluation")
    for change in changes:
        for name, value in values.items():
            setattr(change.alert, name, value)


def _with_worst(detail: dict, value: float | None, op: str) -> dict:
    """Keep the worst value seen while the alert was open (``detail["worst"]``): a resolved
    alert shows its peak, not the final reading that resolved it."""
    pick = {">": max, ">=": max, "<": min, "<=": min}.get(op)
    if value is None or pick is None:
        return detail
    previous = detail.get("worst")
    worst = pick(previous, value) if isinstance(previous, (int, float)) else value
    return {**detail, "worst": worst}


def _detail(outcome: Step, previous: dict | None = None) -> dict:
    fresh = ("no_data_reason", "value_text", "summary", "traces")  # describe the latest reading only
    detail = {key: value for key, value in (previous or {}).items() if key not in fresh}
    if outcome.reading.no_data_reason:
        detail["no_data_reason"] = outcome.reading.no_data_reason
    for key in ("value_text", "summary"):  # e.g. "not catching up"; a detector's finding
        text = outcome.reading.detail.get(key)
        if text:
            detail[key] = str(text)[:500]
    traces = outcome.reading.detail.get("traces")
    if traces:  # example trace ids of a detector's finding
        detail["traces"] = [str(t)[:64] for t in list(traces)[:5]]  # type: ignore[call-overload]
    if outcome.resolved_reason:
        detail["resolved_reason"] = outcome.resolved_reason
    return detail


# -- notifications (the outbox) ---------------------------------------------------------------

@dataclass
class _Pending:
    channel_id: int
    kind: str
    muted: bool
    items: list[dict] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    muted_by: str = ""


def _notifications(changes: list[_Change], rules_by_id: dict[int, AlertRule], now: datetime) -> list[_Pending]:
    """Decide which alerts notify (firing, reminder, resolved) and group them: one message
    per rule, channel and kind (one digest per channel and kind for email).

    A muted firing is recorded (muted rows) and announced later if it is still firing
    when the silence or window ends; an announced incident always gets its resolved
    message, so no channel is left with a firing that never ends."""
    mutes: list[Mute] | None = None
    wanted: list[tuple[_Change, str, str]] = []  # (change, kind, muted_by)
    for change in changes:
        alert, status, action = change.alert, change.step.status, change.step.action
        assert alert is not None and status is not None
        if status.state == AlertState.PENDING or change.step.reading.partial:
            continue  # a partial value is no new data: nothing to send
        if mutes is None:
            mutes = active_mutes(now)
        mute = muted_by(mutes, change.rule.id, change.subject)
        announced = alert.last_notified_at is not None
        if change.step.opened:
            wanted.append((change, NotificationKind.FIRING, mute))
        elif action == Action.RESOLVE:
            wanted.append((change, NotificationKind.RESOLVED, "" if announced else (mute or "firing was muted")))
        elif not mute and not announced:  # fired while muted; the silence or window has ended
            wanted.append((change, NotificationKind.FIRING, ""))
        elif not mute and reminder_due(change.rule, status, now):
            wanted.append((change, NotificationKind.REMINDER, ""))
    if not wanted:
        return []

    worst = metric_registry.worst_partitions(c.subject for c, kind, _ in wanted if kind != NotificationKind.RESOLVED)
    groups: dict[tuple, _Pending] = {}
    for change, kind, mute in wanted:
        item = render.alert_item(change.stored, change.rule, now, worst.get(change.subject, []))
        if not mute:
            change.stored.last_notified_at = now
        for channel in rules_by_id[change.rule_id].channels.all():
            if not channel.enabled:
                continue
            per_rule = None if channel.kind == ChannelKind.EMAIL else change.rule.id
            key = (channel.id, kind, bool(mute), per_rule)
            pending = groups.setdefault(key, _Pending(channel.id, kind, bool(mute), muted_by=mute))
            pending.items.append(item)
            pending.alerts.append(change.stored)
    return list(groups.values())


def _store_notifications(pending: list[_Pending], now: datetime, result: EvaluationResult) -> None:
    from monitor.models import Notification

    if not pending:
        return
    rows = [
        Notification(
            alert=group.alerts[0], channel_id=group.channel_id, kind=group.kind,
            payload=render.payload(group.kind, group.items, muted_by=group.muted_by, now=now),
            created_at=now, due_at=now, muted=group.muted,
        )
        for group in pending
    ]
    Notification.objects.bulk_create(rows, batch_size=_WRITE_BATCH)
    result.notification_ids.extend(row.id for row in rows if not row.muted)
    result.muted_notifications += sum(1 for row in rows if row.muted)


# -- acknowledgement ---------------------------------------------------------------------------

class AcknowledgeError(Exception):
    def __init__(self, message: str, not_found: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found


def acknowledge(alert_id: int, by: str, note: str = "", now: datetime | None = None) -> Alert:
    """Acknowledge an open alert: reminders stop, the resolved message still comes.
    Acknowledging twice keeps the first acknowledgement (compare-and-set)."""
    from monitor.models import Alert

    now = now or timezone.now()
    by, note = (by or "unknown")[:150], (note or "").strip()[:2000]
    Alert.objects.filter(pk=alert_id, state__in=[AlertState.PENDING, AlertState.FIRING],
                         acknowledged_at=None).update(acknowledged_at=now, acknowledged_by=by,
                                                      acknowledgement_note=note)
    alert = Alert.objects.select_related("rule").filter(pk=alert_id).first()
    if alert is None:
        raise AcknowledgeError(f"there is no alert {alert_id}", not_found=True)
    if alert.acknowledged_at is None:
        raise AcknowledgeError(f"alert {alert_id} is {alert.state}; only pending or firing alerts can be acknowledged")
    return alert
