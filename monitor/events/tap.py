"""The header tap: event metadata read from the messages themselves, no change to services.

For a cluster with ``tap_enabled``, the tap reads ``tap_topics`` as its own consumer
group (``tap_group``) and records each message as a ``published`` event: topic,
partition, offset, key, timestamp, and from the headers the event id, event type,
producing service, schema version and W3C traceparent. Recognised header names:

* event id: ``event-id``, ``event_id``, ``message-id``, ``ce_id`` (CloudEvents);
  without one, ``topic/partition/offset``;
* type: ``event-type``, ``event_type``, ``ce_type``; without one, the topic;
* service: ``source-service``, ``service``, ``producer``, ``ce_source``; else ``unknown``;
* schema version: ``schema-version``, ``schema_version``; trace: ``traceparent``.

Values in the Confluent wire format (magic byte 0 + 4-byte schema id) also tell their
schema id: the tap counts the ids it sees per topic (``TopicSchemaId``), and where the
cluster's Schema Registry maps the id to a version of the topic's value subject, that
version is the event's schema version when no header names one.

On its first run a partition starts at its end (the tap samples from now on, it does not
replay history); afterwards it continues from the tap group's committed offsets. Each
run reads at most ``MONITOR_TAP_MAX_MESSAGES`` messages for at most ``MONITOR_TAP_SECONDS``,
stores them (idempotently: a message read twice is stored once), then commits.
``tap_sample_percent`` records a deterministic share of the messages.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.utils import timezone

from monitor.choices import Stage
from monitor.events import traceparent as tp
from monitor.events.config import IngestLimits, TapConfig
from monitor.events.ingest import EventRow, FieldError, validate_event
from monitor.events.store import store_rows
from monitor.kafka.adapter import AssignedConsumer, ConsumedMessage, KafkaAdapter, KafkaUnavailable
from monitor.models import Cluster
from monitor.models.clusters import split_patterns
from monitor.schemas.registry import record_seen_schema_ids, version_of_ids, wire_schema_id

log = logging.getLogger(__name__)

EVENT_ID_HEADERS = ("event-id", "event_id", "message-id", "ce_id")
TYPE_HEADERS = ("event-type", "event_type", "ce_type")
SERVICE_HEADERS = ("source-service", "service", "producer", "ce_source")
SCHEMA_HEADERS = ("schema-version", "schema_version")
UNKNOWN_SERVICE = "unknown"
TAP_ATTRIBUTES = {"via": "header_tap"}
STORE_CHUNK = 1000


@dataclass(frozen=True)
class TapRun:
    partitions: int
    messages: int
    recorded: int
    duplicates: int
    skipped: int
    error: str = ""


def _header(headers: Mapping[str, str], names: Iterable[str]) -> str:
    lowered = {name.lower(): value for name, value in headers.items()}
    for name in names:
        value = lowered.get(name)
        if value:
            return value
    return ""


def sampled(topic: str, partition: int, offset: int, percent: int) -> bool:
    """Deterministic: a message is in or out of the sample however often it is read."""
    if percent >= 100:
        return True
    return zlib.crc32(f"{topic}/{partition}/{offset}".encode()) % 100 < percent


def message_event(message: ConsumedMessage,
                  registered: Mapping[tuple[str, int], int] | None = None) -> dict[str, Any]:
    """The EVENT (contract form) a message's metadata describes. ``registered``: (topic,
    schema id) -> version, from the cluster's Schema Registry."""
    headers = message.headers
    event: dict[str, Any] = {
        "event_id": (_header(headers, EVENT_ID_HEADERS) or f"{message.topic}/{message.partition}/{message.offset}")[:200],
        "type": (_header(headers, TYPE_HEADERS) or message.topic)[:200],
        "service": (_header(headers, SERVICE_HEADERS) or UNKNOWN_SERVICE)[:200],
        "stage": Stage.PUBLISHED.value,
        "timestamp": dt.datetime.fromtimestamp(message.timestamp_ms / 1000, dt.timezone.utc).isoformat(),
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "attributes": TAP_ATTRIBUTES,
    }
    if message.key:
        event["key"] = message.key.replace("\x00", "")[:255]
    version = _header(headers, SCHEMA_HEADERS).strip()
    if version.isdigit():
        event["schema_version"] = int(version)
    elif registered:
        schema_id = wire_schema_id(message.value)
        if schema_id is not None and (message.topic, schema_id) in registered:
            event["schema_version"] = registered[(message.topic, schema_id)]
    header = _header(headers, ("traceparent",)).strip()
    if header:
        try:
            tp.parse(header)
            event["traceparent"] = header
        except tp.TraceContextError:
            pass  # a malformed header costs the trace link, not the event
    return event


def messages_to_rows(messages: Iterable[ConsumedMessage], percent: int, now: dt.datetime,
                     limits: IngestLimits, registered: Mapping[tuple[str, int], int] | None = None,
                     ) -> tuple[list[EventRow], int]:
    """Rows for the sampled messages, and how many could not be recorded."""
    rows: list[EventRow] = []
    skipped = 0
    for message in messages:
        if not sampled(message.topic, message.partition, message.offset, percent):
            continue
        errors: list[FieldError] = []
        row = validate_event(message_event(message, registered), 0, now, limits, errors)
        if row is None:
            skipped += 1
            log.warning("tap skipped %s/%d/%d: %s", message.topic, message.partition, message.offset,
                        "; ".join(f"{e.loc[-1]} {e.msg}" for e in errors))
        else:
            rows.append(row)
    return rows, skipped


def tap_cluster(cluster_id: int, config: TapConfig | None = None) -> TapRun:
    """One run of the tap of one cluster; at most one at a time per cluster."""
    config = config or TapConfig.from_settings()
    cluster = Cluster.objects.get(pk=cluster_id)
    topics = split_patterns(cluster.tap_topics)
    if not (cluster.enabled and cluster.tap_enabled and topics):
        return TapRun(0, 0, 0, 0, 0)
    lock = f"events:tap:{cluster_id}"
    if not cache.add(lock, 1, timeout=config.max_seconds * 3 + 30):
        return TapRun(0, 0, 0, 0, 0, error="another tap run of this cluster is in progress")
    try:
        return _run(cluster, topics, config)
    except KafkaUnavailable as exc:
        log.warning("header tap of %s: %s", cluster.name, exc)
        return TapRun(0, 0, 0, 0, 0, error=str(exc))
    finally:
        cache.delete(lock)


def _run(cluster: Cluster, topics: list[str], config: TapConfig) -> TapRun:
    from monitor.lag.clusters import connection_settings

    settings = connection_settings(cluster)
    group = cluster.tap_group
    with KafkaAdapter(settings) as admin:
        counts = admin.topic_partition_counts(topics)
        partitions = [(topic, p) for topic in topics if topic in counts for p in range(counts[topic])]
        if not partitions:
            return TapRun(0, 0, 0, 0, 0, error="none of the tap topics exist")
        read = admin.committed_offsets([group])
        if group in read.errors:
            # Never read as a first run (which starts at the log end and commits there):
            # the messages since the group's last commit would be skipped for good.
            error = (f"the tap group's committed offsets could not be read ({read.errors[group]}); "
                     f"nothing read, nothing committed")
            log.warning("header tap of %s: %s", cluster.name, error)
            return TapRun(0, 0, 0, 0, 0, error=error)
        committed = read.offsets.get(group, {})
        ends, _ = admin.log_offsets(partitions)
    positions: dict[tuple[str, int], int] = {}
    targets = {tp_key: offsets.log_end_offset for tp_key, offsets in ends.items()}
    consumer = AssignedConsumer(settings, group, partitions)
    try:
        for tp_key in partitions:
            if tp_key in committed:
                positions[tp_key] = committed[tp_key]
            elif tp_key in targets:
                # First run: sample from now on instead of replaying the topic's history.
                consumer.seek(tp_key[0], tp_key[1], targets[tp_key])
                positions[tp_key] = targets[tp_key]
        messages = _read(consumer, positions, targets, config)
        now = timezone.now()
        limits = IngestLimits.from_settings()
        registered = version_of_ids(cluster.id) if cluster.schema_registry_url else {}
        rows, skipped = messages_to_rows(messages, cluster.tap_sample_percent, now, limits, registered)
        record_seen_schema_ids(cluster.id, seen_schema_ids(messages), now)
        recorded = duplicates = 0
        for start in range(0, len(rows), STORE_CHUNK):
            result = store_rows(rows[start:start + STORE_CHUNK], now)
            recorded += result.accepted
            duplicates += result.duplicates
        if positions:
            consumer.commit(positions)
    finally:
        consumer.close()
    return TapRun(len(partitions), len(messages), recorded, duplicates, skipped)


def seen_schema_ids(messages: Iterable[ConsumedMessage]) -> dict[tuple[str, int], int]:
    """Messages per (topic, schema id) among those in the Confluent wire format (all
    read, not only the sampled share: an unknown id must not hide behind the sample)."""
    counts: dict[tuple[str, int], int] = {}
    for message in messages:
        schema_id = wire_schema_id(message.value)
        if schema_id is not None:
            counts[(message.topic, schema_id)] = counts.get((message.topic, schema_id), 0) + 1
    return counts


def _read(consumer: AssignedConsumer, positions: dict[tuple[str, int], int],
          targets: Mapping[tuple[str, int], int], config: TapConfig) -> list[ConsumedMessage]:
    """Poll until every partition reached the end it had when the run began, or the
    run's message or time budget is spent. Updates ``positions`` (next offset to read)."""
    deadline = time.monotonic() + config.max_seconds
    messages: list[ConsumedMessage] = []

    def behind() -> bool:
        return any(positions.get(key, 0) < end for key, end in targets.items())

    while behind() and len(messages) < config.max_messages and time.monotonic() < deadline:
        batch = consumer.poll(max_records=min(500, config.max_messages - len(messages)), timeout_seconds=0.5)
        for message in batch:
            messages.append(message)
            key = (message.topic, message.partition)
            positions[key] = max(positions.get(key, 0), message.offset + 1)
    return messages
