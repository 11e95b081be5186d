"""The traffic simulator, run for a few seconds against the real tansu broker, reporting
to a real HTTP server (a local one, and the real ingest API of the live server)."""
from __future__ import annotations

import datetime as dt
import gzip
import http.server
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import pytest

from monitor.choices import Stage
from monitor.demo import simulator as sim
from monitor.events.config import IngestLimits
from monitor.events.ingest import validate_payload
from monitor.kafka.adapter import AssignedConsumer, ConsumedMessage, KafkaAdapter

PROJECT_DIR = Path(__file__).resolve().parent.parent


# -- a real HTTP server standing in for the events API -----------------------------------

class EventsSink(http.server.ThreadingHTTPServer):
    """Accepts POST /api/v1/events like the monitor does and keeps what it received."""

    def __init__(self, status: int = 202) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.status = status
        self.events: list[dict] = []
        self.authorizations: set[str] = set()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _SinkHandler(http.server.BaseHTTPRequestHandler):
    server: EventsSink

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        events = json.loads(body)["events"]
        with self.server.lock:
            self.server.authorizations.add(self.headers.get("Authorization", ""))
            if self.server.status == 202 and self.path == "/api/v1/events":
                self.server.events.extend(events)
        answer = json.dumps({"accepted": len(events), "duplicates": 0}).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sink():
    server = EventsSink()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def fast_config(bootstrap: str, namespace: str, **overrides) -> sim.SimulatorConfig:
    """Every phase of the story squeezed into a few seconds, every fault frequent."""
    config = sim.SimulatorConfig(
        bootstrap=[bootstrap], namespace=namespace, orders_per_second=15, seed=7,
        shipping_slow_first_after=1.5, shipping_slow_every=60, shipping_slow_for=2,
        shipping_seconds_per_shipment_when_slow=0.2,
        analytics_stops_after=3, schema_v2_after=2, storm_first_after=3, storm_every=60, storm_size=120,
        storm_events_per_second=200, failure_rate=0.15, poison_rate=0.08, out_of_stock_rate=0.25,
        amend_rate=0.1, out_of_order_rate=0.2, duplicate_publish_rate=0.1, redelivery_rate=0.5,
        park_timeout_seconds=1, stats_every_seconds=2,
    )
    return replace(config, **overrides)


def read_topic(kafka_settings, topic: str, partitions: int, group: str) -> list[ConsumedMessage]:
    consumer = AssignedConsumer(kafka_settings, group, [(topic, p) for p in range(partitions)])
    try:
        messages: list[ConsumedMessage] = []
        for _ in range(10):
            batch = consumer.poll(max_records=1000, timeout_seconds=0.5)
            if not batch and messages:
                break
            messages.extend(batch)
        return messages
    finally:
        consumer.close()


STORY_SECONDS = 9  # every phase of fast_config() has started (and the slow one ended) by then
CAUGHT_UP_LAG = 10  # messages: what "shipping caught up" means


def shipping_lag(kafka_settings, namespace: str) -> int:
    """Messages of inventory.events that the shipping group has not committed yet."""
    topic = f"{namespace}.inventory.events"
    with KafkaAdapter(kafka_settings) as adapter:
        committed = adapter.committed_offsets([f"{namespace}.shipping"]).offsets[f"{namespace}.shipping"]
        log_end, _ = adapter.log_offsets([(topic, p) for p in range(4)])
    return sum(log_end[(topic, p)].log_end_offset - committed.get((topic, p), 0) for p in range(4))


@pytest.fixture(scope="module")
def story(broker, tmp_path_factory):
    """One run of the whole story, shared by the tests that read its outcome: at least
    STORY_SECONDS long, then on until shipping has caught up after its slow phase (a loaded
    machine needs longer; a bound of minutes only keeps a broken simulator from hanging)."""
    import uuid

    from monitor.kafka.adapter import ConnectionSettings

    server = EventsSink()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    namespace = f"sim-{uuid.uuid4().hex[:8]}"
    kafka = ConnectionSettings([broker.bootstrap], timeout_seconds=5)
    simulator = sim.Simulator(fast_config(broker.bootstrap, namespace),
                              sim.make_reporter(server.url, "kmon_test-token"))
    simulator.start()
    try:
        simulator.stop_event.wait(STORY_SECONDS)
        lag = shipping_lag(kafka, namespace)
        give_up = time.monotonic() + 180
        while lag > CAUGHT_UP_LAG and time.monotonic() < give_up:
            simulator.stop_event.wait(0.5)
            lag = shipping_lag(kafka, namespace)
    finally:
        simulator.stop()
        server.shutdown()
        server.server_close()
    return {
        "simulator": simulator, "namespace": namespace, "events": server.events, "server": server,
        "kafka": kafka, "shipping_lag_after_slow_phase": lag,
    }


# -- pure helpers -------------------------------------------------------------------------

def test_traceparent_round_trips_and_rejects_what_w3c_rejects():
    trace_id, span_id = sim.new_trace_id(), sim.new_span_id()
    assert sim.parse_traceparent(sim.traceparent(trace_id, span_id)) == (trace_id, span_id)
    assert sim.parse_traceparent("00-" + "0" * 32 + "-" + "1" * 16 + "-01") is None
    assert sim.parse_traceparent("not-a-traceparent") is None
    assert sim.parse_traceparent("00-" + "g" * 32 + "-" + "1" * 16 + "-01") is None


def test_shipping_is_slow_two_minutes_in_every_six_from_the_first_minute():
    def slow(elapsed: float) -> bool:
        return sim.in_recurring_window(elapsed, first_after=60, every=360, duration=120)

    assert [slow(t) for t in (0, 59, 60, 179, 180, 419, 420, 539, 540)] == [
        False, False, True, True, False, False, True, True, False,
    ]


def test_storms_start_at_the_first_time_and_then_every_interval():
    assert [sim.occurrences_started(t, first_after=150, every=420) for t in (0, 149, 150, 569, 570)] == [
        0, 0, 1, 1, 2,
    ]


def test_namespaced_names_only_prefix_when_a_namespace_is_given():
    assert sim.namespaced("", "orders.events") == "orders.events"
    assert sim.namespaced("t1", "orders.events") == "t1.orders.events"


def test_an_envelope_survives_the_trip_through_kafka_headers():
    envelope = sim.Envelope(event_id="e1", type="OrderPlaced", key="ord-1", source="orders",
                            trace_id=sim.new_trace_id(), span_id=sim.new_span_id(), schema_version=2,
                            payload={"amount": 12.5})
    message = ConsumedMessage(topic="orders.events", partition=3, offset=9, key="ord-1", value=envelope.value(),
                              timestamp_ms=0, headers=envelope.headers())
    assert sim.Envelope.from_message(message) == envelope


def test_a_batch_is_handled_in_time_order_across_partitions_keeping_each_partitions_order():
    def message(topic: str, partition: int, offset: int, timestamp_ms: int) -> ConsumedMessage:
        return ConsumedMessage(topic=topic, partition=partition, offset=offset, key=None, value=b"",
                               timestamp_ms=timestamp_ms, headers={})

    batch = [
        message("shipping.events", 0, 7, 300),
        message("payments.events", 1, 4, 100), message("payments.events", 1, 5, 90),  # clock skew
        message("payments.events", 2, 9, 200),
    ]
    ordered = [(m.topic, m.partition, m.offset) for m in sim.in_time_order(batch)]
    assert ordered == [("payments.events", 1, 4), ("payments.events", 1, 5), ("payments.events", 2, 9),
                       ("shipping.events", 0, 7)]


def test_messages_without_the_saga_headers_are_not_envelopes():
    message = ConsumedMessage(topic="t", partition=0, offset=0, key=None, value=b"{}", timestamp_ms=0,
                              headers={"event-id": "x"})
    assert sim.Envelope.from_message(message) is None


def test_reports_are_valid_events_for_the_ingest_api():
    envelope = sim.Envelope(event_id="e1", type="PaymentAuthorised", key="ord-1", source="payments",
                            trace_id=sim.new_trace_id(), span_id=sim.new_span_id())
    reports = [
        sim.event_report(envelope, stage=Stage.PUBLISHED, service="payments", topic="payments.events",
                         timestamp=sim.utc_now(), partition=1, offset=4, parent_span_id=sim.new_span_id()),
        sim.event_report(envelope, stage=Stage.FAILED, service="inventory", topic="payments.events",
                         timestamp=sim.utc_now(), partition=1, offset=4, consumer_group="inventory",
                         attributes={"error": "timeout", "attempt": 1}),
    ]
    rows = validate_payload({"events": reports}, dt.datetime.now(dt.timezone.utc), IngestLimits(1000, 10**7, 8192))
    assert [row.trace_id for row in rows] == [envelope.trace_id] * 2
    assert [row.span_id for row in rows] == [envelope.span_id] * 2
    assert rows[1].consumer_group == "inventory"


def test_bad_command_line_values_exit_2_naming_the_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        sim.main(["--bootstrap", "no-port-here"], install_signals=False)
    assert exit_info.value.code == 2
    assert "--bootstrap" in capsys.readouterr().err


# -- one run of the whole story against the real broker -----------------------------------

def test_topics_are_created_with_their_partition_counts(story):
    with KafkaAdapter(story["kafka"]) as adapter:
        counts = adapter.topic_partition_counts()
    namespace = story["namespace"]
    assert {t: n for t, n in counts.items() if t.startswith(namespace + ".")} == {
        f"{namespace}.orders.events": 6, f"{namespace}.payments.events": 4,
        f"{namespace}.inventory.events": 4, f"{namespace}.shipping.events": 3, f"{namespace}.dead-letter": 2,
    }


def test_messages_carry_traceparent_event_id_type_and_schema_version_headers_keyed_by_order(story, unique):
    namespace = story["namespace"]
    messages = read_topic(story["kafka"], f"{namespace}.orders.events", 6, unique("reader"))
    assert len(messages) > 20
    for message in messages:
        assert sim.parse_traceparent(message.headers["traceparent"]) is not None
        assert message.headers["event-id"] and message.headers["event-type"]
        assert message.headers["schema-version"] == "1"
        assert message.key.startswith("ord-")
    by_key = defaultdict(set)
    for message in messages:
        by_key[message.key].add(message.partition)
    assert all(len(partitions) == 1 for partitions in by_key.values())  # one order, one partition


def test_every_consumer_group_committed_offsets(story):
    namespace = story["namespace"]
    groups = [f"{namespace}.{service}" for service in ("orders", "payments", "inventory", "shipping", "analytics")]
    with KafkaAdapter(story["kafka"]) as adapter:
        listed = {g.group_id for g in adapter.list_groups()}
        committed = adapter.committed_offsets(groups)
    assert set(groups) <= listed
    assert not committed.errors
    for group in groups:
        assert sum(committed.offsets[group].values()) > 0, group
    assert {t for t, _ in committed.offsets[f"{namespace}.payments"]} == {
        f"{namespace}.orders.events", f"{namespace}.inventory.events",
    }


def test_analytics_stops_committing_while_orders_keep_coming(story):
    namespace = story["namespace"]
    topic = f"{namespace}.orders.events"
    with KafkaAdapter(story["kafka"]) as adapter:
        committed = adapter.committed_offsets([f"{namespace}.analytics", f"{namespace}.payments"]).offsets
        log_end, _ = adapter.log_offsets([(topic, p) for p in range(6)])
    analytics_lag = sum(log_end[(topic, p)].log_end_offset - committed[f"{namespace}.analytics"].get((topic, p), 0)
                        for p in range(6))
    assert analytics_lag > 20  # six seconds of orders nobody in analytics read


def test_the_saga_and_its_compensation_are_reported_in_one_trace(story):
    events = story["events"]
    by_trace = defaultdict(set)
    for event in events:
        by_trace[event["traceparent"].split("-")[1]].add((event["type"], event["stage"]))
    happy = {("OrderPlaced", "published"), ("PaymentAuthorised", "published"),
             ("InventoryReserved", "published"), ("ShipmentCreated", "processed")}
    compensated = {("InventoryOutOfStock", "published"), ("PaymentRefunded", "published"),
                   ("OrderCancelled", "published")}
    assert any(happy <= steps for steps in by_trace.values())
    assert any(compensated <= steps for steps in by_trace.values())


def test_each_publication_names_the_span_of_the_message_that_caused_it(story):
    published = [e for e in story["events"] if e["stage"] == Stage.PUBLISHED]
    placed_spans = {e["traceparent"].split("-")[2] for e in published if e["type"] == "OrderPlaced"}
    authorised = [e for e in published if e["type"] == "PaymentAuthorised"]
    assert authorised and all(e["parent_span_id"] in placed_spans for e in authorised)
    assert not any("parent_span_id" in e for e in published if e["type"] == "OrderPlaced")  # a saga's root


def test_reports_cover_every_stage_and_name_group_partition_and_offset(story):
    events = story["events"]
    stages = Counter(event["stage"] for event in events)
    assert set(stages) == set(Stage.values)
    for event in events:
        if event["stage"] == Stage.OUTBOX:  # written to the outbox table: not in Kafka yet
            assert "partition" not in event and "consumer_group" not in event
            continue
        if event["stage"] != Stage.PUBLISHED:
            assert event["consumer_group"].startswith(story["namespace"] + ".")
        assert isinstance(event["partition"], int) and isinstance(event["offset"], int)
    assert story["server"].authorizations == {"Bearer kmon_test-token"}


def test_failures_are_retried_and_poison_messages_dead_lettered(story, unique):
    events = story["events"]
    dead = [e for e in events if e["stage"] == Stage.DEAD_LETTERED]
    assert dead
    for event in dead:
        attempts = [e for e in events if e["event_id"] == event["event_id"] and e["stage"] == Stage.FAILED]
        assert [a["attributes"]["attempt"] for a in attempts] == [1, 2, 3]
    retried = {e["event_id"] for e in events if e["stage"] == Stage.FAILED} - {e["event_id"] for e in dead}
    processed = {e["event_id"] for e in events if e["stage"] == Stage.PROCESSED}
    assert retried and retried <= processed
    dlq = read_topic(story["kafka"], f"{story['namespace']}.dead-letter", 2, unique("dlq-reader"))
    assert {m.headers["event-id"] for m in dlq} == {e["event_id"] for e in dead}
    assert all(m.headers["original-topic"].endswith("orders.events") for m in dlq)


def test_redelivery_reports_the_same_offset_consumed_twice(story):
    consumed = Counter((e["consumer_group"], e["topic"], e["partition"], e["offset"])
                       for e in story["events"] if e["stage"] == Stage.CONSUMED)
    assert any(count > 1 and key[0].endswith(".inventory") for key, count in consumed.items())


def test_a_duplicate_publication_is_the_same_event_id_at_two_offsets(story):
    published = defaultdict(set)
    for event in story["events"]:
        if event["stage"] == Stage.PUBLISHED:
            published[event["event_id"]].add((event["partition"], event["offset"]))
    assert any(len(offsets) == 2 for offsets in published.values())


def test_payments_processes_some_amendment_before_its_order(story):
    processed = defaultdict(list)
    for event in story["events"]:
        if event["stage"] == Stage.PROCESSED and event["consumer_group"].endswith(".payments") \
                and event["topic"].endswith("orders.events"):
            processed[event["key"]].append(event["offset"])
    assert any(offsets != sorted(offsets) for offsets in processed.values())


def test_schema_v2_is_published_and_shipping_never_reports_handling_it(story):
    reserved = [e for e in story["events"] if e["type"] == "InventoryReserved"]
    assert {e["schema_version"] for e in reserved if e["stage"] == Stage.PUBLISHED} == {1, 2}
    assert {e["schema_version"] for e in reserved if e.get("consumer_group", "").endswith(".shipping")} == {1}
    assert 2 in {e["schema_version"] for e in reserved if e.get("consumer_group", "").endswith(".payments")}


def test_a_cascade_storm_fans_one_trace_out_into_hundreds_of_events(story):
    published_per_trace = Counter(e["traceparent"].split("-")[1] for e in story["events"]
                                  if e["stage"] == Stage.PUBLISHED)
    assert max(published_per_trace.values()) >= 120


def test_shipping_catches_up_once_its_slow_phase_is_over(story):
    assert "shipping is slow" not in story["simulator"].summary()  # the 2-second slow phase is over
    assert story["shipping_lag_after_slow_phase"] <= CAUGHT_UP_LAG


def test_the_detectors_find_exactly_the_faults_the_story_injects(story):
    from monitor.events import detectors

    rows = validate_payload({"events": story["events"]}, dt.datetime.now(dt.timezone.utc),
                            IngestLimits(10**6, 10**9, 8192))
    facts = [detectors.EventFact(*(getattr(row, name) for name in detectors.FACT_FIELDS)) for row in rows]
    namespace = story["namespace"]

    def where(findings):
        return {(f.consumer_group.removeprefix(namespace + "."), f.topic.removeprefix(namespace + "."))
                for f in findings}

    assert where(detectors.detect_out_of_order(facts)) == {("payments", "orders.events")}
    assert {("inventory", "payments.events"), ("payments", "orders.events")} <= where(
        detectors.detect_duplicates(facts))
    drift = detectors.detect_schema_drift(facts, {})
    assert {(f.event_type, f.consumer_group.removeprefix(namespace + ".")) for f in drift} == {
        ("InventoryReserved", "shipping"),
    }
    storms = detectors.detect_cascade_storms(facts)
    assert storms and all("CatalogResynced" in f.summary for f in storms)
    assert {f.service for f in detectors.detect_failures(facts)} == {"payments"}


# -- reporting edge cases -------------------------------------------------------------------

def test_traffic_continues_with_one_warning_when_the_api_is_down(broker, unique, caplog):
    from tests.services import free_port

    namespace = unique("down")
    reporter = sim.ClientReporter(f"http://127.0.0.1:{free_port()}", "kmon_x", close_timeout_seconds=0.5)
    simulator = sim.Simulator(fast_config(broker.bootstrap, namespace, stats_every_seconds=60), reporter)
    with caplog.at_level(logging.INFO, logger="monitor.demo.simulator"):
        simulator.run(duration=3)
    assert simulator.stats["published"] > 10
    assert simulator.stats["processed"] > 10
    warnings = [r for r in caplog.records if r.name == "monitor.demo.simulator" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "not accepting reports" in warnings[0].getMessage()


@pytest.mark.django_db(transaction=True)
def test_reports_land_in_the_real_ingest_api(broker, unique, live_server):
    from monitor.models import ApiToken, Event

    _, token = ApiToken.issue("simulator-test", ["ingest"])
    namespace = unique("live")
    simulator = sim.Simulator(fast_config(broker.bootstrap, namespace, orders_per_second=5),
                              sim.make_reporter(live_server.url, token))
    simulator.run(duration=3)
    stored = Event.objects.filter(topic__startswith=namespace + ".")
    assert stored.filter(stage=Stage.PUBLISHED, type="OrderPlaced").exists()
    assert stored.filter(stage=Stage.PROCESSED, consumer_group=f"{namespace}.payments").exists()
    assert simulator.reporter.stats["rejected"] == 0


def test_the_command_line_runs_for_a_while_and_stops_cleanly(broker, unique, sink):
    env = {**os.environ, "MONITOR_API_TOKEN": "kmon_from-env"}
    result = subprocess.run(
        [sys.executable, "-m", "monitor.demo.simulator", "--bootstrap", broker.bootstrap, "--api", sink.url,
         "--namespace", unique("cli"), "--rate", "5", "--duration", "3"],
        cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert sim.READY_LINE in result.stderr and "simulator stopped" in result.stderr
    assert sink.events and sink.authorizations == {"Bearer kmon_from-env"}
    assert "kmon_from-env" not in result.stderr


def test_every_order_is_written_to_the_outbox_before_it_is_published(story):
    events = story["events"]
    written = {e["event_id"]: e["timestamp"] for e in events if e["stage"] == Stage.OUTBOX}
    published = {e["event_id"]: e["timestamp"] for e in events
                 if e["stage"] == Stage.PUBLISHED and e["type"] == "OrderPlaced"}
    assert written and set(published) <= set(written)
    assert all(written[event_id] <= published[event_id] for event_id in published)


def test_the_audit_service_joins_its_group_so_the_broker_reports_a_member(broker, unique):
    """The other services use assign() (no group membership); audit subscribes, so the
    demo's group pages have a member to show where the broker tells."""
    from monitor.kafka.adapter import ConnectionSettings

    namespace = unique("members")
    simulator = sim.Simulator(fast_config(broker.bootstrap, namespace), sim.NullReporter())
    kafka = ConnectionSettings([broker.bootstrap], timeout_seconds=5)
    group = f"{namespace}.audit"
    simulator.start()
    try:
        deadline, members = time.monotonic() + 180, ()
        while not members and time.monotonic() < deadline:  # joining takes a rebalance
            with KafkaAdapter(kafka) as adapter:
                listed = [g for g in adapter.list_groups() if g.group_id == group]
                membership = adapter.group_membership(listed).get(group)
            members = membership.members if membership is not None else ()
            simulator.stop_event.wait(1.0)
    finally:
        simulator.stop()
    assert members and members[0].member_id.startswith("audit-")
