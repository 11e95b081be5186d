"""Rule matching and the alert state machine: pure functions of plain data.

Nothing here touches the database, so the engine (live evaluation) and the backtest
(replay over stored history) share exactly one definition of when an alert is pending,
fires and resolves.

States of one (rule, subject):

* no open alert -> the condition holds: ``pending`` (or ``firing`` at once when
  ``for_seconds`` is 0);
* ``pending`` -> held ``for_seconds`` since it began: ``firing``; stops holding (or the
  data stops): the pending alert is dropped, it never was an incident;
* ``firing`` -> stops holding: it is *clearing* (``clear_since``) and resolves once it has
  stayed clear ``keep_firing_seconds`` (damps flapping); holds again: clearing is reset;
* no data while firing: the alert stays firing and says so (``no_data``), unless the
  data is gone for good (group deleted, no longer matched), which resolves it *with that
  reason*, never silently;
* a *partial* value (a total over partially unknown partitions): no new data for any
  state, pending or firing; the state is kept and nothing is sent.
"""
from __future__ import annotations

import enum
import fnmatch
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache

from monitor.choices import AlertState, Operator, Severity

SUBJECT_SEPARATOR = "/"

_OPERATORS: dict[str, Callable[[float, float], bool]] = {
    Operator.GT: operator.gt,
    Operator.GE: operator.ge,
    Operator.LT: operator.lt,
    Operator.LE: operator.le,
    Operator.EQ: operator.eq,
}


# -- subjects and globs -------------------------------------------------------------

@dataclass(frozen=True, order=True)
class Subject:
    """What an alert is about. Group-level metrics leave ``topic`` empty,
    cluster-level metrics leave ``group`` and ``topic`` empty."""

    cluster: str
    group: str = ""
    topic: str = ""

    @property
    def key(self) -> str:
        return SUBJECT_SEPARATOR.join((self.cluster, self.group, self.topic))

    @classmethod
    def from_key(cls, key: str) -> "Subject":
        cluster, _, rest = key.partition(SUBJECT_SEPARATOR)
        group, _, topic = rest.partition(SUBJECT_SEPARATOR)
        return cls(cluster, group, topic)

    def describe(self) -> str:
        """Human form: ``prod / billing / payments`` without the empty parts."""
        return " / ".join(part for part in (self.cluster, self.group, self.topic) if part)


def glob_error(pattern: str) -> str | None:
    """Why ``pattern`` is not an acceptable glob, or None when it is."""
    if not isinstance(pattern, str) or not pattern:
        return "must be a non-empty glob (use \"*\" for everything)"
    if any(ch.isspace() for ch in pattern):
        return f"glob {pattern!r} must not contain spaces"
    depth = 0
    for ch in pattern:
        if ch == "[":
            if depth:
                return f"glob {pattern!r} has a '[' inside a '[...]' class"
            depth = 1
        elif ch == "]" and depth:
            depth = 0
    if depth:
        return f"glob {pattern!r} has an unclosed '['"
    return None


def literal_glob(name: str) -> str:
    """A glob matching exactly ``name``: a group named ``billing*`` silences only itself."""
    return "".join(f"[{ch}]" if ch in "*?[" else ch for ch in name)


def _is_literal(pattern: str) -> bool:
    return not any(ch in pattern for ch in "*?[")


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> Callable[[str], re.Match[str] | None]:
    return re.compile(fnmatch.translate(pattern)).match


def _everything(value: str) -> bool:
    return True


@lru_cache(maxsize=4096)
def glob_matcher(pattern: str) -> Callable[[str], bool]:
    """``glob_matches`` with the pattern bound: built once per pattern, for loops over
    thousands of subjects."""
    if pattern == "*":
        return _everything
    if _is_literal(pattern):
        return pattern.__eq__
    compiled = _compiled(pattern)
    return lambda value: compiled(value) is not None


def glob_matches(pattern: str, value: str) -> bool:
    """Case-sensitive shell glob; ``*`` also matches the empty part of a subject."""
    return glob_matcher(pattern)(value)


def literal_values(patterns: Iterable[str]) -> set[str] | None:
    """The exact names the patterns can match, or None when any of them is a glob
    (lets a metric narrow its query to named clusters)."""
    values: set[str] = set()
    for pattern in patterns:
        if not _is_literal(pattern):
            return None
        values.add(pattern)
    return values


# -- rules ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Scope:
    cluster: str = "*"
    group: str = "*"
    topic: str = "*"

    def matches(self, subject: Subject, topics: Iterable[str] = ()) -> bool:
        """Does the subject fall under this scope? A group-level subject (no topic)
        matches a topic glob when one of the group's ``topics`` matches it."""
        if self.cluster == self.group == self.topic == "*":
            return True
        if not glob_matches(self.cluster, subject.cluster) or not glob_matches(self.group, subject.group):
            return False
        if subject.topic or self.topic == "*":
            return glob_matches(self.topic, subject.topic)
        return any(glob_matches(self.topic, topic) for topic in topics)


@dataclass(frozen=True)
class RuleSpec:
    """An alert rule as plain data (built from the model, the YAML file or an unsaved form)."""

    name: str
    metric: str
    op: str
    threshold: float
    id: int | None = None
    cluster: str = "*"
    group: str = "*"
    topic: str = "*"
    for_seconds: int = 0
    keep_firing_seconds: int = 0
    repeat_seconds: int = 0
    severity: str = Severity.WARNING
    enabled: bool = True

    @property
    def scope(self) -> Scope:
        return Scope(self.cluster, self.group, self.topic)


def comparison(op: str) -> Callable[[float, float], bool]:
    """The operator as a function (NaN compares false with every operator)."""
    return _OPERATORS[op]


def condition_holds(value: float, op: str, threshold: float) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return _OPERATORS[op](value, threshold)


# -- readings --------------------------------------------------------------------------

@dataclass(frozen=True)
class Reading:
    """The latest value of a metric for one subject, or why there is none.

    ``no_data_reason`` set means the value is unknown. ``final`` says the data is gone
    for good (group deleted, topic no longer consumed): a firing alert then resolves,
    saying why, instead of waiting forever. ``detail`` is extra context for messages
    (e.g. the text form of a value, ``topics`` of a group).
    """

    value: float | None
    no_data_reason: str = ""
    final: bool = False
    detail: Mapping[str, object] = field(default_factory=dict)
    partial: bool = False
    """The value is partial (some partitions unknown in the latest poll): no new data,
    the alert keeps its state and nothing is sent; never read as a drop."""

    @property
    def has_data(self) -> bool:
        return not self.no_data_reason and self.value is not None

    @classmethod
    def no_data(cls, reason: str, final: bool = False, **detail: object) -> "Reading":
        return cls(value=None, no_data_reason=reason, final=final, detail=detail)

    @classmethod
    def partial_value(cls, reason: str, **detail: object) -> "Reading":
        """A value over partially unknown partitions: treated as no new data."""
        return cls(value=None, no_data_reason=reason, detail=detail, partial=True)


# -- the state machine -------------------------------------------------------------------

class Action(str, enum.Enum):
    CREATE_PENDING = "create_pending"
    CREATE_FIRING = "create_firing"
    FIRE = "fire"                  # pending -> firing
    KEEP = "keep"                  # stays pending or firing (value, clearing, no-data updated)
    RESOLVE = "resolve"            # firing -> resolved
    DROP_PENDING = "drop_pending"  # pending that stopped holding: not an incident


@dataclass(frozen=True)
class AlertStatus:
    """What the state machine needs to know about an open alert."""

    state: str
    started_at: datetime
    id: int | None = None
    fired_at: datetime | None = None
    clear_since: datetime | None = None
    last_notified_at: datetime | None = None
    acknowledged_at: datetime | None = None
    no_data: bool = False


@dataclass(frozen=True)
class Step:
    """The outcome of evaluating one rule for one subject at one instant."""

    action: Action
    status: AlertStatus | None  # the alert after the step (None when dropped)
    reading: Reading
    resolved_reason: str = ""

    @property
    def opened(self) -> bool:
        return self.action in (Action.CREATE_FIRING, Action.FIRE)


def step(rule: RuleSpec, current: AlertStatus | None, reading: Reading, now: datetime) -> Step | None:
    """Advance one (rule, subject) by one evaluation. None means nothing to record."""
    if reading.partial:
        # No new data: whatever the state, it stays (a pending alert keeps its start).
        return None if current is None else Step(Action.KEEP, current, reading)
    holds = reading.value is not None and reading.has_data and condition_holds(reading.value, rule.op, rule.threshold)
    if current is None:
        if not holds:
            return None
        if rule.for_seconds <= 0:
            status = AlertStatus(state=AlertState.FIRING, started_at=now, fired_at=now)
            return Step(Action.CREATE_FIRING, status, reading)
        return Step(Action.CREATE_PENDING, AlertStatus(state=AlertState.PENDING, started_at=now), reading)

    if current.state == AlertState.PENDING:
        if not holds:
            return Step(Action.DROP_PENDING, None, reading)
        if now - current.started_at >= timedelta(seconds=rule.for_seconds):
            return Step(Action.FIRE, replace(current, state=AlertState.FIRING, fired_at=now, no_data=False), reading)
        return Step(Action.KEEP, replace(current, no_data=False), reading)

    # firing
    if not reading.has_data:
        if reading.final:
            return Step(Action.RESOLVE, replace(current, state=AlertState.RESOLVED, no_data=True), reading,
                        resolved_reason=reading.no_data_reason)
        return Step(Action.KEEP, replace(current, no_data=True), reading)
    if holds:
        return Step(Action.KEEP, replace(current, clear_since=None, no_data=False), reading)
    clear_since = current.clear_since or now
    if now - clear_since >= timedelta(seconds=rule.keep_firing_seconds):
        return Step(Action.RESOLVE, replace(current, state=AlertState.RESOLVED, clear_since=clear_since,
                                             no_data=False), reading)
    return Step(Action.KEEP, replace(current, clear_since=clear_since, no_data=False), reading)


def reminder_due(rule: RuleSpec, status: AlertStatus, now: datetime) -> bool:
    """A reminder goes out every ``repeat_seconds`` while firing, unless acknowledged or
    clearing (in the keep-firing period the condition no longer holds: nothing to remind of)."""
    return (
        status.state == AlertState.FIRING
        and status.clear_since is None
        and rule.repeat_seconds > 0
        and status.acknowledged_at is None
        and status.last_notified_at is not None
        and now - status.last_notified_at >= timedelta(seconds=rule.repeat_seconds)
    )


# -- validation (shared by the admin and apply_config) ----------------------------------------

@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str


def validate_rule_fields(values: Mapping[str, object], known_metrics: Iterable[str]) -> list[FieldProblem]:
    """Problems with a rule's fields, each naming the field. ``threshold`` must already
    be a number (the metric parses text such as ``stopped``)."""
    problems: list[FieldProblem] = []
    for name in ("cluster", "group", "topic"):
        if name in values:
            error = glob_error(str(values[name]))
            if error:
                problems.append(FieldProblem(name, error))
    metric = values.get("metric")
    known = set(known_metrics)
    if metric not in known:
        problems.append(FieldProblem("metric", f"unknown metric {metric!r}; known: {', '.join(sorted(known))}"))
    op = values.get("op", Operator.GT)
    if op not in _OPERATORS:
        problems.append(FieldProblem("op", f"unknown operator {op!r}; use one of {' '.join(_OPERATORS)}"))
    threshold = values.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        problems.append(FieldProblem("threshold", "must be a number"))
    elif threshold < 0:
        problems.append(FieldProblem("threshold", f"must not be negative (got {threshold:g})"))
    for name in ("for_seconds", "keep_firing_seconds", "repeat_seconds"):
        if name in values:
            number = values[name]
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                problems.append(FieldProblem(name, "must be a whole number of seconds, 0 or more"))
    severity = values.get("severity", Severity.WARNING)
    if severity not in Severity.values:
        problems.append(FieldProblem("severity", f"unknown severity {severity!r}; use {', '.join(Severity.values)}"))
    return problems
