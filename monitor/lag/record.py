"""Turning one cluster reading into stored lag: samples, group snapshots, lifecycle
events, topics and the poll run, all written in one transaction with one bulk write
per table."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from monitor.choices import ClusterStatus, GroupEventKind, GroupStatus
from monitor.kafka.adapter import GroupListing, LogOffsets
from monitor.lag import forecast, history
from monitor.lag.bulk import insert_rows, update_rows
from monitor.lag.changes import GroupChange, group_changes
from monitor.lag.compute import (
    PartitionLag, TopicLag, TopicPartitionKey, covered_partitions, group_partition_lags, max_known, newly_lost,
    sum_known, topic_lags,
)
from monitor.lag.status import GroupPoint, Rewind, StatusInputs, Verdict, group_status
from monitor.lag.timelag import PartitionHistory, TimeLag, time_lag
from monitor.models import (
    Cluster, ConsumerGroup, GroupEvent, LogOffsetSample, PartitionLagSample, PollRun, Topic, TopicLagSample,
)

BULK_BATCH_SIZE = 2000
GONE_REASON = "no longer listed by the cluster"

Progress = Callable[[str], None]


@dataclass
class ClusterReading:
    """Everything one poll read from a cluster, as plain data."""

    polled_at: datetime
    groups: list[GroupListing]
    committed: dict[str, dict[TopicPartitionKey, int]]
    group_errors: dict[str, str] = field(default_factory=dict)
    partition_counts: dict[str, int] = field(default_factory=dict)
    topic_errors: dict[str, str] = field(default_factory=dict)
    log_offsets: dict[TopicPartitionKey, LogOffsets] = field(default_factory=dict)
    log_errors: dict[TopicPartitionKey, str] = field(default_factory=dict)
    requests: int = 0

    @cached_property
    def partitions(self) -> set[TopicPartitionKey]:
        keys: set[TopicPartitionKey] = set()
        for offsets in self.committed.values():
            keys |= covered_partitions(offsets, self.partition_counts)
        return keys


@dataclass
class GroupResult:
    """One group after this poll: what the snapshot cache and the reply need."""

    group: ConsumerGroup
    partitions: list[PartitionLag]
    time_lags: dict[TopicPartitionKey, TimeLag]
    topics: list[TopicLag]
    verdict: Verdict
    changes: list[GroupChange]


@dataclass
class CycleResult:
    cluster: Cluster
    poll_run: PollRun
    groups: list[GroupResult]
    gone: list[ConsumerGroup]


def no_progress(_: str) -> None:
    pass


def record_cycle(cluster: Cluster, reading: ClusterReading, started_at: datetime, clock_start: float,
                 progress: Progress = no_progress) -> CycleResult:
    """Compute everything about this poll, then store it in one transaction."""
    now = reading.polled_at
    window = settings.MONITOR_STATUS_WINDOW_SECONDS
    history_since = now - timedelta(
        seconds=max(window, settings.MONITOR_STOPPED_AFTER_SECONDS) + 2 * cluster.poll_interval_seconds)
    existing = {g.name: g for g in ConsumerGroup.objects.filter(cluster=cluster)}
    topics = {t.name: t for t in Topic.objects.filter(cluster=cluster)}

    lags = _partition_lags(reading)
    polled_groups = [existing[name] for name in lags if name in existing]
    group_ids = [g.id for g in polled_groups]
    previous = history.previous_partitions(polled_groups)
    prepared, start_rates = _log_end_history(cluster, reading, lags, now, window)
    past_points = history.group_points(group_ids, history_since, now)
    past_rewinds = history.rewinds(group_ids, now - timedelta(seconds=window))
    progress(f"read the history of {len(prepared)} partitions")

    listed = {g.group_id: g for g in reading.groups}
    results: list[GroupResult] = []
    new_groups: list[ConsumerGroup] = []
    for name, parts in sorted(lags.items()):
        row = existing.get(name)
        if row is None:
            row = ConsumerGroup(cluster=cluster, name=name, first_seen_at=now, last_seen_at=now)
            new_groups.append(row)
        results.append(_evaluate_group(
            row, parts, listed.get(name), previous.get(row.id), past_points.get(row.id, []),
            past_rewinds.get(row.id, []), prepared, start_rates, topics, reading.partition_counts, now,
            is_new=row.id is None,
        ))
    gone = _mark_gone([row for name, row in existing.items() if row.gone_at is None and name not in listed], now)
    progress(f"computed the lag of {len(results)} groups")

    with transaction.atomic():
        ConsumerGroup.objects.bulk_create(new_groups, batch_size=BULK_BATCH_SIZE)
        _write_samples(cluster, reading, results, now)
        GroupEvent.objects.bulk_create(
            [GroupEvent(cluster=cluster, group=r.group, kind=c.kind, topic=c.topic, partition=c.partition, at=now,
                        detail=c.detail[:500]) for r in results for c in r.changes]
            + [GroupEvent(cluster=cluster, group=g, kind=GroupEventKind.GROUP_DELETED, at=now, detail=GONE_REASON)
               for g in gone],
            batch_size=BULK_BATCH_SIZE,
        )
        _write_topics(cluster, topics, reading.partition_counts, now)
        created = {id(g) for g in new_groups}
        update_rows(ConsumerGroup, [r.group for r in results if id(r.group) not in created] + gone, _SNAPSHOT_FIELDS)
        error = _partial_errors(reading)
        poll_run = PollRun.objects.create(
            cluster=cluster, started_at=started_at, duration_seconds=time.monotonic() - clock_start,
            requests=reading.requests, groups=len(results), partitions=len(reading.partitions), ok=True,
            error=error,
        )
        Cluster.objects.filter(pk=cluster.pk).update(
            status=ClusterStatus.OK, last_poll_at=now, last_success_at=now, last_error=error,
        )
    cluster.status, cluster.last_poll_at, cluster.last_success_at, cluster.last_error = (
        ClusterStatus.OK, now, now, error)
    return CycleResult(cluster=cluster, poll_run=poll_run, groups=results, gone=gone)


def _partition_lags(reading: ClusterReading) -> dict[str, list[PartitionLag]]:
    log_pairs = {tp: (o.log_start_offset, o.log_end_offset) for tp, o in reading.log_offsets.items()}
    log_errors = dict(reading.log_errors)
    if reading.topic_errors:
        for tp in reading.partitions:
            if tp[0] in reading.topic_errors:
                log_errors[tp] = reading.topic_errors[tp[0]]
    return {name: group_partition_lags(offsets, reading.partition_counts, log_pairs, log_errors)
            for name, offsets in reading.committed.items()}


def _log_end_history(
    cluster: Cluster, reading: ClusterReading, lags: dict[str, list[PartitionLag]], now: datetime, window: float,
) -> tuple[dict[TopicPartitionKey, PartitionHistory], dict[TopicPartitionKey, float | None]]:
    """Per partition: the log-end history time lag needs (including the points around
    every lagging group's committed offset) and how fast the log start advances."""
    needed: dict[TopicPartitionKey, set[int]] = {}
    for parts in lags.values():
        for part in parts:
            if part.committed_offset is not None and part.lag:
                needed.setdefault(part.key, set()).add(part.committed_offset)
    points = history.offset_points(cluster.id, needed, reading.log_offsets, now - timedelta(seconds=window))
    prepared, start_rates = {}, {}
    for tp, offsets in reading.log_offsets.items():
        stored = points.get(tp, [])
        prepared[tp] = PartitionHistory(stored, offsets.log_end_offset, now)
        start_rates[tp] = forecast.rate(
            [(p.polled_at, p.log_start_offset) for p in stored if (now - p.polled_at).total_seconds() <= window]
            + [(now, offsets.log_start_offset)]
        )
    return prepared, start_rates


def _mark_gone(rows: list[ConsumerGroup], now: datetime) -> list[ConsumerGroup]:
    """Groups the cluster no longer lists: their series ends, the row stays."""
    for row in rows:
        row.status, row.status_reason = GroupStatus.GONE, GONE_REASON
        row.gone_at = now
        row.total_lag = row.max_time_lag_seconds = row.catch_up_seconds = row.retention_risk_seconds = None
    return rows


_SNAPSHOT_FIELDS = [
    "state", "members", "status", "status_reason", "total_lag", "max_time_lag_seconds", "topics", "lost_messages",
    "catch_up_seconds", "retention_risk_seconds", "last_seen_at", "gone_at", "last_sample_at",
]


def _evaluate_group(
    row: ConsumerGroup, parts: list[PartitionLag], listing: GroupListing | None,
    previous: dict[TopicPartitionKey, PartitionLag] | None, past_points: list[GroupPoint], past_rewinds: list[Rewind],
    prepared: dict[TopicPartitionKey, PartitionHistory], start_rates: dict[TopicPartitionKey, float | None],
    topics: dict[str, Topic], partition_counts: dict[str, int],
    now: datetime, *, is_new: bool,
) -> GroupResult:
    window = settings.MONITOR_STATUS_WINDOW_SECONDS
    reappeared = not is_new and row.gone_at is not None
    time_lags = {p.key: time_lag(p.committed_offset, p.log_end_offset, prepared.get(p.key, ()), now) for p in parts}
    changes = group_changes(
        parts, previous, row.topics if not is_new else [],
        {name: t.partitions for name, t in topics.items()}, partition_counts,
        new_group=is_new, reappeared=reappeared,
    )
    rewinds = list(past_rewinds) + [
        Rewind(at=now, detail=c.detail) for c in changes if c.kind == GroupEventKind.OFFSET_RESET
    ]
    total_lag = sum_known(p.lag for p in parts)
    current = GroupPoint(
        polled_at=now,
        committed_total=sum_known(p.committed_offset for p in parts if p.committed_offset is not None),
        lag=total_lag,
        log_end_total=sum_known(p.log_end_offset for p in parts if p.committed_offset is not None),
    )
    group_history = [p for p in past_points if p.polled_at < now] + [current]
    state = listing.state if listing else row.state
    members = 0 if state.lower() == "empty" else None
    lost_now = [p for p in parts if p.lost_messages]
    verdict = group_status(StatusInputs(
        now=now, history=group_history, window_seconds=window,
        stopped_after_seconds=settings.MONITOR_STOPPED_AFTER_SECONDS,
        lost_messages=sum(p.lost_messages for p in lost_now), data_loss_partitions=len(lost_now),
        rewinds=rewinds, members=members, broker_state=state,
    ))

    in_window = [p for p in group_history if (now - p.polled_at).total_seconds() <= window]
    catch_up = forecast.catch_up(
        total_lag,
        forecast.rate([(p.polled_at, p.committed_total) for p in in_window]),
        forecast.rate([(p.polled_at, p.log_end_total) for p in in_window]),
    )
    retention = forecast.retention_risk(
        forecast.PartitionRetention(
            committed_offset=p.committed_offset, log_start_offset=p.log_start_offset, lag=p.lag,
            log_start_rate=start_rates.get(p.key),
        )
        for p in parts
    )
    lost_since = sum(newly_lost(previous.get(p.key) if previous else None, p) for p in parts)

    row.state = state[:40]
    row.members = members
    row.status, row.status_reason = verdict.status, verdict.reason[:500]
    row.total_lag = total_lag
    row.max_time_lag_seconds = max_known(t.seconds for t in time_lags.values())
    row.topics = sorted({p.topic for p in parts if p.committed_offset is not None})
    row.lost_messages = (row.lost_messages or 0) + lost_since
    row.catch_up_seconds = catch_up.seconds
    row.retention_risk_seconds = retention.seconds
    row.last_seen_at = now
    row.gone_at = None
    row.last_sample_at = now if parts else None
    return GroupResult(
        group=row, partitions=parts, time_lags=time_lags,
        topics=topic_lags(parts, {k: t.seconds for k, t in time_lags.items()}),
        verdict=verdict, changes=changes,
    )


_PARTITION_COLUMNS = ("group_id", "topic", "partition", "polled_at", "committed_offset", "log_start_offset",
                      "log_end_offset", "lag", "time_lag_seconds", "time_lag_method", "time_lag_reason")
_TOPIC_COLUMNS = ("group_id", "topic", "resolution", "polled_at", "lag", "time_lag_seconds", "partitions",
                  "unknown_partitions")
_LOG_OFFSET_COLUMNS = ("cluster_id", "topic", "partition", "polled_at", "log_start_offset", "log_end_offset")


def _write_samples(cluster: Cluster, reading: ClusterReading, results: list[GroupResult], now: datetime) -> None:
    partition_rows = []
    topic_rows = []
    for result in results:
        group_id = result.group.id
        for part in result.partitions:
            lag_in_time = result.time_lags[part.key]
            partition_rows.append((
                group_id, part.topic, part.partition, now, part.committed_offset, part.log_start_offset,
                part.log_end_offset, part.lag, lag_in_time.seconds, str(lag_in_time.method),
                (lag_in_time.reason or part.note)[:200],
            ))
        for topic in result.topics:
            topic_rows.append((group_id, topic.topic, 0, now, topic.lag, topic.time_lag_seconds, topic.partitions,
                               topic.unknown_partitions))
    insert_rows(PartitionLagSample, _PARTITION_COLUMNS, partition_rows)
    insert_rows(TopicLagSample, _TOPIC_COLUMNS, topic_rows)
    insert_rows(LogOffsetSample, _LOG_OFFSET_COLUMNS, [
        (cluster.id, topic, partition, now, offsets.log_start_offset, offsets.log_end_offset)
        for (topic, partition), offsets in sorted(reading.log_offsets.items())
    ])


def _write_topics(cluster: Cluster, topics: dict[str, Topic], partition_counts: dict[str, int], now: datetime) -> None:
    new, changed = [], []
    for name, count in partition_counts.items():
        row = topics.get(name)
        if row is None:
            new.append(Topic(cluster=cluster, name=name, partitions=count, first_seen_at=now, last_seen_at=now))
        else:
            row.partitions, row.last_seen_at = count, now
            changed.append(row)
    Topic.objects.bulk_create(new, batch_size=BULK_BATCH_SIZE)
    Topic.objects.bulk_update(changed, fields=["partitions", "last_seen_at"], batch_size=BULK_BATCH_SIZE)


def _partial_errors(reading: ClusterReading) -> str:
    """What could not be read although the cluster answered; empty when all went well."""
    parts = []
    if reading.group_errors:
        shown = "; ".join(f"{g}: {e}" for g, e in sorted(reading.group_errors.items())[:3])
        parts.append(f"{len(reading.group_errors)} group(s) could not be read ({shown})")
    if reading.topic_errors:
        shown = "; ".join(f"{t}: {e}" for t, e in sorted(reading.topic_errors.items())[:3])
        parts.append(f"{len(reading.topic_errors)} topic(s) not found ({shown})")
    other = {tp: e for tp, e in reading.log_errors.items() if tp[0] not in reading.topic_errors}
    if other:
        (topic, partition), first = sorted(other.items())[0]
        parts.append(f"{len(other)} partition(s) without log offsets ({topic}/{partition}: {first})")
    return "; ".join(parts)
