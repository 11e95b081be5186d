"""The transactional outbox, seen from its events: a service reports stage ``outbox``
when it writes an event to its outbox table inside the business transaction, and
``published`` when the relay has sent it to Kafka (same ``event_id``).

Outbox lag is publish time minus outbox time. Rows written and not published within
``unpublished_after_seconds`` are a finding (with examples); the alert metric
``outbox_lag_seconds`` is the age of the oldest unpublished write per service (0 when
the relay keeps up), so a stalled relay fires while it is stalled.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence

from monitor.choices import FindingKind, Stage
from monitor.events.detectors import EventFact, FindingData, fingerprint

LOOKBACK = dt.timedelta(hours=24)
GRACE_SECONDS = 30.0  # a relay publishing within this long is keeping up


def unpublished(events: Iterable[EventFact]) -> dict[str, list[EventFact]]:
    """Per service: outbox writes with no publication of the same event id."""
    published = {(e.service, e.event_id) for e in events if e.stage == Stage.PUBLISHED}
    published_ids = {e.event_id for e in events if e.stage == Stage.PUBLISHED}
    waiting: dict[str, list[EventFact]] = defaultdict(list)
    for event in events:
        if event.stage == Stage.OUTBOX and (event.service, event.event_id) not in published \
                and event.event_id not in published_ids:
            waiting[event.service].append(event)
    return waiting


def detect_unpublished(events: Sequence[EventFact], now: dt.datetime, after_seconds: float,
                       examples: int) -> list[FindingData]:
    found = []
    for service, waiting in unpublished(events).items():
        old = sorted((e for e in waiting if (now - e.timestamp).total_seconds() >= after_seconds),
                     key=lambda e: e.timestamp)
        if not old:
            continue
        oldest = (now - old[0].timestamp).total_seconds()
        found.append(FindingData(
            kind=FindingKind.UNPUBLISHED_OUTBOX, fingerprint=fingerprint(FindingKind.UNPUBLISHED_OUTBOX, service),
            value=float(len(old)), service=service, event_type=old[0].type,
            summary=f"{len(old)} outbox rows of {service} not published; the oldest was written "
                    f"{int(oldest)} s ago",
            examples=[{"event_id": e.event_id, "trace_id": e.trace_id} for e in old[:examples]],
        ))
    return found


def outbox_lag_by_service(now: dt.datetime) -> dict[str, float]:
    """Seconds the oldest unpublished outbox write of each service has waited (0 when
    everything written more than ``GRACE_SECONDS`` ago was published)."""
    from monitor.models import Event

    rows = Event.objects.filter(timestamp__gte=now - LOOKBACK, stage__in=[Stage.OUTBOX, Stage.PUBLISHED]).filter(
        service__in=Event.objects.filter(timestamp__gte=now - LOOKBACK, stage=Stage.OUTBOX).values("service")
    ).values_list("event_id", "type", "service", "stage", "timestamp")
    events = [EventFact(*row) for row in rows.iterator(chunk_size=5000)]
    services = {e.service for e in events if e.stage == Stage.OUTBOX}
    lag = {service: 0.0 for service in services}
    for service, waiting in unpublished(events).items():
        oldest = min(e.timestamp for e in waiting)
        age = (now - oldest).total_seconds()
        lag[service] = age if age > GRACE_SECONDS else 0.0
    return lag


def outbox_latencies(events: Iterable[EventFact]) -> dict[str, list[float]]:
    """Per service: seconds from outbox write to publication of each published event."""
    written: dict[tuple[str, str], dt.datetime] = {}
    result: dict[str, list[float]] = defaultdict(list)
    ordered = sorted(events, key=lambda e: e.timestamp)
    for event in ordered:
        if event.stage == Stage.OUTBOX:
            written.setdefault((event.service, event.event_id), event.timestamp)
        elif event.stage == Stage.PUBLISHED and (event.service, event.event_id) in written:
            result[event.service].append(
                max(0.0, (event.timestamp - written[(event.service, event.event_id)]).total_seconds()))
    return dict(result)
