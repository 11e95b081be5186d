"""Business transactions, pure: one flow's events for one key in, its state out.

A transaction starts with the first event of a start type. It is completed by the first
success event after that, compensated by the first compensation event (a saga undone);
otherwise it is in flight, and stuck once it is older than the flow's SLO. The last
event of the key (any type, any stage) names where it is now.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from monitor.choices import TransactionState


@dataclass(frozen=True)
class FlowSpec:
    name: str
    start_types: frozenset[str]
    success_types: frozenset[str]
    compensated_types: frozenset[str]
    slo_seconds: float


@dataclass(frozen=True)
class KeyEvent:
    type: str
    service: str
    timestamp: datetime
    trace_id: str = ""


@dataclass(frozen=True)
class TransactionView:
    state: str
    started_at: datetime
    ended_at: datetime | None
    trace_id: str
    last_event_type: str
    last_service: str
    last_event_at: datetime
    compensations: int


def transaction_state(flow: FlowSpec, events: Sequence[KeyEvent]) -> TransactionView | None:
    """None when no event of the key starts a transaction of ``flow``."""
    ordered = sorted(events, key=lambda e: e.timestamp)
    start = next((e for e in ordered if e.type in flow.start_types), None)
    if start is None:
        return None
    after = [e for e in ordered if e.timestamp >= start.timestamp]
    compensations = [e for e in after if e.type in flow.compensated_types]
    success = next((e for e in after if e.type in flow.success_types), None)
    if success is not None:
        state, ended = TransactionState.COMPLETED, success.timestamp
    elif compensations:
        state, ended = TransactionState.COMPENSATED, compensations[0].timestamp
    else:
        state, ended = TransactionState.IN_FLIGHT, None
    last = after[-1]
    return TransactionView(state.value, start.timestamp, ended, start.trace_id, last.type, last.service,
                           last.timestamp, len(compensations))


def shown_state(state: str, started_at: datetime, slo_seconds: float, now: datetime) -> str:
    """What a reader sees: an in-flight transaction older than its SLO is stuck."""
    if state == TransactionState.IN_FLIGHT and (now - started_at).total_seconds() > slo_seconds:
        return TransactionState.STUCK.value
    return state
