"""Backtest: how often a rule would have fired over the stored history, and for how long.

``replay`` runs the live state machine (:func:`monitor.alerts.rules.step`) over each
subject's samples, so pending, ``for_seconds`` and ``keep_firing_seconds`` behave exactly
as they will live. ``backtest`` fetches the history through the metric registry.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor.alerts import metrics as metric_registry
from monitor.alerts.metrics import Series
from monitor.alerts.rules import Action, AlertStatus, Reading, RuleSpec, Subject, step

DEFAULT_DAYS = 7
MAX_GAP_SECONDS = 900  # a longer hole in the samples counts as "no data"


@dataclass(frozen=True)
class Incident:
    subject: Subject
    started_at: datetime  # when the condition began to hold
    fired_at: datetime
    resolved_at: datetime | None  # None: still firing at the end of the window
    peak: float | None

    def firing_seconds(self, until: datetime) -> float:
        return ((self.resolved_at or until) - self.fired_at).total_seconds()


@dataclass
class BacktestResult:
    since: datetime
    until: datetime
    metric: str = ""
    subjects: int = 0
    samples: int = 0
    incidents: list[Incident] = field(default_factory=list)
    note: str = ""
    truncated: bool = False

    @property
    def fired(self) -> int:
        return len(self.incidents)

    @property
    def total_firing_seconds(self) -> float:
        return sum(incident.firing_seconds(self.until) for incident in self.incidents)

    @property
    def longest_firing_seconds(self) -> float:
        return max((incident.firing_seconds(self.until) for incident in self.incidents), default=0.0)

    @property
    def firing_at_end(self) -> int:
        return sum(1 for incident in self.incidents if incident.resolved_at is None)

    def by_subject(self) -> list[tuple[Subject, int, float]]:
        """(subject, incidents, firing seconds), the noisiest first."""
        totals: dict[Subject, list[float]] = {}
        for incident in self.incidents:
            entry = totals.setdefault(incident.subject, [0, 0.0])
            entry[0] += 1
            entry[1] += incident.firing_seconds(self.until)
        return sorted(((s, int(c), t) for s, (c, t) in totals.items()), key=lambda row: (-row[1], -row[2], row[0]))


def replay(rule: RuleSpec, series: Mapping[Subject, Series], since: datetime, until: datetime,
           max_gap_seconds: float = MAX_GAP_SECONDS) -> BacktestResult:
    result = BacktestResult(since=since, until=until, metric=rule.metric, subjects=len(series))
    gap = timedelta(seconds=max_gap_seconds)
    for subject, points in series.items():
        if not rule.scope.matches(subject):
            continue
        subject_replay = _SubjectReplay(rule, subject)
        previous: datetime | None = None
        for at, value in sorted(points, key=lambda point: point[0]):
            result.samples += 1
            if previous is not None and at - previous > gap:
                subject_replay.feed(Reading.no_data("gap in the samples"), previous + gap)
            subject_replay.feed(Reading(value) if value is not None else Reading.no_data("unknown"), at)
            previous = at
        result.incidents.extend(subject_replay.finish())
    result.incidents.sort(key=lambda incident: incident.fired_at)
    return result


class _SubjectReplay:
    """The state machine of one subject, fed sample by sample."""

    def __init__(self, rule: RuleSpec, subject: Subject) -> None:
        self.rule = rule
        self.subject = subject
        self.status: AlertStatus | None = None
        self.fired_at: datetime | None = None
        self.peak: float | None = None
        self.incidents: list[Incident] = []

    def feed(self, reading: Reading, at: datetime) -> None:
        outcome = step(self.rule, self.status, reading, at)
        if outcome is None:
            return
        if outcome.opened:
            self.fired_at, self.peak = at, reading.value
        elif self.fired_at is not None and reading.has_data:
            if reading.value is not None and (self.peak is None or _worse(self.rule, reading.value, self.peak)):
                self.peak = reading.value
        if outcome.action == Action.RESOLVE and self.fired_at is not None and self.status is not None:
            self.incidents.append(Incident(self.subject, self.status.started_at, self.fired_at, at, self.peak))
            self.fired_at = None
        self.status = None if outcome.action in (Action.RESOLVE, Action.DROP_PENDING) else outcome.status

    def finish(self) -> list[Incident]:
        if self.fired_at is not None and self.status is not None:
            self.incidents.append(Incident(self.subject, self.status.started_at, self.fired_at, None, self.peak))
        return self.incidents


def _worse(rule: RuleSpec, value: float, peak: float) -> bool:
    return value < peak if rule.op in ("<", "<=") else value > peak


def backtest(rule: RuleSpec, now: datetime, days: int = DEFAULT_DAYS) -> BacktestResult:
    """Replay ``rule`` over the last ``days`` of stored history."""
    since, until = now - timedelta(days=days), now
    try:
        metric = metric_registry.get(rule.metric)
    except KeyError:
        return BacktestResult(since, until, rule.metric, note=f"unknown metric {rule.metric!r}")
    if metric.history is None:
        return BacktestResult(since, until, rule.metric,
                              note=f"the metric {rule.metric} keeps no history to backtest against")
    series = metric.history(rule.scope, since, until)
    result = replay(rule, series, since, until)
    result.truncated = len(series) >= metric_registry.MAX_BACKTEST_SUBJECTS
    if not series:
        result.note = "no stored samples match the rule's cluster, group and topic"
    return result
