"""One trace as a timeline: causal order, steps, gaps, the slowest step, the saga.

Pure functions of :class:`TraceEvent` values (the read side converts rows), so the
rules can be tested without a database:

* **Causal order**: a report never comes before what caused it, whatever the clocks say:
  an event is published before it is consumed, consumed before its outcome, and a span
  comes after its parent span. Between those constraints, time order.
* **Steps**: publish (a mark), waiting in the topic (publish -> first delivery to a
  group), processing (delivery -> outcome), failures and dead-letters, duplicate
  deliveries (a group receiving an event again after it had processed it), events an
  expected group never consumed ("missing": where an order got stuck), and gaps when
  nothing was reported for a noticeable share of the trace.
* **Saga**: the distinct business events in order, each marked when it compensates an
  earlier one (``attributes.compensation`` / ``attributes.compensates`` or a name such as
  ``PaymentRefunded``), with each consumer's outcome.
"""
from __future__ import annotations

import heapq
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from monitor.choices import STAGE_ORDER, Stage, StepKind

OUTCOME_STAGES: dict[str, StepKind] = {Stage.PROCESSED: StepKind.PROCESS, Stage.FAILED: StepKind.FAILED,
                  Stage.DEAD_LETTERED: StepKind.DEAD_LETTERED}
# Steps that take time and can be "the slowest"; marks and open-ended steps cannot.
TIMED_KINDS = {StepKind.OUTBOX, StepKind.QUEUE_WAIT, StepKind.PROCESS, StepKind.FAILED, StepKind.DEAD_LETTERED, StepKind.GAP}
_COMPENSATION_NAME = re.compile(r"(compensat|cancel|refund|revert|rollback|roll_back|undo|releas|void|reversal)", re.I)


@dataclass(frozen=True)
class TraceEvent:
    pk: int
    event_id: str
    type: str
    service: str
    stage: str
    timestamp: datetime
    received_at: datetime | None = None
    topic: str = ""
    partition: int | None = None
    offset: int | None = None
    key: str = ""
    consumer_group: str = ""
    schema_version: int | None = None
    trace_id: str = ""
    span_id: str = ""
    parent_span_id: str = ""
    attributes: Mapping[str, Any] | None = None


@dataclass
class Step:
    kind: str
    row: str
    service: str
    event_id: str
    event_type: str
    start: datetime
    end: datetime
    topic: str = ""
    consumer_group: str = ""
    partition: int | None = None
    offset: int | None = None
    duplicate: bool = False
    slowest: bool = False
    detail: str = ""

    @property
    def duration_seconds(self) -> float:
        return max(0.0, (self.end - self.start).total_seconds())

    @property
    def kind_label(self) -> str:
        return StepKind(self.kind).label


@dataclass(frozen=True)
class SagaOutcome:
    consumer: str  # "service (group)"
    stage: str
    failed_attempts: int = 0  # failures reported by this consumer before its final stage


@dataclass(frozen=True)
class SagaStep:
    number: int
    event_id: str
    type: str
    service: str
    topic: str
    compensation: bool
    compensates: str
    outcomes: tuple[SagaOutcome, ...]


@dataclass
class Timeline:
    start: datetime
    end: datetime
    rows: list[str]
    steps: list[Step]
    slowest: Step | None
    stuck: str
    saga: list[SagaStep] = field(default_factory=list)
    stuck_error: str = ""  # the error message behind ``stuck`` (dead-lettering's or last failure's)

    @property
    def duration_seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def causal_order(events: Iterable[TraceEvent]) -> list[TraceEvent]:
    """Topological order of the happens-before constraints, earliest timestamp first
    among the reports that are free to go; bad data (cycles) falls back to time order."""
    items = list(events)
    if not items:
        return []
    before: dict[int, set[int]] = defaultdict(set)  # index -> indexes that must come after it
    by_event: dict[str, list[int]] = defaultdict(list)
    span_owner: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        by_event[item.event_id].append(index)
        if item.span_id:
            span_owner[item.span_id].append(index)
    for indexes in by_event.values():
        publishes = [i for i in indexes if items[i].stage == Stage.PUBLISHED]
        outbox_writes = [i for i in indexes if items[i].stage == Stage.OUTBOX]
        receipts = [i for i in indexes if items[i].stage not in (Stage.PUBLISHED, Stage.OUTBOX)]
        first_publish = min(publishes, key=lambda i: (items[i].timestamp, items[i].pk), default=None)
        if first_publish is not None:
            for receipt in receipts:
                before[first_publish].add(receipt)
            for write in outbox_writes:  # written to the outbox, then relayed
                before[write].add(first_publish)
        by_consumer: dict[tuple[str, str], list[int]] = defaultdict(list)
        for receipt in receipts:
            by_consumer[(items[receipt].service, items[receipt].consumer_group)].append(receipt)
        for reports in by_consumer.values():
            deliveries = [i for i in reports if items[i].stage == Stage.CONSUMED]
            outcomes = [i for i in reports if items[i].stage != Stage.CONSUMED]
            if deliveries:
                first_delivery = min(deliveries, key=lambda i: (items[i].timestamp, items[i].pk))
                for outcome in outcomes:
                    before[first_delivery].add(outcome)
    for index, item in enumerate(items):
        if item.parent_span_id and item.parent_span_id != item.span_id:
            cause = _cause(items, span_owner.get(item.parent_span_id, []), item.service)
            if cause is not None and cause != index:
                before[cause].add(index)
    indegree = [0] * len(items)
    for successors in before.values():
        for successor in successors:
            indegree[successor] += 1

    def priority(i: int) -> tuple:
        item = items[i]
        return (item.timestamp, STAGE_ORDER.get(item.stage, 9), item.pk, i)

    ready = [priority(i) for i in range(len(items)) if indegree[i] == 0]
    heapq.heapify(ready)
    placed: list[int] = []
    done = [False] * len(items)
    while ready:
        index = heapq.heappop(ready)[-1]
        done[index] = True
        placed.append(index)
        for successor in before.get(index, ()):
            indegree[successor] -= 1
            if indegree[successor] == 0:
                heapq.heappush(ready, priority(successor))
    if len(placed) < len(items):  # a cycle in reported parents: the rest in time order
        placed.extend(sorted((i for i in range(len(items)) if not done[i]), key=priority))
    return [items[i] for i in placed]


def _cause(items: Sequence[TraceEvent], parent_reports: list[int], service: str) -> int | None:
    """The report a child span follows: the parent message's delivery to the service
    that emitted the child, else the parent's publication, else its first report.
    (Every report about one message shares the message's span, and the parent's
    "processed" usually comes after the child was published, so "after every parent
    report" would be wrong.)"""
    if not parent_reports:
        return None

    def earliest(indexes: list[int]) -> int | None:
        return min(indexes, key=lambda i: (items[i].timestamp, items[i].pk), default=None)

    for chosen in (
        earliest([i for i in parent_reports if items[i].stage == Stage.CONSUMED and items[i].service == service]),
        earliest([i for i in parent_reports if items[i].stage == Stage.PUBLISHED]),
        earliest(parent_reports),
    ):
        if chosen is not None:
            return chosen
    return None


def consumer_label(service: str, consumer_group: str) -> str:
    return f"{service} ({consumer_group})" if consumer_group else service


def is_compensation(item: TraceEvent) -> tuple[bool, str]:
    attributes = item.attributes or {}
    compensates = attributes.get("compensates")
    if compensates:
        return True, str(compensates)
    flag = attributes.get("compensation")
    if isinstance(flag, bool) or flag in ("true", "false"):
        return flag in (True, "true"), ""
    return bool(_COMPENSATION_NAME.search(item.type)), ""


def build_timeline(
    ordered: Sequence[TraceEvent],
    expected_groups: Mapping[str, Iterable[str]] | None = None,
    gap_fraction: float = 0.1,
    gap_min_seconds: float = 0.01,
) -> Timeline:
    """Steps of a trace whose events are already in causal order. ``expected_groups``
    maps a topic to the consumer groups that must read it (for "missing" steps)."""
    if not ordered:
        raise ValueError("a timeline needs at least one event")
    expected_groups = expected_groups or {}
    start = min(e.timestamp for e in ordered)
    end = max(e.timestamp for e in ordered)
    steps: list[Step] = []
    by_event: dict[str, list[TraceEvent]] = defaultdict(list)
    for item in ordered:
        by_event[item.event_id].append(item)

    for event_id, reports in by_event.items():
        publishes = [r for r in reports if r.stage == Stage.PUBLISHED]
        first_publish = publishes[0] if publishes else None
        for write in (r for r in reports if r.stage == Stage.OUTBOX):
            relayed = first_publish.timestamp if first_publish is not None else end
            steps.append(Step(
                kind=StepKind.OUTBOX, row=write.service, service=write.service, event_id=event_id,
                event_type=write.type, start=write.timestamp, end=max(write.timestamp, relayed), topic=write.topic,
                detail="waited in the outbox" if first_publish is not None else "written to the outbox, never published",
            ))
        for number, publish in enumerate(publishes):
            steps.append(Step(
                kind=StepKind.PUBLISH, row=publish.service, service=publish.service, event_id=event_id,
                event_type=publish.type, start=publish.timestamp, end=publish.timestamp, topic=publish.topic,
                partition=publish.partition, offset=publish.offset, duplicate=number > 0,
                detail="published again" if number > 0 else "",
            ))
        by_consumer: dict[tuple[str, str], list[TraceEvent]] = defaultdict(list)
        for report in reports:
            if report.stage not in (Stage.PUBLISHED, Stage.OUTBOX):
                by_consumer[(report.service, report.consumer_group)].append(report)
        for (service, group), consumer_reports in by_consumer.items():
            steps.extend(_consumer_steps(service, group, consumer_reports, first_publish))
        if first_publish is not None and first_publish.topic:
            seen_groups = {group for _, group in by_consumer}
            for group in sorted(set(expected_groups.get(first_publish.topic, ())) - seen_groups):
                steps.append(Step(
                    kind=StepKind.MISSING, row=consumer_label("?", group), service="", event_id=event_id,
                    event_type=first_publish.type, start=first_publish.timestamp, end=end,
                    topic=first_publish.topic, consumer_group=group,
                    detail=f"group {group} never reported this event",
                ))

    steps.extend(_gaps(steps, start, end, gap_fraction, gap_min_seconds))
    steps.sort(key=lambda s: (s.start, s.kind == StepKind.GAP, s.end))
    rows = list(dict.fromkeys(s.row for s in steps if s.kind != StepKind.GAP))
    timed = [s for s in steps if s.kind in TIMED_KINDS and s.duration_seconds > 0]
    slowest = max(timed, key=lambda s: s.duration_seconds, default=None)
    if slowest is not None:
        slowest.slowest = True
    stuck = _stuck_at(steps)
    return Timeline(start=start, end=end, rows=rows, steps=steps, slowest=slowest,
                    stuck=stuck, saga=saga_steps(ordered), stuck_error=_stuck_error(steps) if stuck else "")


def _consumer_steps(service: str, group: str, reports: list[TraceEvent], publish: TraceEvent | None) -> list[Step]:
    row = consumer_label(service, group)
    steps: list[Step] = []
    deliveries = [r for r in reports if r.stage == Stage.CONSUMED]
    first_receipt = deliveries[0] if deliveries else reports[0]
    if publish is not None and first_receipt.timestamp >= publish.timestamp:
        steps.append(Step(
            kind=StepKind.QUEUE_WAIT, row=row, service=service, event_id=first_receipt.event_id,
            event_type=first_receipt.type, start=publish.timestamp, end=first_receipt.timestamp,
            topic=first_receipt.topic or publish.topic, consumer_group=group,
            partition=first_receipt.partition, offset=first_receipt.offset,
        ))
    processed_before = False
    pending: TraceEvent | None = None  # the delivery waiting for its outcome
    pending_duplicate = False

    def close(outcome: TraceEvent | None) -> None:
        nonlocal pending, pending_duplicate
        opened = pending or outcome
        assert opened is not None
        kind = OUTCOME_STAGES[outcome.stage] if outcome is not None else StepKind.CONSUMED
        steps.append(Step(
            kind=kind, row=row, service=service, event_id=opened.event_id, event_type=opened.type,
            start=opened.timestamp, end=outcome.timestamp if outcome is not None else opened.timestamp,
            topic=opened.topic, consumer_group=group, partition=opened.partition, offset=opened.offset,
            duplicate=pending_duplicate,
            detail=_outcome_detail(outcome, pending_duplicate),
        ))
        pending, pending_duplicate = None, False

    for report in reports:
        if report.stage == Stage.CONSUMED:
            if pending is not None:
                close(None)
            pending, pending_duplicate = report, processed_before
        else:
            close(report)
            if report.stage == Stage.PROCESSED:
                processed_before = True
    if pending is not None:
        close(None)
    return steps


def _outcome_detail(outcome: TraceEvent | None, duplicate: bool) -> str:
    parts = []
    if duplicate:
        parts.append("delivered again after it had been processed")
    if outcome is None:
        parts.append("no outcome reported")
    elif outcome.attributes and outcome.stage in (Stage.FAILED, Stage.DEAD_LETTERED):
        reason = outcome.attributes.get("error") or outcome.attributes.get("reason")
        if reason:
            parts.append(str(reason)[:200])
    return "; ".join(parts)


def _gaps(steps: list[Step], start: datetime, end: datetime, fraction: float, minimum: float) -> list[Step]:
    """Stretches of the trace where no step was running, long enough to notice."""
    threshold = max(minimum, fraction * (end - start).total_seconds())
    intervals = sorted(
        ((s.start, s.end, index) for index, s in enumerate(steps) if s.kind != StepKind.MISSING)
    )
    gaps: list[Step] = []
    covered_until: datetime | None = None
    for begin, finish, index in intervals:
        step = steps[index]
        if covered_until is not None and (begin - covered_until).total_seconds() >= threshold:
            gaps.append(Step(
                kind=StepKind.GAP, row=step.row, service=step.service, event_id=step.event_id,
                event_type=step.event_type, start=covered_until, end=begin,
                detail=f"nothing reported for {(begin - covered_until).total_seconds():.3g} s before this step",
            ))
        covered_until = finish if covered_until is None else max(covered_until, finish)
    return gaps


def _stuck_at(steps: list[Step]) -> str:
    """One line for the on-call engineer: where did this trace stop?"""
    for kind, text in (
        (StepKind.DEAD_LETTERED, "dead-lettered by {row}"),
        (StepKind.MISSING, "never consumed by group {group} from {topic}"),
    ):
        hit = next((s for s in steps if s.kind == kind), None)
        if hit is not None:
            return text.format(row=hit.row, group=hit.consumer_group, topic=hit.topic)
    last_outcome: dict[tuple[str, str], Step] = {}
    for step in steps:
        if step.kind in (StepKind.PROCESS, StepKind.FAILED):
            last_outcome[(step.event_id, step.row)] = step
    failed = [s for s in last_outcome.values() if s.kind == StepKind.FAILED]
    if failed:
        return f"failed in {failed[0].row} and not processed since"
    open_deliveries = [s for s in steps if s.kind == StepKind.CONSUMED
                       and (s.event_id, s.row) not in last_outcome]
    if open_deliveries:
        return f"consumed by {open_deliveries[0].row}, no outcome reported"
    return ""


def _stuck_error(steps: list[Step]) -> str:
    """The error message where the trace stopped: of the dead-lettered event's failures (or
    its dead-lettering), else of the last failure; empty when none was reported."""
    dead = next((s for s in steps if s.kind == StepKind.DEAD_LETTERED), None)
    reasons = [s.detail for s in steps if s.kind in (StepKind.FAILED, StepKind.DEAD_LETTERED) and s.detail
               and (dead is None or (s.event_id, s.row) == (dead.event_id, dead.row))]
    return reasons[-1] if reasons else ""


def saga_steps(ordered: Sequence[TraceEvent]) -> list[SagaStep]:
    """The business events of the trace in causal order; empty for single-event traces."""
    first_seen: dict[str, TraceEvent] = {}
    finals: dict[str, dict[str, str]] = defaultdict(dict)
    failures: dict[str, Counter[str]] = defaultdict(Counter)
    for item in ordered:
        # causal order puts an event's first publication before any of its receipts
        first_seen.setdefault(item.event_id, item)
        if item.stage not in (Stage.PUBLISHED, Stage.OUTBOX):
            consumer = consumer_label(item.service, item.consumer_group)
            finals[item.event_id][consumer] = item.stage
            if item.stage == Stage.FAILED:
                failures[item.event_id][consumer] += 1
    if len(first_seen) < 2:
        return []
    result = []
    for number, (event_id, head) in enumerate(first_seen.items(), start=1):
        compensation, compensates = is_compensation(head)
        result.append(SagaStep(
            number=number, event_id=event_id, type=head.type, service=head.service, topic=head.topic,
            compensation=compensation, compensates=compensates,
            # An earlier failed attempt stays visible even when a retry succeeded.
            outcomes=tuple(SagaOutcome(consumer, stage, failures[event_id][consumer] - (stage == Stage.FAILED))
                           for consumer, stage in finals[event_id].items()),
        ))
    return result
