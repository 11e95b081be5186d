"""The route one trace took, from its first published event to its last processed one.

Pure: a trace's events in, a :class:`TraceRoute` (or None, when the trace has no origin
or no processed end yet) out. The route is the services and topics in the order they
first appear from the origin on; its latency is the last processed event's time minus
the origin's; each hop's latency is the time from the origin to that service's first
processed event (its first event of any stage when it processed none).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from monitor.choices import STAGE_ORDER, Stage

ROUTE_SEPARATOR = " → "


@dataclass(frozen=True)
class RouteEvent:
    service: str
    stage: str
    timestamp: datetime
    topic: str = ""


@dataclass(frozen=True)
class Route:
    services: tuple[str, ...]
    topics: tuple[str, ...]

    @property
    def fingerprint(self) -> str:
        text = json.dumps([list(self.services), list(self.topics)], ensure_ascii=False)
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()

    @property
    def label(self) -> str:
        return ROUTE_SEPARATOR.join(self.services)


@dataclass(frozen=True)
class TraceRoute:
    route: Route
    origin_at: datetime
    ended_at: datetime
    hop_seconds: tuple[float, ...]  # one per service of the route; the origin's is 0

    @property
    def latency_seconds(self) -> float:
        return max(0.0, (self.ended_at - self.origin_at).total_seconds())


def trace_route(events: Sequence[RouteEvent]) -> TraceRoute | None:
    ordered = sorted(events, key=lambda e: (e.timestamp, STAGE_ORDER.get(e.stage, 9)))
    origin_index = next((i for i, e in enumerate(ordered) if e.stage == Stage.PUBLISHED), None)
    if origin_index is None:
        return None
    journey = ordered[origin_index:]
    processed = [e for e in journey if e.stage == Stage.PROCESSED]
    if not processed:
        return None
    origin = journey[0]
    services = tuple(dict.fromkeys(e.service for e in journey))
    topics = tuple(dict.fromkeys(e.topic for e in journey if e.topic))
    hops: list[float] = []
    for service in services:
        mine = [e for e in journey if e.service == service]
        reached = next((e for e in mine if e.stage == Stage.PROCESSED), mine[0])
        hops.append(max(0.0, (reached.timestamp - origin.timestamp).total_seconds()))
    hops[0] = 0.0
    return TraceRoute(Route(services, topics), origin.timestamp, processed[-1].timestamp, tuple(hops))
