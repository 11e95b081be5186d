"""Failure modes of event-driven systems, as pure functions of plain event tuples.

Each detector takes :class:`EventFact` tuples (one stored report each) and returns
:class:`FindingData`: what it found, a value the alert rules can compare, a summary an
on-call engineer can act on, and example event/trace ids that link to the trace view.
No database here: :mod:`monitor.events.runner` loads the window and stores the findings.

A consumer is identified by its consumer group, or by the reporting service when a
report names no group.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from monitor.choices import CONSUMER_STAGES, HANDLED_STAGES, FindingKind, Stage

MAX_STORM_FINDINGS = 20


class EventFact(NamedTuple):
    """One stored report, as the detectors need it (column order of the load query)."""

    event_id: str
    type: str
    service: str
    stage: str
    timestamp: dt.datetime
    topic: str = ""
    partition: int | None = None
    offset: int | None = None
    key: str = ""
    consumer_group: str = ""
    schema_version: int | None = None
    trace_id: str = ""
    span_id: str = ""
    parent_span_id: str = ""

    @property
    def consumer(self) -> str:
        return self.consumer_group or self.service


FACT_FIELDS = EventFact._fields


class Subscription(NamedTuple):
    """An expected subscription: ``group`` must consume what is published on ``topic``."""

    topic: str
    consumer_group: str
    first_seen_at: dt.datetime


@dataclass(frozen=True)
class FindingData:
    kind: str
    fingerprint: str
    value: float
    summary: str
    service: str = ""
    topic: str = ""
    consumer_group: str = ""
    event_type: str = ""
    examples: list[dict[str, object]] = field(default_factory=list)


def fingerprint(kind: str, *parts: object) -> str:
    text = "\x1f".join([kind, *(str(part) for part in parts)])
    return hashlib.sha256(text.encode()).hexdigest()


def example(fact: EventFact, **extra: object) -> dict[str, object]:
    return {"event_id": fact.event_id, "trace_id": fact.trace_id,
            "timestamp": fact.timestamp.isoformat().replace("+00:00", "Z"), **extra}


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# -- expected subscriptions -------------------------------------------------------------------

def learn_subscriptions(events: Iterable[EventFact]) -> dict[tuple[str, str], dt.datetime]:
    """(topic, group) pairs seen consuming, with the first time each was seen."""
    learned: dict[tuple[str, str], dt.datetime] = {}
    for fact in events:
        if fact.stage in CONSUMER_STAGES and fact.topic:
            pair = (fact.topic, fact.consumer)
            if pair not in learned or fact.timestamp < learned[pair]:
                learned[pair] = fact.timestamp
    return learned


# -- lost --------------------------------------------------------------------------------------

def detect_lost(events: Sequence[EventFact], subscriptions: Iterable[Subscription], now: dt.datetime,
                lost_after_seconds: float, max_examples: int = 5) -> list[FindingData]:
    """Published events that an expected group has not consumed (nor failed, nor
    dead-lettered) within ``lost_after_seconds`` of publication."""
    expected: dict[str, list[Subscription]] = defaultdict(list)
    for subscription in subscriptions:
        expected[subscription.topic].append(subscription)
    if not expected:
        return []
    deadline = now - dt.timedelta(seconds=lost_after_seconds)
    received = {(fact.event_id, fact.consumer) for fact in events if fact.stage in CONSUMER_STAGES}
    lost: dict[tuple[str, str], dict[str, EventFact]] = defaultdict(dict)
    for fact in events:
        if fact.stage != Stage.PUBLISHED or fact.timestamp > deadline or fact.topic not in expected:
            continue
        for subscription in expected[fact.topic]:
            if fact.timestamp < subscription.first_seen_at:
                continue  # published before the group started reading the topic
            if (fact.event_id, subscription.consumer_group) not in received:
                lost[(fact.topic, subscription.consumer_group)].setdefault(fact.event_id, fact)
    findings = []
    for (topic, group), facts in sorted(lost.items()):
        ordered = sorted(facts.values(), key=lambda f: f.timestamp)
        types = sorted({f.type for f in ordered})
        findings.append(FindingData(
            kind=FindingKind.LOST, fingerprint=fingerprint(FindingKind.LOST, topic, group),
            value=float(len(ordered)), topic=topic, consumer_group=group,
            service=ordered[0].service, event_type=types[0] if len(types) == 1 else "",
            summary=(f"{_plural(len(ordered), 'event')} published on {topic} not consumed by {group} "
                     f"within {lost_after_seconds:.0f} s ({', '.join(types[:3])})"),
            examples=[example(f) for f in ordered[:max_examples]],
        ))
    return findings


# -- duplicates ------------------------------------------------------------------------------

REDELIVERY = "redelivery"
DUPLICATE_PUBLICATION = "duplicate_publication"


def detect_duplicates(events: Sequence[EventFact], max_examples: int = 5) -> list[FindingData]:
    """The same event taking effect twice in one group.

    Counted: processed more than once, or consumed more than once without a failure
    that explains the retry. The cause: a *redelivery* (the same offset again, e.g. a
    rebalance before the commit) or a *duplicate publication* (the same event id at
    another offset, e.g. a producer retry without idempotence).
    """
    published_offsets: dict[str, set[tuple[str, int | None, int]]] = defaultdict(set)
    by_delivery: dict[tuple[str, str], list[EventFact]] = defaultdict(list)
    for fact in events:
        if fact.stage == Stage.PUBLISHED:
            if fact.offset is not None:
                published_offsets[fact.event_id].add((fact.topic, fact.partition, fact.offset))
        elif fact.stage in CONSUMER_STAGES:
            by_delivery[(fact.consumer, fact.event_id)].append(fact)
    found: dict[tuple[str, str, str], list[tuple[EventFact, list[int]]]] = defaultdict(list)
    for (group, event_id), facts in by_delivery.items():
        processed = [f for f in facts if f.stage == Stage.PROCESSED]
        consumed = [f for f in facts if f.stage == Stage.CONSUMED]
        failures = sum(1 for f in facts if f.stage in (Stage.FAILED, Stage.DEAD_LETTERED))
        repeated = processed if len(processed) > 1 else consumed if len(consumed) > 1 and not failures else None
        if repeated is None:
            continue
        # The consumer's own offsets say best what it saw; the producer's fill in when it reports none.
        offsets = {(f.topic, f.partition, f.offset) for f in repeated if f.offset is not None}
        if not offsets:
            offsets = published_offsets.get(event_id, set())
        cause = DUPLICATE_PUBLICATION if len(offsets) > 1 else REDELIVERY
        first = min(repeated, key=lambda f: f.timestamp)
        found[(group, first.topic, cause)].append((first, sorted(o for _, _, o in offsets)))
    findings = []
    for (group, topic, cause), items in sorted(found.items()):
        items.sort(key=lambda item: item[0].timestamp)
        what = ("redelivered (same offset)" if cause == REDELIVERY
                else "published more than once (same event id at another offset)")
        findings.append(FindingData(
            kind=FindingKind.DUPLICATE, fingerprint=fingerprint(FindingKind.DUPLICATE, group, topic, cause),
            value=float(len(items)), topic=topic, consumer_group=group, service=items[0][0].service,
            event_type=items[0][0].type if len({f.type for f, _ in items}) == 1 else "",
            summary=f"{_plural(len(items), 'event')} handled more than once by {group}"
                    f"{' on ' + topic if topic else ''}: {what}",
            examples=[example(f, cause=cause, offsets=offsets) for f, offsets in items[:max_examples]],
        ))
    return findings


# -- out of order ----------------------------------------------------------------------------

def detect_out_of_order(events: Sequence[EventFact], max_examples: int = 5) -> list[FindingData]:
    """Per aggregate key, a group handling an older event after a newer one.

    "Older" is the offset when all the key's events sit in one partition, else the
    publication time. A group's handling is its ``processed`` reports (``consumed`` when
    it reports no processing); only the first handling of each event counts, so a
    redelivery is a duplicate, not a reordering.
    """
    published_at: dict[str, dt.datetime] = {}
    handling: dict[str, dict[str, list[EventFact]]] = defaultdict(lambda: defaultdict(list))
    for fact in events:
        if fact.stage == Stage.PUBLISHED:
            if fact.event_id not in published_at or fact.timestamp < published_at[fact.event_id]:
                published_at[fact.event_id] = fact.timestamp
        elif fact.stage in HANDLED_STAGES:
            handling[fact.consumer][fact.stage].append(fact)
    found: dict[tuple[str, str], list[tuple[EventFact, EventFact]]] = defaultdict(list)
    for group, by_stage in handling.items():
        facts = by_stage.get(Stage.PROCESSED) or by_stage.get(Stage.CONSUMED) or []
        by_key: dict[str, list[EventFact]] = defaultdict(list)
        for fact in facts:
            if fact.key:
                by_key[fact.key].append(fact)
        for key_facts in by_key.values():
            key_facts.sort(key=lambda f: f.timestamp)
            seen: set[str] = set()
            firsts = []
            for fact in key_facts:
                if fact.event_id not in seen:
                    seen.add(fact.event_id)
                    firsts.append(fact)
            if len(firsts) < 2:
                continue
            one_partition = len({(f.topic, f.partition) for f in firsts}) == 1 and all(
                f.offset is not None and f.partition is not None for f in firsts)
            newest: tuple[object, EventFact] | None = None
            for fact in firsts:
                order = fact.offset if one_partition else published_at.get(fact.event_id)
                if order is None:
                    continue
                if newest is not None and order < newest[0]:  # type: ignore[operator]
                    found[(group, fact.topic)].append((fact, newest[1]))
                elif newest is None or order > newest[0]:  # type: ignore[operator]
                    newest = (order, fact)
    findings = []
    for (group, topic), items in sorted(found.items()):
        findings.append(FindingData(
            kind=FindingKind.OUT_OF_ORDER, fingerprint=fingerprint(FindingKind.OUT_OF_ORDER, group, topic),
            value=float(len(items)), topic=topic, consumer_group=group, service=items[0][0].service,
            event_type=items[0][0].type if len({f.type for f, _ in items}) == 1 else "",
            summary=(f"{_plural(len(items), 'event')} handled by {group} after a newer event of the same key"
                     f"{' on ' + topic if topic else ''}"),
            examples=[example(older, key=older.key, after_event_id=newer.event_id)
                      for older, newer in items[:max_examples]],
        ))
    return findings


# -- schema drift ----------------------------------------------------------------------------

def consumer_schema_versions(events: Iterable[EventFact]) -> dict[tuple[str, str], set[int]]:
    """(event type, group) -> schema versions the group reported handling."""
    versions: dict[tuple[str, str], set[int]] = defaultdict(set)
    for fact in events:
        if fact.stage in CONSUMER_STAGES and fact.schema_version is not None:
            versions[(fact.type, fact.consumer)].add(fact.schema_version)
    return versions


def schema_matrix(events: Sequence[EventFact]) -> dict[str, dict[tuple[int | None, str, int | None], int]]:
    """Per event type: (producer version, group, consumer version) -> events, joining
    each consumer report to the publication of the same event id."""
    published: dict[str, int | None] = {}
    for fact in events:
        if fact.stage == Stage.PUBLISHED and fact.schema_version is not None:
            published[fact.event_id] = fact.schema_version
    matrix: dict[str, dict[tuple[int | None, str, int | None], int]] = defaultdict(lambda: defaultdict(int))
    for fact in events:
        if fact.stage in HANDLED_STAGES:
            matrix[fact.type][(published.get(fact.event_id), fact.consumer, fact.schema_version)] += 1
    return {event_type: dict(cells) for event_type, cells in matrix.items()}


def detect_schema_drift(events: Sequence[EventFact], known_consumer_versions: Mapping[tuple[str, str], set[int]],
                        max_examples: int = 5) -> list[FindingData]:
    """A producer publishing a schema version that a group consuming the type has
    never reported handling. ``known_consumer_versions`` covers a longer history than
    ``events`` (what "never" means); versions in ``events`` are added to it."""
    handled: dict[tuple[str, str], set[int]] = defaultdict(set)
    for pair, versions in known_consumer_versions.items():
        handled[pair] |= set(versions)
    for pair, versions in consumer_schema_versions(events).items():
        handled[pair] |= versions
    groups_by_type: dict[str, list[str]] = defaultdict(list)
    for event_type, group in handled:
        groups_by_type[event_type].append(group)
    published: dict[tuple[str, str, int], list[EventFact]] = defaultdict(list)
    for fact in events:
        if fact.stage == Stage.PUBLISHED and fact.schema_version is not None and fact.type in groups_by_type:
            published[(fact.type, fact.service, fact.schema_version)].append(fact)
    drift: dict[tuple[str, str], list[tuple[str, int, list[EventFact]]]] = defaultdict(list)
    for (event_type, producer, version), facts in published.items():
        for group in groups_by_type[event_type]:
            if version not in handled[(event_type, group)]:
                drift[(event_type, group)].append((producer, version, facts))
    findings = []
    for (event_type, group), items in sorted(drift.items()):
        items.sort(key=lambda item: (item[1], item[0]))
        facts = sorted((f for _, _, fs in items for f in fs), key=lambda f: f.timestamp)
        producers = ", ".join(f"{producer} v{version}" for producer, version, _ in items)
        known = ", ".join(f"v{v}" for v in sorted(handled[(event_type, group)]))
        findings.append(FindingData(
            kind=FindingKind.SCHEMA_DRIFT, fingerprint=fingerprint(FindingKind.SCHEMA_DRIFT, event_type, group),
            value=float(len({f.event_id for f in facts})), consumer_group=group, event_type=event_type,
            service=items[0][0], topic=facts[0].topic,
            summary=(f"{event_type}: published as {producers}; {group} has only reported handling {known}"),
            examples=[example(f, schema_version=f.schema_version) for f in facts[:max_examples]],
        ))
    return findings


# -- cascade storms -------------------------------------------------------------------------------

@dataclass(frozen=True)
class StormThresholds:
    max_events: int = 1000
    max_fanout: int = 100
    factor: float = 10.0
    min_events: int = 50
    min_baseline_traces: int = 5


def detect_cascade_storms(events: Sequence[EventFact], thresholds: StormThresholds = StormThresholds()) -> list[FindingData]:
    """Traces whose event count or fan-out exceeds a threshold, or is ``factor`` times
    the usual (median) size of traces starting with the same event type.

    Fan-out: the most events published from one parent span (one handler publishing
    many events).
    """
    traces: dict[str, list[EventFact]] = defaultdict(list)
    for fact in events:
        if fact.trace_id:
            traces[fact.trace_id].append(fact)
    stats: dict[str, tuple[int, int, EventFact]] = {}
    for trace_id, facts in traces.items():
        count = len({f.event_id for f in facts})
        children: dict[str, set[str]] = defaultdict(set)
        for fact in facts:
            if fact.stage == Stage.PUBLISHED and fact.parent_span_id:
                children[fact.parent_span_id].add(fact.event_id)
        fanout = max((len(ids) for ids in children.values()), default=0)
        published = [f for f in facts if f.stage == Stage.PUBLISHED] or facts
        root = min(published, key=lambda f: f.timestamp)
        stats[trace_id] = (count, fanout, root)
    sizes_by_root: dict[str, list[int]] = defaultdict(list)
    for count, _, root in stats.values():
        sizes_by_root[root.type].append(count)
    usual = {event_type: statistics.median(sizes) for event_type, sizes in sizes_by_root.items()
             if len(sizes) >= thresholds.min_baseline_traces}
    storms = []
    for trace_id, (count, fanout, root) in stats.items():
        reasons = []
        if count >= thresholds.max_events:
            reasons.append(f"{count} events (threshold {thresholds.max_events})")
        if fanout >= thresholds.max_fanout:
            reasons.append(f"one event fanned out to {fanout} (threshold {thresholds.max_fanout})")
        median = usual.get(root.type)
        if (median is not None and count >= thresholds.min_events
                and count >= thresholds.factor * median and not reasons):
            reasons.append(f"{count} events, {count / median:.0f}x the usual {median:g} for {root.type}")
        if reasons:
            storms.append((count, trace_id, fanout, root, reasons))
    storms.sort(key=lambda item: (-item[0], item[1]))
    return [
        FindingData(
            kind=FindingKind.CASCADE_STORM, fingerprint=fingerprint(FindingKind.CASCADE_STORM, trace_id),
            value=float(count), service=root.service, topic=root.topic, event_type=root.type,
            summary=f"trace {trace_id} started by {root.type} from {root.service}: {'; '.join(reasons)}",
            examples=[example(root, fanout=fanout)],
        )
        for count, trace_id, fanout, root, reasons in storms[:MAX_STORM_FINDINGS]
    ]


# -- failures --------------------------------------------------------------------------------

def detect_failures(events: Sequence[EventFact], max_examples: int = 5) -> list[FindingData]:
    """Failed and dead-lettered events per consumer group and event type, with the share
    of the events the group handled."""
    handled: dict[tuple[str, str], set[str]] = defaultdict(set)
    failed: dict[tuple[str, str], dict[str, EventFact]] = defaultdict(dict)
    dead: dict[tuple[str, str], dict[str, EventFact]] = defaultdict(dict)
    for fact in events:
        if fact.stage not in CONSUMER_STAGES:
            continue
        pair = (fact.consumer, fact.type)
        handled[pair].add(fact.event_id)
        if fact.stage == Stage.FAILED:
            failed[pair].setdefault(fact.event_id, fact)
        elif fact.stage == Stage.DEAD_LETTERED:
            dead[pair].setdefault(fact.event_id, fact)
    findings = []
    for pair in sorted(set(failed) | set(dead)):
        group, event_type = pair
        bad = {**failed.get(pair, {}), **dead.get(pair, {})}
        ordered = sorted(bad.values(), key=lambda f: f.timestamp)
        total = len(handled[pair])
        share = 100.0 * len(bad) / total if total else 100.0
        findings.append(FindingData(
            kind=FindingKind.FAILURE_RATE, fingerprint=fingerprint(FindingKind.FAILURE_RATE, group, event_type),
            value=float(len(bad)), consumer_group=group, event_type=event_type,
            service=ordered[0].service, topic=ordered[0].topic,
            summary=(f"{group}: {len(failed.get(pair, {}))} failed, {len(dead.get(pair, {}))} dead-lettered "
                     f"of {total} {event_type} events ({share:.1f}%)"),
            examples=[example(f, stage=f.stage) for f in ordered[:max_examples]],
        ))
    return findings
