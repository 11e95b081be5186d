"""The Kafka adapter against a real Kafka-protocol broker (tansu)."""
import time

import pytest

from monitor.kafka.adapter import (
    ConnectionSettings, KafkaAdapter, KafkaUnavailable, LogOffsets, Producer, commit_offsets, create_topics,
)
from tests.services import free_port


@pytest.fixture
def topic(kafka_settings, unique):
    name = unique("adapter")
    create_topics(kafka_settings, {name: 3})
    producer = Producer(kafka_settings)
    for partition, count in ((0, 5), (1, 2)):
        for _ in range(count):
            producer.send(name, b"m", partition=partition)
    producer.close()
    return name


def test_committed_offsets_of_many_groups_come_back_per_group(kafka_settings, topic, unique):
    first, second = unique("g"), unique("g")
    commit_offsets(kafka_settings, first, {(topic, 0): 3, (topic, 1): 2})
    commit_offsets(kafka_settings, second, {(topic, 0): 1})
    with KafkaAdapter(kafka_settings) as adapter:
        listed = {g.group_id for g in adapter.list_groups()}
        committed = adapter.committed_offsets([first, second])
    assert {first, second} <= listed
    assert committed.offsets == {first: {(topic, 0): 3, (topic, 1): 2}, second: {(topic, 0): 1}}
    assert committed.errors == {}


def test_log_offsets_of_all_partitions_cost_one_metadata_and_one_round_trip_per_leader(kafka_settings, topic):
    partitions = [(topic, p) for p in range(3)]
    with KafkaAdapter(kafka_settings) as adapter:
        metadata = adapter.topic_metadata([topic])
        before = adapter.requests
        leaders = {(topic, p): leader for p, leader in metadata.leaders[topic].items()}
        offsets, errors = adapter.log_offsets(partitions, leaders)
        pipelined_requests = adapter.requests - before
        fallback, fallback_errors = adapter.log_offsets(partitions)
    assert metadata.partition_counts == {topic: 3}
    assert offsets == {
        (topic, 0): LogOffsets(0, 5), (topic, 1): LogOffsets(0, 2), (topic, 2): LogOffsets(0, 0),
    }
    assert errors == {} and fallback_errors == {}
    assert fallback == offsets
    assert pipelined_requests == 2  # log end and log start, to the single leader, together


def test_unknown_topic_is_reported_apart_without_failing_the_others(kafka_settings, topic, unique):
    missing = unique("missing")
    with KafkaAdapter(kafka_settings) as adapter:
        metadata = adapter.topic_metadata([topic, missing])
        leaders = {(topic, p): leader for p, leader in metadata.leaders[topic].items()}
        offsets, errors = adapter.log_offsets([(topic, 0), (missing, 0)], leaders)
        fallback, fallback_errors = adapter.log_offsets([(topic, 0), (missing, 0)])
    assert missing in metadata.errors
    assert offsets == {(topic, 0): LogOffsets(0, 5)}
    assert (missing, 0) in errors
    assert fallback == offsets and (missing, 0) in fallback_errors


def test_request_count_does_not_grow_with_partitions(kafka_settings, unique):
    small, large = unique("small"), unique("large")
    create_topics(kafka_settings, {small: 2, large: 40})

    def cost(topic: str, count: int) -> int:
        with KafkaAdapter(kafka_settings) as adapter:
            metadata = adapter.topic_metadata([topic])
            leaders = {(topic, p): leader for p, leader in metadata.leaders[topic].items()}
            adapter.log_offsets([(topic, p) for p in range(count)], leaders)
            return adapter.requests

    assert cost(small, 2) == cost(large, 40)


def test_closed_port_raises_kafka_unavailable_within_the_timeout():
    settings = ConnectionSettings([f"127.0.0.1:{free_port()}"], timeout_seconds=2)
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable, match="cannot reach"):
        with KafkaAdapter(settings) as adapter:
            adapter.list_groups()
    assert time.monotonic() - started < 5


def test_connection_settings_never_show_the_password():
    settings = ConnectionSettings(["kafka:9092"], sasl_mechanism="PLAIN", sasl_username="u", sasl_password="s3cret")
    assert "s3cret" not in repr(settings)
