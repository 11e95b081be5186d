"""The thin shell around the detectors: load a window of events, learn expected
subscriptions, run every detector, upsert the findings by fingerprint.

A finding that is no longer found keeps its row (history, examples) with ``value`` 0,
so an alert rule on its metric resolves.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
from collections import Counter
from dataclasses import dataclass

from django.db import transaction

from monitor.choices import FindingKind
from monitor.events import detectors, outbox
from monitor.events.config import DetectorConfig
from monitor.choices import CONSUMER_STAGES
from monitor.events.detectors import EventFact, FindingData, Subscription
from monitor.models import Event, ExpectedSubscription, Finding

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorRun:
    events: int
    truncated: bool
    learned_subscriptions: int
    findings: dict[str, int]


def load_events(since: dt.datetime, until: dt.datetime, limit: int) -> tuple[list[EventFact], bool]:
    """Reports with ``since <= timestamp <= until``, the newest ``limit`` of them."""
    rows = list(
        Event.objects.filter(timestamp__gte=since, timestamp__lte=until)
        .order_by("-timestamp")
        .values_list(*detectors.FACT_FIELDS)[: limit + 1]
    )
    truncated = len(rows) > limit
    # Types, services, stages, topics and groups repeat on every row: one string each
    # instead of one per row keeps a large window's memory down.
    intern = sys.intern
    facts = [
        EventFact(event_id, intern(type_), intern(service), intern(stage), timestamp, intern(topic), partition,
                  offset, key, intern(group), version, trace_id, span_id, parent)
        for (event_id, type_, service, stage, timestamp, topic, partition, offset, key, group, version, trace_id,
             span_id, parent) in rows[:limit]
    ]
    del rows
    facts.reverse()
    return facts, truncated


def known_consumer_versions(since: dt.datetime) -> dict[tuple[str, str], set[int]]:
    versions: dict[tuple[str, str], set[int]] = {}
    rows = (
        Event.objects.filter(timestamp__gte=since, stage__in=list(CONSUMER_STAGES), schema_version__isnull=False)
        .values_list("type", "consumer_group", "service", "schema_version")
        .distinct()
    )
    for event_type, group, service, version in rows:
        if version is None:
            continue
        versions.setdefault((event_type, group or service), set()).add(version)
    return versions


def learn(events: list[EventFact]) -> int:
    """Store (topic, group) pairs seen consuming as expected subscriptions; an existing
    row (possibly disabled in the admin) is left as it is."""
    learned = detectors.learn_subscriptions(events)
    if not learned:
        return 0
    existing = set(
        ExpectedSubscription.objects.filter(topic__in={t for t, _ in learned})
        .values_list("topic", "consumer_group")
    )
    new = [ExpectedSubscription(topic=topic, consumer_group=group, learned=True, first_seen_at=first_seen)
           for (topic, group), first_seen in sorted(learned.items()) if (topic, group) not in existing]
    ExpectedSubscription.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)


def detect(events: list[EventFact], now: dt.datetime, config: DetectorConfig) -> list[FindingData]:
    subscriptions = [
        Subscription(*row)
        for row in ExpectedSubscription.objects.filter(enabled=True).values_list("topic", "consumer_group",
                                                                                 "first_seen_at")
    ]
    versions = known_consumer_versions(now - dt.timedelta(seconds=config.schema_lookback_seconds))
    storms = detectors.StormThresholds(
        max_events=config.storm_max_events, max_fanout=config.storm_max_fanout,
        factor=config.storm_factor, min_events=config.storm_min_events,
    )
    return [
        *detectors.detect_lost(events, subscriptions, now, config.lost_after_seconds, config.examples),
        *detectors.detect_duplicates(events, config.examples),
        *detectors.detect_out_of_order(events, config.examples),
        *detectors.detect_schema_drift(events, versions, config.examples),
        *detectors.detect_cascade_storms(events, storms),
        *detectors.detect_failures(events, config.examples),
        *outbox.detect_unpublished(events, now, config.lost_after_seconds, config.examples),
    ]


def save_findings(found: list[FindingData], now: dt.datetime) -> None:
    """Upsert by fingerprint (first_seen_at kept); set findings no longer found to 0."""
    rows = [
        Finding(kind=f.kind, fingerprint=f.fingerprint, service=f.service[:200], topic=f.topic[:255],
                consumer_group=f.consumer_group[:255], event_type=f.event_type[:200], value=f.value,
                summary=f.summary[:500], examples=f.examples, first_seen_at=now, last_seen_at=now)
        for f in sorted(found, key=lambda f: f.fingerprint)
    ]
    with transaction.atomic():
        Finding.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["fingerprint"],
            update_fields=["value", "summary", "examples", "last_seen_at", "service", "topic",
                           "consumer_group", "event_type"],
        )
        (Finding.objects.filter(kind__in=FindingKind.values).exclude(fingerprint__in=[f.fingerprint for f in found])
         .exclude(value=0).update(value=0))


def run_detectors(now: dt.datetime, config: DetectorConfig | None = None) -> DetectorRun:
    config = config or DetectorConfig.from_settings()
    events, truncated = load_events(now - dt.timedelta(seconds=config.lookback_seconds), now, config.max_events)
    if truncated:
        log.warning("detectors read only the newest %d events of the last %d s (MONITOR_DETECTOR_MAX_EVENTS)",
                    config.max_events, config.lookback_seconds)
    learned = learn(events)
    found = detect(events, now, config)
    save_findings(found, now)
    counts = Counter(f.kind for f in found)
    return DetectorRun(events=len(events), truncated=truncated, learned_subscriptions=learned,
                       findings={kind: counts.get(kind, 0) for kind in FindingKind.values})
