"""Record timestamps at committed offsets: which to read, the cache, the read.

A cycle reads, after the log offsets and on the same Kafka thread, the timestamp of the
record each lagging group reads next (:meth:`KafkaAdapter.record_timestamps`: one Fetch
per partition leader, all in flight together). What it costs is bounded twice:

- a record's timestamp never changes, so each answer is cached per (cluster, topic,
  partition, offset), in this process (the newest :data:`LOCAL_ENTRIES`) and in
  Django's cache (Redis in production: shared by the workers, kept across restarts)
  for :data:`CACHE_SECONDS`: a stuck consumer costs one fetch, not one per poll;
- a byte budget per partition (``MONITOR_TIME_LAG_FETCH_PARTITION_BYTES``) and per
  cycle (``MONITOR_TIME_LAG_FETCH_CYCLE_BYTES``): the cycle reads at most
  cycle // partition partitions, those lagging most first; the others keep the
  history's answer, and its method says ``(budget)``.

A failed read never fails the cycle: the history answers, the reason says why.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache

from monitor.kafka.adapter import KafkaAdapter, LogOffsets, RecordTimestamp
from monitor.lag.compute import TopicPartitionKey
from monitor.lag.timelag import PartitionOffset, RecordTime, choose_reads

log = logging.getLogger(__name__)

CACHE_SECONDS = 24 * 3600
LOCAL_ENTRIES = 200_000
"""About 40 MB at most; a cycle of 100,000 lagging partitions fits."""

CachedRecord = tuple[int, int, bool, bool, int]
_local: OrderedDict[str, CachedRecord] = OrderedDict()
_local_lock = threading.Lock()  # clusters are polled on threads of their own
OVER_BUDGET = "budget"
"""The reason kept for offsets the budget left unread (``RecordReads.not_read``)."""


@dataclass
class RecordReads:
    """What one cycle knows about the records its lagging groups read next."""

    times: dict[PartitionOffset, RecordTime] = field(default_factory=dict)
    not_read: dict[PartitionOffset, str] = field(default_factory=dict)
    """Why an offset has no record time: :data:`OVER_BUDGET`, or the read's error."""
    cached: int = 0
    """Answers that came from the cache."""
    fetched_partitions: int = 0
    requests: int = 0
    """Fetch requests sent (one per leader at most)."""
    bytes: int = 0
    """Record bytes received."""
    seconds: float = 0.0
    """Time spent: cache lookups, the Fetch and parsing its answer."""


def fetch_offset(committed_offset: int, log_start_offset: int | None) -> int:
    """Where the next record of a group is: below the log start (data loss), at the log start."""
    return committed_offset if log_start_offset is None else max(committed_offset, log_start_offset)


def wanted_offsets(committed: Mapping[str, Mapping[TopicPartitionKey, int]],
                   log_offsets: Mapping[TopicPartitionKey, LogOffsets]) -> dict[PartitionOffset, int]:
    """Every (topic, partition, offset) some group reads next while behind, with its lag
    in messages (groups at the log end need no record: their time lag is exactly 0)."""
    wanted: dict[PartitionOffset, int] = {}
    for offsets in committed.values():
        for key, offset in offsets.items():
            log_offset = log_offsets.get(key)
            if log_offset is None:
                continue
            at = fetch_offset(offset, log_offset.log_start_offset)
            if at < log_offset.log_end_offset:
                wanted[(key[0], key[1], at)] = log_offset.log_end_offset - at
    return wanted


def budget_partitions() -> int:
    partition_bytes = settings.MONITOR_TIME_LAG_FETCH_PARTITION_BYTES
    return settings.MONITOR_TIME_LAG_FETCH_CYCLE_BYTES // partition_bytes if partition_bytes else 0


def read_record_times(adapter: KafkaAdapter, cluster_id: int, wanted: Mapping[PartitionOffset, int],
                      leaders: Mapping[TopicPartitionKey, int]) -> RecordReads:
    """The record time of every wanted offset: from the cache, else read within the budget."""
    started = time.perf_counter()
    reads = _read_record_times(adapter, cluster_id, wanted, leaders)
    reads.seconds = time.perf_counter() - started
    return reads


def _read_record_times(adapter: KafkaAdapter, cluster_id: int, wanted: Mapping[PartitionOffset, int],
                       leaders: Mapping[TopicPartitionKey, int]) -> RecordReads:
    reads = RecordReads()
    max_partitions = budget_partitions()
    if not wanted or not max_partitions:  # a budget of 0 bytes turns record timestamps off
        return reads
    keys = {offset: _cache_key(cluster_id, offset) for offset in wanted}
    cached = _cache_get(list(keys.values()))
    for offset, key in keys.items():
        value = cached.get(key)
        if value is not None:
            reads.times[offset] = _from_cache(offset, value)
    reads.cached = len(reads.times)
    to_read, left = choose_reads(((t, p, o, lag) for (t, p, o), lag in wanted.items() if (t, p, o) not in reads.times),
                                 max_partitions)
    reads.not_read.update(dict.fromkeys(left, OVER_BUDGET))
    if not to_read:
        return reads
    requests_before = adapter.requests
    try:
        answer = adapter.record_timestamps(
            to_read, dict(leaders), partition_max_bytes=settings.MONITOR_TIME_LAG_FETCH_PARTITION_BYTES,
            max_bytes=settings.MONITOR_TIME_LAG_FETCH_CYCLE_BYTES,
        )
    except Exception as exc:  # noqa: BLE001 - the history still answers; the cycle goes on
        log.warning("reading record timestamps failed: %s", exc)
        reads.requests = adapter.requests - requests_before
        reads.not_read.update(dict.fromkeys(to_read, f"record read failed: {type(exc).__name__}"))
        return reads
    reads.requests = adapter.requests - requests_before
    reads.fetched_partitions = len({(t, p) for t, p, _ in to_read})
    reads.bytes = answer.bytes
    fresh = {offset: _record_time(found) for offset, found in answer.found.items()}
    reads.times.update(fresh)
    for offset, reason in answer.missing.items():
        # Nothing within the partition's bytes: the byte budget stopped it too.
        reads.not_read[offset] = OVER_BUDGET if reason.startswith("record not within") else reason
    _cache_set({keys[offset]: _to_cache(found) for offset, found in answer.found.items() if offset in keys})
    return reads


def _record_time(found: RecordTimestamp) -> RecordTime:
    return RecordTime(
        requested_offset=found.requested_offset, offset=found.offset,
        timestamp=datetime.fromtimestamp(found.timestamp_ms / 1000, tz=UTC),
        log_append_time=found.log_append_time, exact=found.exact, backwards_seconds=found.backwards_ms / 1000,
    )


def _cache_key(cluster_id: int, offset: PartitionOffset) -> str:
    topic, partition, at = offset
    # Topic names may be 249 characters: hashed, every key stays short and cache-safe.
    digest = hashlib.blake2b(topic.encode(), digest_size=10).hexdigest()
    return f"record-ts:{cluster_id}:{digest}:{partition}:{at}"


def _to_cache(found: RecordTimestamp) -> CachedRecord:
    return (found.offset, found.timestamp_ms, found.log_append_time, found.exact, found.backwards_ms)


def _from_cache(offset: PartitionOffset, value: CachedRecord) -> RecordTime:
    found_offset, timestamp_ms, append, exact, backwards_ms = value
    return _record_time(RecordTimestamp(requested_offset=offset[2], offset=found_offset, timestamp_ms=timestamp_ms,
                                        log_append_time=append, exact=exact, backwards_ms=backwards_ms))


def _cache_get(keys: list[str]) -> dict[str, CachedRecord]:
    with _local_lock:
        found = {key: _local[key] for key in keys if key in _local}
    missing = [key for key in keys if key not in found]
    if missing:
        try:
            shared = cache.get_many(missing)
        except Exception as exc:  # noqa: BLE001 - without the shared cache, this process's still answers
            log.warning("record timestamp cache unavailable: %s", exc)
            shared = {}
        _remember(shared)
        found.update(shared)
    return found


def _cache_set(values: dict[str, CachedRecord]) -> None:
    if not values:
        return
    _remember(values)
    try:
        cache.set_many(values, timeout=CACHE_SECONDS)
    except Exception as exc:  # noqa: BLE001
        log.warning("record timestamp cache unavailable: %s", exc)


def _remember(values: dict[str, CachedRecord]) -> None:
    with _local_lock:
        _local.update(values)
        while len(_local) > LOCAL_ENTRIES:
            _local.popitem(last=False)
