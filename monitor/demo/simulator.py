"""A traffic simulator: four services run an order saga over Kafka and report what they do.

Run it against any Kafka-protocol broker::

    python -m monitor.demo.simulator --bootstrap 127.0.0.1:9092 \\
        --api http://127.0.0.1:8000 --token "$MONITOR_API_TOKEN"

The saga, one trace per order (keyed by the order id, so an order stays on one partition)::

    orders    --OrderPlaced-------> orders.events    --> payments, analytics
    payments  --PaymentAuthorised-> payments.events  --> inventory, orders
    inventory --InventoryReserved-> inventory.events --> shipping, payments
    shipping  --ShipmentCreated---> shipping.events  --> orders
    compensation when out of stock:
    inventory --InventoryOutOfStock--> payments --PaymentRefunded--> orders --OrderCancelled-->

What it does wrong on purpose, so every status and detector has something to show:

- ``shipping`` slows down for 2 minutes every 6 minutes: its lag rises and falls.
- ``analytics`` consumes for 3 minutes, then stops committing forever (STOPPED, lost events).
- ``payments`` fails now and then, retries, and dead-letters a poison message after 3 attempts.
- ``inventory`` sometimes re-reads an offset it already processed (duplicate delivery);
  ``orders`` sometimes publishes the same event twice (duplicate publication).
- ``payments`` sometimes parks an order and handles its amendment first (out of order).
- ``inventory`` starts publishing ``InventoryReserved`` schema version 2 after 4 minutes;
  ``payments`` handles it, ``shipping`` never reports handling it (schema drift).
- Now and then a catalogue re-sync fans one trace out into hundreds of events (cascade storm).
- ``orders`` writes each OrderPlaced to its outbox first; its outbox relay stalls for a minute
  every 8 minutes (outbox lag, unpublished rows), then catches up.
- The order desk goes quiet for 3 minutes every 10 minutes (a silent producer on orders.events).
- Orders whose payment was dead-lettered never ship: their business transaction gets stuck;
  out-of-stock orders are compensated (refund, cancellation).

Kafka is used only through :mod:`monitor.kafka.adapter` (``assign()`` + explicit commits:
no group rebalances). Reports go through :mod:`monitor.client`; when the API is down the
simulator logs one warning and keeps producing.
"""
from __future__ import annotations

import argparse
import heapq
import json
import logging
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from monitor.choices import Stage
from monitor.kafka.adapter import (
    AssignedConsumer,
    ConnectionSettings,
    ConsumedMessage,
    Producer,
    SubscribedConsumer,
    create_topics,
)

log = logging.getLogger("monitor.demo.simulator")

READY_LINE = "simulator running"

# Topics and their partition counts. Names are prefixed with the namespace, if any.
ORDERS_TOPIC = "orders.events"
PAYMENTS_TOPIC = "payments.events"
INVENTORY_TOPIC = "inventory.events"
SHIPPING_TOPIC = "shipping.events"
DEAD_LETTER_TOPIC = "dead-letter"
TOPIC_PARTITIONS = {
    ORDERS_TOPIC: 6,
    PAYMENTS_TOPIC: 4,
    INVENTORY_TOPIC: 4,
    SHIPPING_TOPIC: 3,
    DEAD_LETTER_TOPIC: 2,
}

# Services; each consuming service is one consumer group of the same name.
ORDERS = "orders"
PAYMENTS = "payments"
INVENTORY = "inventory"
SHIPPING = "shipping"
ANALYTICS = "analytics"
AUDIT = "audit"


class EventType:
    ORDER_PLACED = "OrderPlaced"
    ORDER_AMENDED = "OrderAmended"
    ORDER_CANCELLED = "OrderCancelled"
    PAYMENT_AUTHORISED = "PaymentAuthorised"
    PAYMENT_REFUNDED = "PaymentRefunded"
    INVENTORY_RESERVED = "InventoryReserved"
    INVENTORY_OUT_OF_STOCK = "InventoryOutOfStock"
    CATALOG_RESYNCED = "CatalogResynced"
    STOCK_LEVEL_CHANGED = "StockLevelChanged"
    SHIPMENT_CREATED = "ShipmentCreated"


class Header:
    EVENT_ID = "event-id"
    EVENT_TYPE = "event-type"
    SCHEMA_VERSION = "schema-version"
    TRACEPARENT = "traceparent"
    SOURCE = "source-service"
    CONTENT_TYPE = "content-type"
    DEAD_LETTER_REASON = "dead-letter-reason"
    ORIGINAL_TOPIC = "original-topic"
    ORIGINAL_PARTITION = "original-partition"
    ORIGINAL_OFFSET = "original-offset"


@dataclass(frozen=True)
class SimulatorConfig:
    bootstrap: list[str]
    namespace: str = ""  # prefix of topics and groups: tests share one broker
    orders_per_second: float = 1.0
    seed: int | None = None
    shipping_slow_first_after: float = 60.0
    shipping_slow_every: float = 360.0
    shipping_slow_for: float = 120.0
    shipping_seconds_per_shipment_when_slow: float = 3.0
    analytics_stops_after: float = 180.0
    schema_v2_after: float = 240.0
    storm_first_after: float = 150.0
    storm_every: float = 420.0
    storm_size: int = 300
    storm_events_per_second: float = 40.0
    failure_rate: float = 0.04
    poison_rate: float = 0.01
    max_attempts: int = 3
    out_of_stock_rate: float = 0.1
    amend_rate: float = 0.05
    out_of_order_rate: float = 0.03
    duplicate_publish_rate: float = 0.01
    redelivery_rate: float = 0.05
    park_timeout_seconds: float = 5.0
    stats_every_seconds: float = 30.0
    outbox_stall_first_after: float = 200.0
    outbox_stall_every: float = 480.0
    outbox_stall_for: float = 60.0
    orders_silent_first_after: float = 420.0
    orders_silent_every: float = 600.0
    orders_silent_for: float = 180.0
    timeout_seconds: float = 10.0


# -- pure helpers ----------------------------------------------------------------------

def namespaced(namespace: str, name: str) -> str:
    return f"{namespace}.{name}" if namespace else name


def new_trace_id() -> str:
    return uuid.uuid4().hex


def new_span_id() -> str:
    return uuid.uuid4().hex[:16]


def traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"


def parse_traceparent(value: str) -> tuple[str, str] | None:
    """(trace_id, span_id) of a W3C traceparent, or None when it is not one."""
    parts = value.strip().split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None
    if set(parts[1]) == {"0"} or set(parts[2]) == {"0"}:
        return None
    return parts[1], parts[2]


def in_recurring_window(elapsed: float, first_after: float, every: float, duration: float) -> bool:
    """True while a window that opens at ``first_after`` and then every ``every`` seconds,
    for ``duration`` seconds, is open."""
    if elapsed < first_after:
        return False
    return (elapsed - first_after) % every < duration


def occurrences_started(elapsed: float, first_after: float, every: float) -> int:
    """How many recurring occurrences (first at ``first_after``, then every ``every``) have begun."""
    if elapsed < first_after:
        return 0
    return 1 + int((elapsed - first_after) // every)


def in_time_order(messages: list[ConsumedMessage]) -> list[ConsumedMessage]:
    """A poll's messages merged by timestamp across partitions, each partition's order kept.

    kafka-python hands a batch over partition by partition; a service reading two topics
    would otherwise handle a shipment before the payment that preceded it, which is noise
    next to the out-of-order processing the demo injects on purpose.
    """
    queues: dict[tuple[str, int], list[ConsumedMessage]] = {}
    for message in messages:
        queues.setdefault((message.topic, message.partition), []).append(message)
    heads = [(queue[0].timestamp_ms, index, 0) for index, queue in enumerate(queues.values())]
    lists = list(queues.values())
    heapq.heapify(heads)
    ordered = []
    while heads:
        _, index, position = heapq.heappop(heads)
        ordered.append(lists[index][position])
        if position + 1 < len(lists[index]):
            heapq.heappush(heads, (lists[index][position + 1].timestamp_ms, index, position + 1))
    return ordered


def isoformat_z(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def utc_now() -> str:
    return isoformat_z(datetime.now(timezone.utc))


@dataclass(frozen=True)
class Envelope:
    """One event as it travels on Kafka: the payload plus the headers that identify it."""

    event_id: str
    type: str
    key: str
    source: str
    trace_id: str
    span_id: str
    schema_version: int = 1
    payload: dict[str, Any] = field(default_factory=dict)

    def headers(self) -> dict[str, str]:
        return {
            Header.EVENT_ID: self.event_id,
            Header.EVENT_TYPE: self.type,
            Header.SCHEMA_VERSION: str(self.schema_version),
            Header.TRACEPARENT: traceparent(self.trace_id, self.span_id),
            Header.SOURCE: self.source,
            Header.CONTENT_TYPE: "application/json",
        }

    def value(self) -> bytes:
        return json.dumps(self.payload, separators=(",", ":")).encode()

    @classmethod
    def from_message(cls, message: ConsumedMessage) -> "Envelope | None":
        """The envelope of a consumed message; None for messages this saga did not write."""
        headers = message.headers
        context = parse_traceparent(headers.get(Header.TRACEPARENT, ""))
        if context is None or not headers.get(Header.EVENT_ID) or not headers.get(Header.EVENT_TYPE):
            return None
        try:
            version = int(headers.get(Header.SCHEMA_VERSION) or 1)
            payload = json.loads(message.value or b"{}")
        except ValueError:
            return None
        return cls(
            event_id=headers[Header.EVENT_ID], type=headers[Header.EVENT_TYPE], key=message.key or "",
            source=headers.get(Header.SOURCE, ""), trace_id=context[0], span_id=context[1],
            schema_version=version, payload=payload if isinstance(payload, dict) else {},
        )


def event_report(envelope: Envelope, *, stage: str, service: str, topic: str, timestamp: str,
                 partition: int | None = None, offset: int | None = None, consumer_group: str | None = None,
                 parent_span_id: str | None = None, schema_version: int | None = None,
                 attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    """One EVENT of the ingest API (CONTRACT.md) for ``envelope`` at ``stage``.

    Every report about one message carries the message's traceparent (its span); a
    publication also names the span of the message that caused it (``parent_span_id``),
    so the trace view can draw the saga as a tree.
    """
    report: dict[str, Any] = {
        "event_id": envelope.event_id,
        "type": envelope.type,
        "service": service,
        "stage": stage,
        "timestamp": timestamp,
        "topic": topic,
        "key": envelope.key,
        "schema_version": envelope.schema_version if schema_version is None else schema_version,
        "traceparent": traceparent(envelope.trace_id, envelope.span_id),
    }
    if parent_span_id:
        report["parent_span_id"] = parent_span_id
    if partition is not None:
        report["partition"] = partition
    if offset is not None:
        report["offset"] = offset
    if consumer_group:
        report["consumer_group"] = consumer_group
    if attributes:
        report["attributes"] = attributes
    return report


# -- reporting -----------------------------------------------------------------------

class Reporter(Protocol):
    @property
    def stats(self) -> dict[str, int]: ...

    def report(self, event: dict[str, Any]) -> None: ...

    def warn_once_when_failing(self) -> None: ...

    def close(self) -> None: ...


class NullReporter:
    """Used when no API is configured: the traffic still flows, nothing is reported."""

    stats: dict[str, int] = {}

    def report(self, event: dict[str, Any]) -> None:
        pass

    def warn_once_when_failing(self) -> None:
        pass

    def close(self) -> None:
        pass


class ClientReporter:
    """Sends reports through :class:`monitor.client.EventReporter`, the batching client
    services copy: queued in memory, posted in batches by a background thread, retried."""

    def __init__(self, api_url: str, token: str, close_timeout_seconds: float = 10.0) -> None:
        from monitor.client import EventReporter

        self._client = EventReporter(api_url, token, service="simulator")
        self._close_timeout_seconds = close_timeout_seconds
        self._warned_retrying = False

    def report(self, event: dict[str, Any]) -> None:
        fields = dict(event)
        self._client.report(fields.pop("event_id"), fields.pop("type"), fields.pop("stage"), **fields)

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._client.stats)

    def warn_once_when_failing(self) -> None:
        stats = self._client.stats
        if not self._warned_retrying and (stats["retries"] or stats["dropped"] or stats["rejected"]):
            self._warned_retrying = True
            log.warning("the events API at %s is not accepting reports yet (%s); traffic continues and "
                        "reports are retried", self._client.url,
                        ", ".join(f"{n} {k}" for k, n in stats.items() if n and k != "sent"))

    def close(self) -> None:
        self._client.close(timeout=self._close_timeout_seconds)


class _OncePerMessage(logging.Filter):
    """Lets each distinct log message template through once (the client repeats itself
    on every retry while the API is down)."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in self._seen:
            return False
        self._seen.add(str(record.msg))
        return True


def make_reporter(api_url: str | None, token: str | None) -> Reporter:
    """The one place reports leave the simulator."""
    if not api_url or not token:
        log.warning("no --api/--token given: events are produced but not reported")
        return NullReporter()
    return ClientReporter(api_url, token)


# -- the simulator ------------------------------------------------------------------

class Simulator:
    """Runs the services as threads of one process and owns what they share: the
    producer, the reporter, the clock and the plan of injected faults."""

    def __init__(self, config: SimulatorConfig, reporter: Reporter | None = None) -> None:
        self.config = config
        self.reporter: Reporter = reporter or NullReporter()
        self.connection = ConnectionSettings(list(config.bootstrap), timeout_seconds=config.timeout_seconds)
        self.stop_event = threading.Event()
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self._seed = random.Random(config.seed)
        self._started = time.monotonic()
        self._producer: Producer | None = None
        self._threads: list[threading.Thread] = []
        # Orders whose placement payments will handle after their amendment (out of order).
        self.out_of_order_orders: set[str] = set()
        self._plan_lock = threading.Lock()

    # -- naming, time, randomness
    def topic(self, name: str) -> str:
        return namespaced(self.config.namespace, name)

    def group(self, service: str) -> str:
        return namespaced(self.config.namespace, service)

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def rng(self) -> random.Random:
        return random.Random(self._seed.random())

    def count(self, what: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[what] += n

    def plan_out_of_order(self, order_id: str) -> None:
        with self._plan_lock:
            self.out_of_order_orders.add(order_id)

    def take_out_of_order(self, order_id: str) -> bool:
        with self._plan_lock:
            if order_id in self.out_of_order_orders:
                self.out_of_order_orders.discard(order_id)
                return True
            return False

    # -- Kafka
    def ensure_topics(self) -> None:
        create_topics(self.connection, {self.topic(name): count for name, count in TOPIC_PARTITIONS.items()})

    def partitions(self, topics: Iterable[str]) -> list[tuple[str, int]]:
        return [(self.topic(t), p) for t in topics for p in range(TOPIC_PARTITIONS[t])]

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            raise RuntimeError("simulator not started")
        return self._producer

    def envelope(self, service: str, event_type: str, key: str, payload: dict[str, Any], *,
                 parent: Envelope | None = None, schema_version: int = 1) -> Envelope:
        """A new event (a child span of ``parent``, or a new trace), not yet sent."""
        return Envelope(
            event_id=uuid.uuid4().hex, type=event_type, key=key, source=service,
            trace_id=parent.trace_id if parent else new_trace_id(), span_id=new_span_id(),
            schema_version=schema_version, payload=payload,
        )

    def publish(self, service: str, topic: str, event_type: str, key: str, payload: dict[str, Any], *,
                parent: Envelope | None = None, schema_version: int = 1) -> Envelope:
        """Publish a new event (a child span of ``parent``, or a new trace) and report it."""
        envelope = self.envelope(service, event_type, key, payload, parent=parent, schema_version=schema_version)
        self.send(service, topic, envelope, parent_span_id=parent.span_id if parent else None)
        return envelope

    def write_outbox(self, service: str, topic: str, envelope: Envelope) -> None:
        """The event is stored in ``service``'s outbox table with its business change."""
        self.count("outbox")
        self.reporter.report(event_report(envelope, stage=Stage.OUTBOX, service=service, topic=self.topic(topic),
                                          timestamp=utc_now()))

    def outbox_stalled(self) -> bool:
        config = self.config
        return in_recurring_window(self.elapsed(), config.outbox_stall_first_after, config.outbox_stall_every,
                                   config.outbox_stall_for)

    def orders_silent(self) -> bool:
        config = self.config
        return in_recurring_window(self.elapsed(), config.orders_silent_first_after, config.orders_silent_every,
                                   config.orders_silent_for)

    def send(self, service: str, topic: str, envelope: Envelope, *, parent_span_id: str | None = None,
             attributes: dict[str, Any] | None = None) -> None:
        partition, offset = self.producer.send(
            self.topic(topic), envelope.value(), key=envelope.key, headers=envelope.headers()
        )
        self.count("published")
        self.reporter.report(event_report(
            envelope, stage=Stage.PUBLISHED, service=service, topic=self.topic(topic), timestamp=utc_now(),
            partition=partition, offset=offset, parent_span_id=parent_span_id, attributes=attributes,
        ))

    # -- lifecycle
    def start(self) -> None:
        self.ensure_topics()
        self._producer = Producer(self.connection)
        self._started = time.monotonic()
        self._threads = [
            OrderDesk(self),
            PaymentsService(self),
            InventoryService(self),
            ShippingService(self),
            OrdersService(self),
            AnalyticsService(self),
            AuditTrail(self),
            CatalogResync(self),
        ]
        for thread in self._threads:
            thread.start()
        log.info(
            "%s: services %s; topics %s; %.1f orders/s",
            READY_LINE, ", ".join([ORDERS, PAYMENTS, INVENTORY, SHIPPING, ANALYTICS]),
            ", ".join(f"{self.topic(t)} ({n})" for t, n in TOPIC_PARTITIONS.items()),
            self.config.orders_per_second,
        )

    def stop(self) -> None:
        self.stop_event.set()
        # kafka-python logs harmless tracebacks for sockets closed under its feet at shutdown.
        kafka_log = logging.getLogger("kafka")
        level = kafka_log.level
        kafka_log.setLevel(logging.CRITICAL)
        try:
            for thread in self._threads:
                thread.join(timeout=15)
            if self._producer is not None:
                self._producer.close()
                self._producer = None
        finally:
            kafka_log.setLevel(level)
        self.reporter.close()

    def run(self, duration: float | None = None) -> None:
        """Start, run until stopped (or for ``duration`` seconds), then stop cleanly."""
        self.start()
        next_stats = time.monotonic() + self.config.stats_every_seconds
        deadline = time.monotonic() + duration if duration else None
        try:
            while not self.stop_event.wait(0.5):
                if deadline and time.monotonic() >= deadline:
                    break
                self.reporter.warn_once_when_failing()
                if time.monotonic() >= next_stats:
                    next_stats += self.config.stats_every_seconds
                    log.info("%s", self.summary())
        finally:
            self.stop()
            log.info("simulator stopped: %s", self.summary())

    def summary(self) -> str:
        with self._stats_lock:
            stats = dict(self.stats)
        phases = []
        config = self.config
        if in_recurring_window(self.elapsed(), config.shipping_slow_first_after, config.shipping_slow_every,
                               config.shipping_slow_for):
            phases.append("shipping is slow")
        if self.outbox_stalled():
            phases.append("the orders outbox relay is stalled")
        if self.orders_silent():
            phases.append("the order desk is silent")
        if self.elapsed() >= config.analytics_stops_after:
            phases.append("analytics has stopped")
        counts = ", ".join(f"{stats.get(k, 0)} {k.replace('_', '-')}" for k in
                           ("published", "consumed", "processed", "failed", "dead_lettered", "redelivered"))
        reporter_stats = self.reporter.stats
        if reporter_stats:
            counts += f"; reports sent {reporter_stats.get('sent', 0)}, dropped {reporter_stats.get('dropped', 0)}"
        return f"{self.elapsed():.0f} s: {counts}" + (f" ({'; '.join(phases)})" if phases else "")


class Worker(threading.Thread):
    """A simulator thread that survives broker hiccups: errors are logged and retried."""

    def __init__(self, sim: Simulator, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.sim = sim
        self.rng = sim.rng()
        self._last_error = ""

    def run(self) -> None:
        while not self.sim.stop_event.is_set():
            try:
                self.loop()
                return
            except Exception as exc:  # noqa: BLE001 - a simulated service keeps going
                message = f"{type(exc).__name__}: {exc}"
                if message != self._last_error:
                    log.warning("%s: %s; retrying", self.name, message)
                    self._last_error = message
                self.sim.stop_event.wait(1.0)

    def loop(self) -> None:
        raise NotImplementedError


class OrderDesk(Worker):
    """The orders service's front door: customers place (and sometimes amend) orders."""

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "orders-desk")
        self.outbox: list[tuple[Envelope, str | None]] = []  # written, waiting for the relay

    def loop(self) -> None:
        config = self.sim.config
        interval = 1.0 / config.orders_per_second
        while not self.sim.stop_event.wait(self.rng.uniform(0.5, 1.5) * interval):
            if not self.sim.orders_silent():
                self.place_order()
            self.relay()

    def relay(self) -> None:
        """The outbox relay: publishes what the outbox holds, unless it is stalled."""
        if self.sim.outbox_stalled():
            return
        while self.outbox:
            envelope, parent_span_id = self.outbox.pop(0)
            self.sim.send(ORDERS, ORDERS_TOPIC, envelope, parent_span_id=parent_span_id)

    def place_order(self) -> None:
        config = self.sim.config
        order_id = f"ord-{uuid.uuid4().hex[:10]}"
        items = [{"sku": f"sku-{self.rng.randint(1, 200):04d}", "quantity": self.rng.randint(1, 3)}
                 for _ in range(self.rng.randint(1, 3))]
        amount = round(sum(int(i["quantity"]) for i in items) * self.rng.uniform(5, 60), 2)  # type: ignore[call-overload]
        out_of_order = self.rng.random() < config.out_of_order_rate
        if out_of_order:
            self.sim.plan_out_of_order(order_id)
        placed = self.sim.envelope(ORDERS, EventType.ORDER_PLACED, order_id, {
            "order_id": order_id, "customer_id": f"cus-{self.rng.randint(1, 5000):05d}",
            "items": items, "amount": amount, "currency": "EUR",
        })
        self.sim.write_outbox(ORDERS, ORDERS_TOPIC, placed)
        self.outbox.append((placed, None))
        if out_of_order or self.rng.random() < config.amend_rate:
            amended = self.sim.envelope(ORDERS, EventType.ORDER_AMENDED, order_id, {
                "order_id": order_id, "delivery_note": "leave at the door",
            }, parent=placed)
            self.sim.write_outbox(ORDERS, ORDERS_TOPIC, amended)
            self.outbox.append((amended, placed.span_id))
        self.relay()
        if not self.outbox and self.rng.random() < config.duplicate_publish_rate:
            # A producer retry after a lost acknowledgement: the same event, published twice.
            self.sim.send(ORDERS, ORDERS_TOPIC, placed, attributes={"producer_retry": True})


class ConsumerService(Worker):
    """One instance of a service: a consumer group reading every partition of its topics."""

    service = ""
    topics: tuple[str, ...] = ()
    redelivery_rate = 0.0

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, f"{self.service}-consumer")
        self.group = sim.group(self.service)
        self.consumer: AssignedConsumer | None = None
        self._redelivered: set[tuple[str, int, int]] = set()

    # -- what a service decides
    def active(self) -> bool:
        return True

    def is_slow(self) -> bool:
        return False

    def handle(self, envelope: Envelope, message: ConsumedMessage) -> None:
        self.processed(envelope, message)

    def idle(self) -> None:
        """Called after every poll, also when nothing arrived."""

    # -- the loop
    def loop(self) -> None:
        self.consumer = AssignedConsumer(self.sim.connection, self.group, self.sim.partitions(self.topics))
        try:
            while not self.sim.stop_event.is_set():
                if not self.active():
                    self.consumer.close()
                    self.consumer = None
                    log.info("%s stops consuming and committing (simulated hang)", self.service)
                    self.sim.stop_event.wait()
                    return
                slow = self.is_slow()
                messages = self.consumer.poll(max_records=1 if slow else 500, timeout_seconds=0.5)
                self.consume(messages)
                self.idle()
        finally:
            if self.consumer is not None:
                self.consumer.close()
                self.consumer = None

    def consume(self, messages: list[ConsumedMessage]) -> None:
        if not messages:
            return
        next_offsets: dict[tuple[str, int], int] = {}
        for message in in_time_order(messages):
            if self.sim.stop_event.is_set():
                break
            self.deliver(message)
            next_offsets[(message.topic, message.partition)] = message.offset + 1
        if next_offsets and self.consumer is not None:
            self.consumer.commit(next_offsets)
        self.maybe_redeliver(messages)

    def maybe_redeliver(self, messages: list[ConsumedMessage]) -> None:
        """Re-read the last message of a partition: what a consumer does after a crash
        between processing and committing (a redelivery of the same offset)."""
        if not self.redelivery_rate or self.consumer is None or self.rng.random() >= self.redelivery_rate:
            return
        last = messages[-1]
        identity = (last.topic, last.partition, last.offset)
        if identity in self._redelivered:
            return
        self._redelivered.add(identity)
        self.consumer.seek(last.topic, last.partition, last.offset)
        self.sim.count("redelivered")

    def deliver(self, message: ConsumedMessage) -> None:
        envelope = Envelope.from_message(message)
        if envelope is None:
            return
        self.sim.count("consumed")
        self.report(envelope, message, Stage.CONSUMED)
        self.handle(envelope, message)

    # -- reporting helpers
    def handled_schema_version(self, envelope: Envelope) -> int:
        return envelope.schema_version

    def report(self, envelope: Envelope, message: ConsumedMessage, stage: str,
               attributes: dict[str, Any] | None = None) -> None:
        self.sim.reporter.report(event_report(
            envelope, stage=stage, service=self.service, topic=message.topic, timestamp=utc_now(),
            partition=message.partition, offset=message.offset, consumer_group=self.group,
            schema_version=self.handled_schema_version(envelope), attributes=attributes,
        ))

    def processed(self, envelope: Envelope, message: ConsumedMessage,
                  attributes: dict[str, Any] | None = None) -> None:
        self.sim.count("processed")
        self.report(envelope, message, Stage.PROCESSED, attributes)

    def failed(self, envelope: Envelope, message: ConsumedMessage, error: str, attempt: int) -> None:
        self.sim.count("failed")
        self.report(envelope, message, Stage.FAILED, {"error": error, "attempt": attempt})

    def dead_letter(self, envelope: Envelope, message: ConsumedMessage, error: str,
                    attempts: int) -> None:
        headers = {
            **envelope.headers(),
            Header.DEAD_LETTER_REASON: error,
            Header.ORIGINAL_TOPIC: message.topic,
            Header.ORIGINAL_PARTITION: str(message.partition),
            Header.ORIGINAL_OFFSET: str(message.offset),
        }
        partition, offset = self.sim.producer.send(
            self.sim.topic(DEAD_LETTER_TOPIC), message.value, key=message.key, headers=headers
        )
        self.sim.count("dead_lettered")
        self.report(envelope, message, Stage.DEAD_LETTERED, {
            "error": error, "attempts": attempts, "dead_letter_topic": self.sim.topic(DEAD_LETTER_TOPIC),
            "dead_letter_partition": partition, "dead_letter_offset": offset,
        })

    def publish(self, topic: str, event_type: str, cause: Envelope, payload: dict[str, Any],
                schema_version: int = 1) -> Envelope:
        return self.sim.publish(self.service, topic, event_type, cause.key, payload, parent=cause,
                                schema_version=schema_version)


class PaymentsService(ConsumerService):
    service = PAYMENTS
    topics = (ORDERS_TOPIC, INVENTORY_TOPIC)

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim)
        self._seen: OrderedDict[str, None] = OrderedDict()
        # Placements parked until their amendment was handled: order id -> (envelope, message, span, since).
        self._parked: dict[str, tuple[Envelope, ConsumedMessage, float]] = {}

    def handle(self, envelope: Envelope, message: ConsumedMessage) -> None:
        if envelope.type == EventType.ORDER_PLACED:
            if self.sim.take_out_of_order(envelope.key):
                # "Order locked, retry later": the amendment behind it overtakes it.
                self._parked[envelope.key] = (envelope, message, time.monotonic())
                return
            self.authorise(envelope, message)
        elif envelope.type == EventType.INVENTORY_OUT_OF_STOCK:
            self.processed(envelope, message)
            self.publish(PAYMENTS_TOPIC, EventType.PAYMENT_REFUNDED, envelope, {
                "order_id": envelope.key, "reason": "out of stock",
            })
        else:
            self.processed(envelope, message)
            parked = self._parked.pop(envelope.key, None)
            if parked is not None:
                self.authorise(*parked[:2])

    def idle(self) -> None:
        now = time.monotonic()
        for order_id, parked in list(self._parked.items()):
            if now - parked[2] >= self.sim.config.park_timeout_seconds:
                del self._parked[order_id]
                self.authorise(*parked[:2])

    def authorise(self, envelope: Envelope, message: ConsumedMessage) -> None:
        if envelope.event_id in self._seen:
            self.processed(envelope, message, {"skipped": "already authorised"})
            return
        self._seen[envelope.event_id] = None
        while len(self._seen) > 10_000:
            self._seen.popitem(last=False)
        config = self.sim.config
        poison = self.rng.random() < config.poison_rate
        for attempt in range(1, config.max_attempts + 1):
            if poison or self.rng.random() < config.failure_rate:
                error = "card declined: malformed amount" if poison else "payment provider timed out"
                self.failed(envelope, message, error, attempt)
                if attempt == config.max_attempts:
                    self.dead_letter(envelope, message, error, attempt)
                    return
                self.sim.stop_event.wait(0.1 * attempt)
                continue
            break
        self.processed(envelope, message)
        self.publish(PAYMENTS_TOPIC, EventType.PAYMENT_AUTHORISED, envelope, {
            "order_id": envelope.key, "amount": envelope.payload.get("amount"),
            "items": envelope.payload.get("items", []),
        })


class InventoryService(ConsumerService):
    service = INVENTORY
    topics = (PAYMENTS_TOPIC,)

    @property
    def redelivery_rate(self) -> float:  # type: ignore[override]
        return self.sim.config.redelivery_rate

    def handle(self, envelope: Envelope, message: ConsumedMessage) -> None:
        self.processed(envelope, message)
        if envelope.type != EventType.PAYMENT_AUTHORISED:
            return
        if self.rng.random() < self.sim.config.out_of_stock_rate:
            self.publish(INVENTORY_TOPIC, EventType.INVENTORY_OUT_OF_STOCK, envelope, {
                "order_id": envelope.key, "items": envelope.payload.get("items", []),
            })
            return
        payload: dict[str, Any] = {"order_id": envelope.key, "items": envelope.payload.get("items", [])}
        version = 1
        if self.sim.elapsed() >= self.sim.config.schema_v2_after:
            version = 2
            payload["warehouse"] = self.rng.choice(["AMS-1", "FRA-2", "DUB-1"])
        self.publish(INVENTORY_TOPIC, EventType.INVENTORY_RESERVED, envelope, payload, version)


class ShippingService(ConsumerService):
    service = SHIPPING
    topics = (INVENTORY_TOPIC,)

    def is_slow(self) -> bool:
        config = self.sim.config
        return in_recurring_window(self.sim.elapsed(), config.shipping_slow_first_after,
                                   config.shipping_slow_every, config.shipping_slow_for)

    def handled_schema_version(self, envelope: Envelope) -> int:
        return 1  # shipping was never upgraded to InventoryReserved v2

    def handle(self, envelope: Envelope, message: ConsumedMessage) -> None:
        if envelope.type != EventType.INVENTORY_RESERVED:
            self.processed(envelope, message)
            return
        if self.is_slow():
            # The carrier's API is slow: each label takes a while.
            self.sim.stop_event.wait(self.sim.config.shipping_seconds_per_shipment_when_slow)
        self.processed(envelope, message)
        self.publish(SHIPPING_TOPIC, EventType.SHIPMENT_CREATED, envelope, {
            "order_id": envelope.key, "carrier": self.rng.choice(["DHL", "UPS", "PostNL"]),
            "tracking_number": uuid.uuid4().hex[:12].upper(),
        })


class OrdersService(ConsumerService):
    service = ORDERS
    topics = (PAYMENTS_TOPIC, SHIPPING_TOPIC)

    def handle(self, envelope: Envelope, message: ConsumedMessage) -> None:
        self.processed(envelope, message)
        if envelope.type == EventType.PAYMENT_REFUNDED:
            self.publish(ORDERS_TOPIC, EventType.ORDER_CANCELLED, envelope, {
                "order_id": envelope.key, "reason": "out of stock, payment refunded",
            })


class AnalyticsService(ConsumerService):
    service = ANALYTICS
    topics = (ORDERS_TOPIC,)

    def active(self) -> bool:
        return self.sim.elapsed() < self.sim.config.analytics_stops_after


class AuditTrail(Worker):
    """The audit service: a consumer that joins its group (``subscribe()``), unlike the
    others (``assign()``), so the broker has a member to report on the group page."""

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "audit")

    def loop(self) -> None:
        consumer = SubscribedConsumer(self.sim.connection, self.sim.group(AUDIT), [self.sim.topic(ORDERS_TOPIC)],
                                      client_id=f"{AUDIT}-{uuid.uuid4().hex[:4]}")
        try:
            while not self.sim.stop_event.is_set():
                self.sim.count("audit_messages", consumer.poll(timeout_seconds=0.5))
        finally:
            consumer.close()


class CatalogResync(Worker):
    """Inventory's catalogue re-sync: one trace that fans out into hundreds of events."""

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "inventory-catalog-resync")
        self.storms = 0

    def loop(self) -> None:
        config = self.sim.config
        while not self.sim.stop_event.wait(0.5):
            due = occurrences_started(self.sim.elapsed(), config.storm_first_after, config.storm_every)
            if due > self.storms:
                self.storms = due
                self.storm()

    def storm(self) -> None:
        config = self.sim.config
        root = self.sim.publish(INVENTORY, INVENTORY_TOPIC, EventType.CATALOG_RESYNCED, "catalog",
                                {"reason": "supplier price list imported", "skus": config.storm_size})
        log.info("inventory: catalogue re-sync fans out into %d events (trace %s)", config.storm_size, root.trace_id)
        pause = 1.0 / config.storm_events_per_second
        for number in range(1, config.storm_size + 1):
            if self.sim.stop_event.wait(pause):
                return
            sku = f"sku-{number:04d}"
            self.sim.publish(INVENTORY, INVENTORY_TOPIC, EventType.STOCK_LEVEL_CHANGED, sku,
                             {"sku": sku, "available": self.rng.randint(0, 500)},
                             parent=root)


# -- command line ----------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitor.demo.simulator",
        description="Simulated services running an order saga over Kafka, reporting to the monitor.",
    )
    parser.add_argument("--bootstrap", required=True, help="host:port[,host:port] of the Kafka cluster")
    parser.add_argument("--api", default=os.environ.get("MONITOR_API_URL"),
                        help="base URL of the monitor, e.g. http://127.0.0.1:8000 (env MONITOR_API_URL)")
    parser.add_argument("--token", default=os.environ.get("MONITOR_API_TOKEN"),
                        help="ingest token (env MONITOR_API_TOKEN; prefer the variable: arguments show in ps)")
    parser.add_argument("--namespace", default="", help="prefix for topic and group names")
    parser.add_argument("--rate", type=float, default=1.0, help="orders per second (default 1)")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for repeatable runs")
    return parser


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    bootstrap = [s.strip() for s in args.bootstrap.split(",") if s.strip()]
    if not bootstrap or any(":" not in s for s in bootstrap):
        raise ValueError(f"--bootstrap {args.bootstrap!r} must be host:port[,host:port]")
    if not 0 < args.rate <= 200:
        raise ValueError(f"--rate {args.rate} must be between 0 and 200 orders per second")
    return SimulatorConfig(bootstrap=bootstrap, namespace=args.namespace, orders_per_second=args.rate,
                           seed=args.seed)


def main(argv: list[str] | None = None, install_signals: bool = True) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.getLogger("monitor.client").addFilter(_OncePerMessage())
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    simulator = Simulator(config, make_reporter(args.api, args.token))
    if install_signals:
        def request_stop(signum: int, _frame: object) -> None:
            log.info("simulator stopping (%s)", signal.Signals(signum).name)
            simulator.stop_event.set()

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
    try:
        simulator.run(args.duration)
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a traceback
        log.error("simulator failed: %s: %s", type(exc).__name__, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
