"""The header tap against the real broker: message metadata becomes published events."""
import datetime as dt
import time

import pytest

from monitor.events import store
from monitor.events.config import TapConfig
from monitor.events.tap import message_event, sampled, tap_cluster
from monitor.kafka.adapter import ConsumedMessage, Producer, create_topics

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
CONFIG = TapConfig(max_messages=1000, max_seconds=10)


@pytest.fixture(autouse=True)
def _fresh_registry_cache():
    store.forget_registry_cache()
    yield


@pytest.fixture
def tapped(cluster, kafka_settings, unique):
    topic = unique("tap-orders")
    create_topics(kafka_settings, {topic: 2})
    cluster.tap_enabled = True
    cluster.tap_topics = topic
    cluster.tap_group = unique("tap-group")
    cluster.save()
    return cluster, topic


def produce(kafka_settings, topic, messages):
    producer = Producer(kafka_settings)
    try:
        return [producer.send(topic, b"{}", key=key, headers=headers, partition=partition)
                for key, headers, partition in messages]
    finally:
        producer.close()


def run_until(cluster_id, expected, timeout=20.0):
    """Tap runs until ``expected`` events were recorded in total (the broker may need a
    moment before freshly produced messages are fetchable)."""
    recorded, deadline = 0, time.monotonic() + timeout
    while recorded < expected and time.monotonic() < deadline:
        recorded += tap_cluster(cluster_id, CONFIG).recorded
    return recorded


@pytest.mark.django_db(transaction=True)
def test_tap_records_header_metadata_of_messages_published_after_it_started(tapped, kafka_settings):
    from monitor.models import Event, Service

    cluster, topic = tapped
    produce(kafka_settings, topic, [("before", {"event-id": "old"}, 0)])
    first = tap_cluster(cluster.id, CONFIG)  # first run starts at the end: no history replay
    assert (first.partitions, first.recorded, first.error) == (2, 0, "")

    sent = produce(kafka_settings, topic, [
        ("order-1", {"event-id": "evt-1", "event-type": "OrderPlaced", "source-service": "orders",
                     "schema-version": "2", "traceparent": TRACEPARENT}, 0),
        ("order-2", {"ce_id": "evt-2", "ce_type": "OrderCancelled", "ce_source": "orders"}, 1),
        (None, {"traceparent": "garbage"}, 1),
    ])
    assert run_until(cluster.id, 3) == 3
    assert not Event.objects.filter(event_id="old").exists()

    one = Event.objects.get(event_id="evt-1")
    assert (one.type, one.service, one.stage, one.topic, one.partition, one.offset, one.key, one.schema_version) == (
        "OrderPlaced", "orders", "published", topic, 0, sent[0][1], "order-1", 2)
    assert (one.trace_id, one.span_id) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert abs(one.timestamp - dt.datetime.now(dt.timezone.utc)) < dt.timedelta(minutes=1)
    two = Event.objects.get(event_id="evt-2")
    assert (two.type, two.service, two.partition) == ("OrderCancelled", "orders", 1)
    bare = Event.objects.get(event_id=f"{topic}/1/{sent[2][1]}")  # no headers: identity from the position
    assert (bare.type, bare.service, bare.trace_id, bare.key) == (topic, "unknown", "", "")
    assert Service.objects.filter(name="orders").exists()

    again = tap_cluster(cluster.id, CONFIG)  # committed: nothing is read twice
    assert (again.messages, again.recorded) == (0, 0)
    assert Event.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_disabled_tap_reads_nothing(tapped, kafka_settings):
    cluster, topic = tapped
    cluster.tap_enabled = False
    cluster.save()
    assert tap_cluster(cluster.id, CONFIG).partitions == 0


@pytest.mark.django_db(transaction=True)
def test_tap_of_an_unreachable_cluster_reports_the_error(db, settings):
    settings.MONITOR_KAFKA_TIMEOUT_SECONDS = 1
    from monitor.models import Cluster
    from tests.services import free_port

    cluster = Cluster.objects.create(name="down", bootstrap_servers=f"127.0.0.1:{free_port()}",
                                     tap_enabled=True, tap_topics="orders")
    run = tap_cluster(cluster.id, TapConfig(max_messages=10, max_seconds=1))
    assert run.recorded == 0 and run.error


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("offset_error", [14, 30])  # coordinator loading, group not authorized
def test_tap_whose_group_offsets_cannot_be_read_reads_and_commits_nothing(db, offset_error):
    """A tap group the coordinator answers with an error (loading, or the monitor may not
    read it) is not a first run: starting at the log end and committing there would skip,
    for good, every message since its last commit. The run says why and stops before
    reading or committing. Test double: tansu never answers OffsetFetch with a group error,
    so a Kafka-protocol responder (tests/kafka_responder.py) answers for the broker; a
    request it does not serve (ListOffsets, Fetch, OffsetCommit) would close the connection."""
    from monitor.models import Cluster
    from tests.kafka_responder import KafkaResponder, ScriptedGroup

    group = ScriptedGroup("tap", "classic", committed={("orders", 0): 7}, offset_errors=[offset_error])
    with KafkaResponder([group], topics={"orders": 2}) as responder:
        cluster = Cluster.objects.create(name="acl", bootstrap_servers=responder.bootstrap, tap_enabled=True,
                                         tap_topics="orders", tap_group="tap")
        run = tap_cluster(cluster.id, TapConfig(max_messages=10, max_seconds=1))
        asked = {key for key, _ in responder.requests}
    expected = {14: "CoordinatorLoadInProgressError", 30: "GroupAuthorizationFailedError"}[offset_error]
    assert run.error == (f"the tap group's committed offsets could not be read ({expected}); "
                         f"nothing read, nothing committed")
    assert (run.messages, run.recorded) == (0, 0)
    assert asked <= {18, 3, 10, 9}  # ApiVersions, Metadata, FindCoordinator, OffsetFetch: no ListOffsets, no commit


def _message(offset, **headers):
    return ConsumedMessage(topic="orders", partition=0, offset=offset, key="k", value=b"",
                           timestamp_ms=1714564800000, headers=headers)


def test_sampling_is_deterministic_by_position():
    kept = [o for o in range(1000) if sampled("orders", 0, o, 10)]
    assert 50 < len(kept) < 150
    assert kept == [o for o in range(1000) if sampled("orders", 0, o, 10)]
    assert all(sampled("orders", 0, o, 100) for o in range(100))


def test_message_event_reads_header_spellings_and_ignores_a_bad_schema_version():
    event = message_event(_message(5, event_id="e", event_type="T", service="svc", schema_version="v2"))
    assert (event["event_id"], event["type"], event["service"], event["timestamp"]) == (
        "e", "T", "svc", "2024-05-01T12:00:00+00:00")
    assert "schema_version" not in event


@pytest.mark.django_db(transaction=True)
def test_schedule_task_starts_a_tap_run_for_each_tapped_cluster(tapped, kafka_settings):
    from monitor.celery import app
    from monitor.kafka.adapter import KafkaAdapter
    from monitor.tasks import schedule_taps

    cluster, topic = tapped
    app.conf.task_always_eager = True
    try:
        assert schedule_taps.delay().get() == 1
    finally:
        app.conf.task_always_eager = False
    with KafkaAdapter(kafka_settings) as admin:  # the run committed the tap group's start positions
        committed = admin.committed_offsets([cluster.tap_group]).offsets.get(cluster.tap_group, {})
    assert set(committed) == {(topic, 0), (topic, 1)}


@pytest.mark.django_db(transaction=True)
def test_tap_learns_schema_ids_from_the_wire_format_and_versions_from_the_registry(tapped, kafka_settings):
    from monitor.models import Event, SchemaSubject, TopicSchemaId
    from django.utils import timezone

    cluster, topic = tapped
    cluster.schema_registry_url = "http://registry.invalid"  # synced rows below stand for the registry
    cluster.save()
    SchemaSubject.objects.create(cluster=cluster, subject=f"{topic}-value", compatibility="BACKWARD",
                                 versions=[{"version": 1, "schema_id": 11}, {"version": 2, "schema_id": 12}],
                                 synced_at=timezone.now())
    tap_cluster(cluster.id, CONFIG)  # starts at the end
    producer = Producer(kafka_settings)
    try:
        producer.send(topic, b"\x00\x00\x00\x00\x0cavro-bytes", headers={"event-id": "framed-v2"}, partition=0)
        producer.send(topic, b"\x00\x00\x00\x00\x63avro-bytes", headers={"event-id": "framed-unknown"}, partition=0)
        producer.send(topic, b'{"plain": "json"}', headers={"event-id": "plain"}, partition=1)
    finally:
        producer.close()
    assert run_until(cluster.id, 3) == 3

    assert Event.objects.get(event_id="framed-v2").schema_version == 2  # id 12 is version 2 of <topic>-value
    assert Event.objects.get(event_id="framed-unknown").schema_version is None
    assert Event.objects.get(event_id="plain").schema_version is None
    seen = {(r.topic, r.schema_id): r.messages for r in TopicSchemaId.objects.filter(cluster=cluster)}
    assert seen == {(topic, 12): 1, (topic, 99): 1}
