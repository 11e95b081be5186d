"""One poll cycle of one cluster, and claiming the clusters that are due.

A cycle reads, in this order: the consumer groups (filtered by the cluster's
include/exclude globs), the committed offsets of all of them (batched per
coordinator), the partitions and leaders of the topics they read (one Metadata
request), then the log-start and log-end offsets of all those partitions (batched per
leader), then the timestamps of the records lagging groups read next (one Fetch per
leader, within a byte budget, cached: :mod:`monitor.lag.record_times`). Committed
offsets are read before log-end offsets so lag is never understated. Then
:mod:`monitor.lag.record` stores the whole cycle in one transaction.

The Kafka requests run on a thread of their own while this one reads what the
database already holds (groups, topics, the previous poll, the status window): the
two wait on different servers, so a cycle need not wait for one after the other.

A cluster that cannot be reached is marked unreachable with the error and a failed
PollRun; :func:`poll_cluster` never raises for that.

A cluster with more groups than ``MONITOR_POLL_SHARD_GROUPS`` is polled in shards
(:mod:`monitor.lag.shards`): one task per shard, each listing the groups, keeping those
it owns and reading and recording only them, with a PollRun of its own stamped with the
cycle's start. A shard that cannot read Kafka marks its own groups unknown, not gone;
the cluster becomes unreachable only when every shard of the cycle failed.
"""
from __future__ import annotations

import contextvars
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from monitor.choices import ClusterStatus
from monitor.collector import fewer_collections
from monitor.kafka.adapter import KafkaAdapter, KafkaUnavailable
from monitor.lag import history, record_times, snapshot
from monitor.lag.clusters import cluster_secrets, connection_settings
from monitor.lag.compute import covered_partitions_of_groups
from monitor.lag.bulk import update_rows
from monitor.lag.record import UNREAD_FIELDS, ClusterReading, Progress, mark_unread, no_progress, record_cycle
from monitor.lag.shards import Shard
from monitor.models import Cluster, ConsumerGroup, PollRun
from monitor.redaction import redact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollOutcome:
    cluster: str
    ok: bool
    groups: int
    partitions: int
    requests: int
    duration_seconds: float
    error: str = ""
    kafka_seconds: float = 0.0
    """From the start of the cycle until Kafka had answered everything."""
    history_seconds: float = 0.0
    """Reading the stored history, done while Kafka answers."""
    record_reads: record_times.RecordReads | None = None
    """Record timestamps of this cycle: how many were cached, read, and the bytes."""

    def summary(self) -> str:
        """One line for the poll_lag command."""
        if not self.ok:
            return f"{self.cluster}: unreachable ({self.error}), {self.duration_seconds:.2f} s"
        return (f"{self.cluster}: ok, {self.groups} groups, {self.partitions} partitions, "
                f"{self.requests} requests, {self.duration_seconds:.2f} s")


def claim_due_clusters(now: datetime) -> list[int]:
    """Enabled clusters whose poll is due, claimed with a compare-and-set on next_poll_at
    so two schedulers never poll one cluster twice; returns the ids this caller won."""
    due = Cluster.objects.filter(enabled=True).filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
    won = []
    for cluster_id, next_poll_at, interval in due.values_list("id", "next_poll_at", "poll_interval_seconds"):
        claim = Cluster.objects.filter(pk=cluster_id, enabled=True)
        claim = claim.filter(next_poll_at__isnull=True) if next_poll_at is None else claim.filter(next_poll_at=next_poll_at)
        if claim.update(next_poll_at=now + timedelta(seconds=interval)) == 1:
            won.append(cluster_id)
    return won


def read_cluster(adapter: KafkaAdapter, cluster: Cluster, progress: Progress = no_progress,
                 at: datetime | None = None, shard: Shard | None = None) -> ClusterReading:
    """The Kafka half of a cycle: plain data, nothing stored. ``at`` stamps the poll
    (default: when the log offsets were read). With ``shard``, only the groups that
    shard owns, and the topics they read."""
    watches = cluster.group_filter()
    listed = [g for g in adapter.list_groups()
              if watches(g.group_id) and (shard is None or shard.owns(g.group_id))]
    progress(f"listed {len(listed)} groups")
    # Share groups (KIP-932) have no committed offsets to lag behind: listed, not polled.
    committed, membership = adapter.committed_offsets_and_membership(
        [g.group_id for g in listed if g.protocol != "share"], listed)
    progress(f"read committed offsets of {len(committed.offsets)} groups")
    metadata = adapter.topic_metadata({topic for offsets in committed.offsets.values() for topic, _ in offsets})
    counts = metadata.partition_counts
    partitions = covered_partitions_of_groups(committed.offsets, counts)
    leaders = {(topic, p): leader for topic, by_partition in metadata.leaders.items()
               for p, leader in by_partition.items()}
    log_offsets, log_errors = adapter.log_offsets(partitions, leaders)
    polled_at = at or timezone.now()
    retention = adapter.topic_retention(counts)
    progress(f"read log offsets of {len(log_offsets)} partitions")
    wanted = record_times.wanted_offsets(committed.offsets, log_offsets)
    records = record_times.read_record_times(adapter, cluster.pk, wanted, leaders)
    if wanted:
        progress(f"record timestamps of {len(records.times)} of {len(wanted)} lagging offsets "
                 f"({records.cached} cached, {records.fetched_partitions} partitions read, {records.bytes:,} bytes)")
    return ClusterReading(
        polled_at=polled_at, groups=listed, committed=committed.offsets, group_errors=committed.errors,
        partition_counts=counts, topic_errors=metadata.errors, log_offsets=log_offsets, log_errors=log_errors,
        requests=adapter.requests, membership=membership, record_reads=records, retention=retention,
    )


class _KafkaRead(threading.Thread):
    """The Kafka half of a cycle on its own thread: connect, read, close. It touches no
    database; whatever it raises is kept for the caller."""

    def __init__(self, cluster: Cluster, progress: Progress, at: datetime | None = None,
                 shard: Shard | None = None) -> None:
        super().__init__(name=f"kafka-read-{cluster.pk}", daemon=True)
        self.cluster, self.progress, self.at, self.shard = cluster, progress, at, shard
        self.adapter = KafkaAdapter(connection_settings(cluster))
        self.reading: ClusterReading | None = None
        self.error: Exception | None = None
        self.finished_at = 0.0
        self._context = contextvars.copy_context()  # the caller's trace span stays the parent

    def run(self) -> None:
        self._context.run(self._read)

    def _read(self) -> None:
        try:
            self.adapter.connect()
            self.reading = read_cluster(self.adapter, self.cluster, self.progress, self.at, self.shard)
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            self.error = exc
        finally:
            self.adapter.close()
            self.finished_at = time.monotonic()

    def result(self) -> ClusterReading:
        self.join()
        if self.error is not None:
            raise self.error
        if self.reading is None:
            raise RuntimeError("the Kafka read ended without a result")
        return self.reading


@fewer_collections(give_back=True)
def poll_cluster(cluster_id: int, progress: Progress = no_progress, now: datetime | None = None,
                 shard: Shard | None = None, cycle_started_at: datetime | None = None) -> PollOutcome | None:
    """One cycle of one cluster; None when the cluster no longer exists. ``now`` stamps
    the poll instead of the clock (scenario tests replay minutes of traffic in seconds).

    With ``shard``, one shard of a sharded cycle: only the groups it owns are read and
    recorded; its PollRun starts at ``cycle_started_at``, the same for every shard.

    The cyclic collector runs less often meanwhile, and the memory the cycle freed goes
    back to the system after it (:mod:`monitor.collector`)."""
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None:
        log.warning("cluster %s no longer exists; nothing to poll", cluster_id)
        return None
    started_at = now or cycle_started_at or timezone.now()
    clock_start = time.monotonic()
    kafka = _KafkaRead(cluster, progress, now, shard)
    kafka.start()
    try:
        # Bounds from the cycle's start reach at least as far back as the poll's own.
        stored = history.read_stored(cluster, started_at, shard.owns if shard is not None else None)
        history_seconds = time.monotonic() - clock_start
    finally:
        kafka.join()
    try:
        reading = kafka.result()
    except KafkaUnavailable as exc:
        return _record_failure(cluster, started_at, clock_start, kafka.adapter.requests, str(exc), shard)
    except Exception as exc:  # noqa: BLE001 - a broker answer we cannot use must not stop the poller
        log.error("polling cluster %s failed: %s", cluster.name,
                  redact(f"{type(exc).__name__}: {exc}", cluster_secrets(cluster)))
        return _record_failure(cluster, started_at, clock_start, kafka.adapter.requests,
                               f"{type(exc).__name__}: {exc}", shard)
    result = record_cycle(cluster, reading, started_at, clock_start, progress, stored, shard)
    snapshot.store_cycle(result)
    run = result.poll_run
    return PollOutcome(cluster=cluster.name, ok=True, groups=run.groups, partitions=run.partitions,
                       requests=run.requests, duration_seconds=time.monotonic() - clock_start, error=run.error,
                       kafka_seconds=kafka.finished_at - clock_start, history_seconds=history_seconds,
                       record_reads=reading.record_reads)


def _record_failure(cluster: Cluster, started_at: datetime, clock_start: float, requests: int,
                    error: str, shard: Shard | None = None) -> PollOutcome:
    now = timezone.now()
    duration = time.monotonic() - clock_start
    error = redact(error, cluster_secrets(cluster))  # a SASL error may quote the password
    if shard is not None:
        return _record_shard_failure(cluster, shard, started_at, now, duration, requests, error)
    log.warning("cluster %s unreachable: %s", cluster.name, error)
    PollRun.objects.create(cluster=cluster, started_at=started_at, duration_seconds=duration, requests=requests,
                           ok=False, error=error)
    Cluster.objects.filter(pk=cluster.pk).update(status=ClusterStatus.UNREACHABLE, last_poll_at=now,
                                                 last_error=error)
    cluster.status, cluster.last_poll_at, cluster.last_error = ClusterStatus.UNREACHABLE, now, error
    snapshot.store_cluster_status(cluster)
    return PollOutcome(cluster=cluster.name, ok=False, groups=0, partitions=0, requests=requests,
                       duration_seconds=duration, error=error)


def _record_shard_failure(cluster: Cluster, shard: Shard, started_at: datetime, now: datetime, duration: float,
                          requests: int, error: str) -> PollOutcome:
    """One shard could not read Kafka: its groups, and only they, become unknown (not
    gone, their lag not 0), in one transaction with the shard's failed PollRun. The
    cluster keeps the status the other shards give it (unreachable once every shard of
    the cycle failed); its last error names the shard."""
    error = f"{shard.label}: {error}"
    log.warning("cluster %s: %s", cluster.name, error)
    owned = [g for g in ConsumerGroup.objects.filter(cluster=cluster, gone_at__isnull=True) if shard.owns(g.name)]
    for group in owned:
        mark_unread(group, now, error)
    with transaction.atomic():
        update_rows(ConsumerGroup, owned, UNREAD_FIELDS)
        PollRun.objects.create(cluster=cluster, started_at=started_at, duration_seconds=duration, requests=requests,
                               ok=False, error=error)
        # Every shard of the cycle failed: the cluster as a whole could not be read.
        failed = PollRun.objects.filter(cluster=cluster, started_at=started_at, ok=False).count()
        status = ClusterStatus.UNREACHABLE if failed >= shard.count else cluster.status
        Cluster.objects.filter(pk=cluster.pk).update(status=status, last_poll_at=now, last_error=error)
    cluster.status, cluster.last_poll_at, cluster.last_error = status, now, error
    snapshot.groups_changed(cluster)
    snapshot.store_cluster_status(cluster)
    return PollOutcome(cluster=cluster.name, ok=False, groups=len(owned), partitions=0, requests=requests,
                       duration_seconds=duration, error=error)
