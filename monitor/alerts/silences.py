"""Silences and recurring maintenance windows: which alerts are muted at a given instant.

Muting affects notifications only; alerts keep their full history. Pure functions over
plain data, plus one loader that reads every active mute in two queries.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING

from monitor.alerts.rules import Subject, glob_error, glob_matches, literal_glob
from monitor.choices import AlertState

if TYPE_CHECKING:
    from monitor.models import Silence

# Silence presets offered on the alert page; "resolved" lasts until the alert resolves.
SILENCE_PRESETS: dict[str, timedelta] = {"1h": timedelta(hours=1), "4h": timedelta(hours=4),
                                         "24h": timedelta(hours=24)}
UNTIL_RESOLVED = "resolved"
UNTIL_RESOLVED_BACKSTOP = timedelta(days=30)  # a silence never outlives this, whatever the alert does


@dataclass(frozen=True)
class Mute:
    """A silence (one-off) or a maintenance window occurrence, as a matcher."""

    label: str
    cluster: str = "*"
    group: str = "*"
    topic: str = "*"
    rule_id: int | None = None

    def matches(self, rule_id: int | None, subject: Subject) -> bool:
        if self.rule_id is not None and self.rule_id != rule_id:
            return False
        return (glob_matches(self.cluster, subject.cluster) and glob_matches(self.group, subject.group)
                and glob_matches(self.topic, subject.topic))


def parse_weekdays(text: str) -> set[int]:
    """``"0,1,2"`` (0 = Monday) -> {0, 1, 2}; raises ValueError naming the bad part."""
    days: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if not part.isdigit() or not 0 <= int(part) <= 6:
            raise ValueError(f"{part!r} is not a weekday number 0 (Monday) to 6 (Sunday)")
        days.add(int(part))
    if not days:
        raise ValueError("give at least one weekday, 0 (Monday) to 6 (Sunday)")
    return days


def window_active(weekdays: set[int], start: time, duration_minutes: int, now: datetime) -> bool:
    """Is a weekly window (UTC) open at ``now``? A window may run past midnight, so the
    occurrences that started on earlier days are checked too."""
    if duration_minutes <= 0:
        return False
    days_back = duration_minutes // (24 * 60) + 1
    for back in range(days_back + 1):
        day = (now - timedelta(days=back)).date()
        if day.weekday() not in weekdays:
            continue
        opens = datetime.combine(day, start, tzinfo=now.tzinfo)
        if opens <= now < opens + timedelta(minutes=duration_minutes):
            return True
    return False


def matcher_problems(cluster: str, group: str, topic: str) -> dict[str, str]:
    problems = {}
    for name, value in (("cluster", cluster), ("group", group), ("topic", topic)):
        error = glob_error(value)
        if error:
            problems[name] = error
    return problems


def active_mutes(now: datetime) -> list[Mute]:
    """Every silence and maintenance window in force at ``now``."""
    from django.db.models import Q

    from monitor.models import MaintenanceWindow, Silence

    mutes = [
        Mute(label=f"silence #{s.id} by {s.created_by}: {s.reason}"[:200], cluster=s.cluster, group=s.group,
             topic=s.topic, rule_id=s.rule_id)
        for s in Silence.objects.filter(starts_at__lte=now, ends_at__gt=now).filter(
            Q(until_resolved=None) | Q(until_resolved__state__in=[AlertState.PENDING, AlertState.FIRING]))
    ]
    for window in MaintenanceWindow.objects.filter(enabled=True):
        try:
            weekdays = parse_weekdays(window.weekdays)
        except ValueError:
            continue  # validated on save; a hand-edited row must not stop evaluation
        if window_active(weekdays, window.start_time, window.duration_minutes, now):
            mutes.append(Mute(label=f"maintenance window {window.name}", cluster=window.cluster,
                              group=window.group, topic=window.topic))
    return mutes


def muted_by(mutes: Iterable[Mute], rule_id: int | None, subject: Subject) -> str:
    """The label of the first mute covering this alert, or '' when it is not muted."""
    for mute in mutes:
        if mute.matches(rule_id, subject):
            return mute.label
    return ""


class SilenceError(ValueError):
    """Bad silence input; ``field`` names the form field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def silence_alert(alert_id: int, preset: str, reason: str, by: str, now: datetime) -> Silence:
    """Silence exactly this alert's rule and subject for a preset duration, or until it
    resolves. Raises :class:`SilenceError` naming the field on bad input."""
    from monitor.models import Alert, Silence

    reason = (reason or "").strip()
    if preset != UNTIL_RESOLVED and preset not in SILENCE_PRESETS:
        raise SilenceError("duration", f"choose one of {', '.join([*SILENCE_PRESETS, UNTIL_RESOLVED])}")
    if not reason:
        raise SilenceError("reason", "say why (it is shown next to the silence)")
    alert = Alert.objects.filter(pk=alert_id).first()
    if alert is None:
        raise SilenceError("alert", f"there is no alert {alert_id}")
    if alert.state == AlertState.RESOLVED:
        raise SilenceError("alert", f"alert {alert_id} is resolved; nothing to silence")
    until = preset == UNTIL_RESOLVED
    return Silence.objects.create(
        rule_id=alert.rule_id, cluster=literal_glob(alert.cluster) if alert.cluster else "*",
        group=literal_glob(alert.group) if alert.group else "*",
        topic=literal_glob(alert.topic) if alert.topic else "*", starts_at=now,
        ends_at=now + (UNTIL_RESOLVED_BACKSTOP if until else SILENCE_PRESETS[preset]),
        reason=reason[:2000], created_by=(by or "unknown")[:150], until_resolved=alert if until else None,
    )
