"""Turning one cluster reading into stored lag: samples, group snapshots, lifecycle
events, topics and the poll run, all written in one transaction with one bulk write
per table."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from monitor.choices import ClusterStatus, GroupEventKind, GroupStatus, TimeLagMethod
from monitor.kafka.adapter import GroupListing, GroupMembership, LogOffsets, TopicRetention
from monitor.lag import forecast, history, members
from monitor.lag import samples
from monitor.lag.bulk import update_rows
from monitor.lag.clusters import cluster_secrets
from monitor import humanize
from monitor.lag.changes import GroupChange, PreviousOffsets, group_changes, rewind_detail
from monitor.lag.compute import (
    PartitionLag, TopicLag, TopicPartitionKey, covered_partitions_of_groups, group_partition_lags, group_totals,
    newly_lost,
)
from monitor.lag.status import (
    GroupPoint, PartitionState, Rewind, StatusInputs, Verdict, comparable_window, group_status, members_live,
    partition_states,
)
from monitor.lag.shards import Shard
from monitor.lag.record_times import OVER_BUDGET, RecordReads, fetch_offset
from monitor.lag.timelag import OffsetPoint, PartitionHistory, TimeLag, over_budget, record_time_lag, time_lag
from monitor.models import Cluster, ConsumerGroup, GroupEvent, PollRun, Topic
from monitor.redaction import redact

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
    retention: dict[str, TopicRetention] = field(default_factory=dict)
    """retention.ms / retention.bytes per topic (DescribeConfigs), where the broker told."""
    membership: dict[str, GroupMembership] = field(default_factory=dict)
    """Members and assignments per group, where the coordinator told (see the adapter)."""
    record_reads: RecordReads = field(default_factory=RecordReads)
    """Timestamps of the records lagging groups read next (time lag method ``record``)."""

    @cached_property
    def partitions(self) -> set[TopicPartitionKey]:
        """Every partition of every topic some group has committed on."""
        return covered_partitions_of_groups(self.committed, self.partition_counts)


@dataclass
class GroupResult:
    """One group after this poll: what the snapshot cache and the reply need."""

    group: ConsumerGroup
    partitions: list[PartitionLag]
    topics: list[TopicLag]
    verdict: Verdict
    changes: list[GroupChange]
    partition_rows: list[tuple] = field(default_factory=list)
    """Per partition, in the order of ``partitions``, the values of
    :data:`PARTITION_ROW_FIELDS`, time lag included (what is stored and cached)."""


PARTITION_ROW_FIELDS = ("topic", "partition", "committed_offset", "log_start_offset", "log_end_offset", "lag",
                        "time_lag_seconds", "time_lag_method", "time_lag_reason", "stuck_since", "stalled")
_STORED_ROW_LENGTH = len(PARTITION_ROW_FIELDS)
_METHOD_TEXT = {method: str(method) for method in TimeLagMethod}


@dataclass
class CycleResult:
    cluster: Cluster
    poll_run: PollRun
    groups: list[GroupResult]
    gone: list[ConsumerGroup]
    all_groups: list[ConsumerGroup] = field(default_factory=list)
    """Every group row the cycle holds as it left them: the cluster's, or a shard's own."""
    whole_cluster: bool = True
    """False for one shard of a sharded cycle (``all_groups`` are only its own)."""


def no_progress(_: str) -> None:
    pass


def record_cycle(cluster: Cluster, reading: ClusterReading, started_at: datetime, clock_start: float,
                 progress: Progress = no_progress, stored: history.StoredHistory | None = None,
                 shard: Shard | None = None) -> CycleResult:
    """Compute everything about this poll, then store it in one transaction.

    With ``shard``, the reading holds only that shard's groups: only they can be found
    gone (another shard's groups are not listed here because that shard owns them).

    ``stored`` is what the database held before the poll, read while Kafka answered
    (:func:`history.read_stored` with a time at or before ``reading.polled_at``); it is
    read here when not given.
    """
    now = reading.polled_at
    _set_aside_unstorable_groups(reading)
    if stored is None:
        stored = history.read_stored(cluster, now, shard.owns if shard is not None else None)
    history_since = now - timedelta(seconds=history.status_history_seconds(cluster))
    window_start = now - timedelta(seconds=history.status_window_seconds(cluster))
    existing, topics = stored.groups, stored.topics

    lags = _partition_lags(reading)
    stored.read_groups_too([existing[name] for name in lags if name in existing])
    tables = _LogTables(cluster, reading, lags, stored.offset_points_after(window_start), now)
    progress(f"read the history of {len(reading.log_offsets)} partitions")

    # The highest committed offsets of the window on partitions that went back (kept with
    # each group's latest poll: no query).
    peaks = history.committed_peaks(stored, _rewound(lags, existing, stored), window_start)
    listed = {g.group_id: g for g in reading.groups}
    previous_counts = {name: t.partitions for name, t in topics.items()}

    def evaluate(row: ConsumerGroup, parts: list[PartitionLag]) -> GroupResult:
        if row.id is None:
            result = _evaluate_group(row, parts, listed.get(row.name), None, [], [], tables, previous_counts,
                                     reading.partition_counts, now, is_new=True,
                                     membership=reading.membership.get(row.name))
        else:
            result = _evaluate_group(
                row, parts, listed.get(row.name), stored.previous.get(row.id, {}),
                stored.group_points_between(row.id, history_since, now), stored.rewinds_after(row.id, window_start),
                tables, previous_counts, reading.partition_counts, now, is_new=False, peaks=peaks.get(row.id),
                membership=reading.membership.get(row.name),
            )
        _apply_membership(result, listed.get(row.name), reading.membership.get(row.name))
        row.partition_state = _state(result, stored, now, window_start) if result.partition_rows else None
        return result

    # New groups are evaluated first: their rows go in, snapshot and all, before the
    # samples that refer to them.
    new_groups = [ConsumerGroup(cluster=cluster, name=name, first_seen_at=now, last_seen_at=now)
                  for name in sorted(lags) if name not in existing]
    evaluated = {row.name: evaluate(row, lags[row.name]) for row in new_groups}
    gone = _mark_gone([row for name, row in existing.items()
                       if row.gone_at is None and name not in listed and (shard is None or shard.owns(name))], now)
    # Listed groups whose offsets could not be read (not authorized, coordinator loading, ...).
    unread_errors = {name: error for name, error in reading.group_errors.items() if name in listed and name not in lags}
    new_unread = [ConsumerGroup(cluster=cluster, name=name, first_seen_at=now, last_seen_at=now)
                  for name in sorted(unread_errors) if name not in existing]
    unread = [existing[name] for name in sorted(unread_errors) if name in existing]
    unread_events = []
    secrets = cluster_secrets(cluster)
    for row in new_unread + unread:
        if row.id is None or row.gone_at is not None:  # appeared, or listed again, unread
            unread_events.append((row, "first seen" if row.id is None else "reappeared"))
        if row.gone_at is not None:
            _forget_last_reading(row)  # a group listed again is a new group: its detail was another's
        mark_unread(row, now, redact(unread_errors[row.name], secrets))
        row.last_seen_at, row.gone_at = now, None
        _apply_members(row, listed[row.name], reading.membership.get(row.name))
    new_groups += new_unread

    with transaction.atomic():
        ConsumerGroup.objects.bulk_create(new_groups, batch_size=BULK_BATCH_SIZE)
        results = [evaluated[name] if name in evaluated else evaluate(existing[name], parts)
                   for name, parts in sorted(lags.items())]
        progress(f"computed the lag of {len(results)} groups")
        by_id = sorted(results, key=lambda r: r.group.id)  # the frames' row order
        samples.save_frames(samples.frames_of_poll(
            cluster.id, now,
            totals=[(r.group.id, t.topic, t.lag, t.time_lag_seconds, t.partitions, t.unknown_partitions,
                     t.partial_partitions, t.committed_offset_total, t.log_end_offset_total)
                    for r in by_id for t in r.topics],
            partitions=[(r.group.id,) + row[:_STORED_ROW_LENGTH]
                        for r in by_id
                        if r.partition_rows and samples.detail_due(stored.previous_at.get(r.group.id), now)
                        for row in r.partition_rows],
            log_offsets=[(topic, partition,
                          offsets.log_start_offset if samples.log_start_due(
                              tables.last_polled_at((topic, partition)), now, tables.window) else None,
                          offsets.log_end_offset)
                         for (topic, partition), offsets in sorted(reading.log_offsets.items())],
        ))
        GroupEvent.objects.bulk_create(
            [GroupEvent(cluster=cluster, group=r.group, kind=c.kind, topic=c.topic, partition=c.partition, at=now,
                        detail=c.detail[:500]) for r in results for c in r.changes]
            + [GroupEvent(cluster=cluster, group=g, kind=GroupEventKind.GROUP_DELETED, at=now, detail=GONE_REASON)
               for g in gone]
            + [GroupEvent(cluster=cluster, group=g, kind=GroupEventKind.GROUP_CREATED, at=now,
                          detail=f"{detail}; {g.status_reason}"[:500]) for g, detail in unread_events],
            batch_size=BULK_BATCH_SIZE,
        )
        _write_topics(cluster, topics, reading.partition_counts, now)
        created = {id(g) for g in new_groups}
        update_rows(ConsumerGroup, [r.group for r in results if id(r.group) not in created] + gone + unread,
                    _SNAPSHOT_FIELDS)
        error = redact(_partial_errors(reading), cluster_secrets(cluster))
        if shard is not None and error:
            error = f"{shard.label}: {error}"
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
    return CycleResult(cluster=cluster, poll_run=poll_run, groups=results, gone=gone,
                       all_groups=list(existing.values()) + new_groups, whole_cluster=shard is None)


def _rewound(lags: dict[str, list[PartitionLag]], existing: dict[str, ConsumerGroup],
             stored: history.StoredHistory) -> set[tuple[int, str, int]]:
    found = set()
    for name, parts in lags.items():
        row = existing.get(name)
        if row is None:
            continue
        previous = stored.previous.get(row.id)
        if not previous:
            continue
        for part in parts:
            before = previous.get(part.key)
            if before and before[0] is not None and part.committed_offset is not None \
                    and part.committed_offset < before[0]:
                found.add((row.id, part.topic, part.partition))
    return found


def _partition_lags(reading: ClusterReading) -> dict[str, list[PartitionLag]]:
    log_pairs = {tp: (o.log_start_offset, o.log_end_offset) for tp, o in reading.log_offsets.items()}
    log_errors = dict(reading.log_errors)
    if reading.topic_errors:
        for tp in reading.partitions:
            if tp[0] in reading.topic_errors:
                log_errors[tp] = reading.topic_errors[tp[0]]
    return {name: group_partition_lags(offsets, reading.partition_counts, log_pairs, log_errors)
            for name, offsets in reading.committed.items()}


class _LogTables:
    """Per partition, made on first use: the log-end history time lag is interpolated
    from (including the points around every lagging group's committed offset) and how
    fast the log start advances. Only partitions some group lags on need either."""

    def __init__(self, cluster: Cluster, reading: ClusterReading, lags: dict[str, list[PartitionLag]],
                 recent: dict[TopicPartitionKey, list[OffsetPoint]], now: datetime) -> None:
        needed: dict[TopicPartitionKey, set[int]] = {}
        for parts in lags.values():
            for part in parts:
                if part.committed_offset is not None and part.lag:
                    needed.setdefault((part.topic, part.partition), set()).add(part.committed_offset)
        self.points = history.offset_points(cluster.id, needed, reading.log_offsets, recent)
        self.log_offsets = reading.log_offsets
        self.retention = reading.retention
        self.record_reads = reading.record_reads
        self._record_lags: dict[tuple[str, int, int], TimeLag] = {}
        self.now = now
        self.window = history.status_window_seconds(cluster)
        self._histories: dict[TopicPartitionKey, PartitionHistory] = {}
        self._start_rates: dict[TopicPartitionKey, float | None] = {}

    def partition_rows(self, parts: list[PartitionLag], states: list[PartitionState], stalled: list[bool]
                       ) -> list[tuple]:
        """Each partition with its time lag, stuck-since and stalled flag (``states`` and
        ``stalled`` in the order of ``parts``, from :func:`partition_states`), as the values
        of :data:`PARTITION_ROW_FIELDS`."""
        rows: list[tuple] = []
        append, histories, method_text, now = rows.append, self._histories, _METHOD_TEXT, self.now
        for (topic, partition, committed, start, end, lag, _, note), state, flag in zip(parts, states, stalled):
            if committed is None or end is None or committed >= end:
                lag_in_time = time_lag(committed, end, (), now)  # answered without history
            else:
                table = histories.get((topic, partition))
                if table is None:
                    table = histories[(topic, partition)] = PartitionHistory(
                        self.points.get((topic, partition), []), end, now)
                lag_in_time = table.behind(committed)
                if self.record_reads.times or self.record_reads.not_read:
                    lag_in_time = self._with_record(topic, partition, committed, start, lag_in_time)
            seconds = lag_in_time.seconds
            # Kept to the millisecond everywhere (stored, cached, shown, alerted on).
            append((topic, partition, committed, start, end, lag, None if seconds is None else round(seconds, 3),
                    method_text[lag_in_time.method], lag_in_time.reason or note, state.stuck_since, flag))
        return rows

    def _with_record(self, topic: str, partition: int, committed: int, start: int | None,
                     from_history: TimeLag) -> TimeLag:
        """The record's answer when its timestamp was read; else the history's, saying
        why the record was not read."""
        key = (topic, partition, committed)
        found = self._record_lags.get(key)
        if found is None:
            at = (topic, partition, fetch_offset(committed, start))
            record = self.record_reads.times.get(at)
            why = self.record_reads.not_read.get(at)
            if record is not None:
                found = record_time_lag(record, self.now, from_history)
            elif why == OVER_BUDGET:
                found = over_budget(from_history)
            elif why:
                found = TimeLag(from_history.seconds, from_history.method,
                                "; ".join(filter(None, (from_history.reason, f"record not read: {why}"))))
            else:
                found = from_history
            self._record_lags[key] = found
        return found

    def last_polled_at(self, key: TopicPartitionKey) -> datetime | None:
        """When the partition's offsets were last stored (within the status window)."""
        found = self.points.get(key)
        return found[-1].polled_at if found else None

    def log_start_rate(self, key: TopicPartitionKey) -> float | None:
        if key not in self._start_rates:
            offsets = self.log_offsets.get(key)
            now, window = self.now, self.window
            self._start_rates[key] = None if offsets is None else forecast.rate(
                [(p.polled_at, p.log_start_offset) for p in self.points.get(key, [])
                 if (now - p.polled_at).total_seconds() <= window]
                + [(now, offsets.log_start_offset)]
            )
        return self._start_rates[key]


UNREAD_FIELDS = ["status", "status_reason", "status_since", "total_lag", "max_time_lag_seconds", "catch_up_seconds",
                 "catch_up_never", "retention_risk_seconds", "retention_risk_method", "partial_partitions",
                 "stalled_partitions", "unread_since"]
"""What :func:`mark_unread` changes on a row."""


def mark_unread(row: ConsumerGroup, now: datetime, error: str) -> None:
    """A listed group whose committed offsets this poll could not read: ``unknown``, saying
    why, its figures unknown (never 0, never the last poll's shown as current), marked
    unread since the first poll that could not read it. Its partition detail stays that of
    its last read poll (``last_sample_at``), which the pages say; the alert metrics and
    ``/metrics`` read the mark, not the detail (one rule: ``unread_since``)."""
    if row.status != GroupStatus.UNKNOWN or row.status_since is None:
        row.status_since = now
    row.status, row.status_reason = GroupStatus.UNKNOWN, f"offsets not read in the latest poll ({error})"[:500]
    row.total_lag = row.max_time_lag_seconds = row.catch_up_seconds = row.retention_risk_seconds = None
    row.catch_up_never, row.retention_risk_method = False, ""
    row.partial_partitions = row.stalled_partitions = 0  # counts of a poll that is not the current one
    if row.unread_since is None:
        row.unread_since = now


def _forget_last_reading(row: ConsumerGroup) -> None:
    """A gone group listed again but not read: the partition detail its row kept is another
    incarnation's, neither to show as its last read poll nor for its first read to find an
    offset reset in. (Its topics and counted losses stay, as when a gone group is listed
    again and read at once; so do its polls in the status window.)"""
    row.partition_state, row.last_sample_at = None, None


def _mark_gone(rows: list[ConsumerGroup], now: datetime) -> list[ConsumerGroup]:
    """Groups the cluster no longer lists: their series ends, the row stays."""
    for row in rows:
        if row.status != GroupStatus.GONE:
            row.status_since = now
        row.status, row.status_reason = GroupStatus.GONE, GONE_REASON
        row.gone_at = now
        row.total_lag = row.max_time_lag_seconds = row.catch_up_seconds = row.retention_risk_seconds = None
        row.unread_since = None  # gone says more
    return rows


_SNAPSHOT_FIELDS = [
    "partition_state", "state", "members", "protocol", "member_details", "status", "status_reason", "status_since", "total_lag", "max_time_lag_seconds", "topics", "lost_messages",
    "catch_up_seconds", "retention_risk_seconds", "last_seen_at", "gone_at", "last_sample_at",
    "catch_up_never", "partial_partitions", "stalled_partitions", "lost_counted_to", "retention_risk_method",
    "unread_since",
]


def _evaluate_group(
    row: ConsumerGroup, parts: list[PartitionLag], listing: GroupListing | None,
    previous: dict[TopicPartitionKey, PreviousOffsets] | None, past_points: list[GroupPoint], past_rewinds: list[Rewind],
    tables: _LogTables, previous_counts: dict[str, int], partition_counts: dict[str, int],
    now: datetime, *, is_new: bool, peaks: dict[TopicPartitionKey, int] | None = None,
    membership: GroupMembership | None = None,
) -> GroupResult:
    window = tables.window
    reappeared = not is_new and row.gone_at is not None
    # Its row was made when it was listed unread, and this is its first read: its appearance
    # was recorded then, and it has no earlier topics to have "started reading" since.
    first_read = not is_new and row.unread_since is not None and row.unread_since <= row.first_seen_at
    # Per partition: how long the committed offset has been stuck, and who owns it.
    owners = {key: label for key, member in members.owners(members.stored_members(membership)).items()
              if (label := members.owner_label(member))}
    states, stalled = partition_states(parts, previous, owners, now, window)
    stalled_count = sum(stalled)
    partition_rows = tables.partition_rows(parts, states, stalled)
    totals = group_totals(parts, [r[6] for r in partition_rows])
    changes = group_changes(
        parts, previous, row.topics if not is_new else [], previous_counts, partition_counts,
        new_group=is_new, reappeared=reappeared, first_read=first_read,
    )

    # Losses: counted once per offset range, whatever the gap since the last poll.
    counted_to = dict(row.lost_counted_to or {}) if not is_new else {}
    lost_since = 0
    newly_lost_keys: set[TopicPartitionKey] = set()
    for part in parts:
        mark_key = f"{part.topic}/{part.partition}"
        if not part.lost_messages and mark_key not in counted_to:
            continue
        new, mark = newly_lost(counted_to.get(mark_key), part)
        if new:
            lost_since += new
            newly_lost_keys.add(part.key)
        if mark is None:
            counted_to.pop(mark_key, None)
        else:
            counted_to[mark_key] = mark
    changes = [c for c in changes if c.kind != GroupEventKind.DATA_LOSS or (c.topic, c.partition) in newly_lost_keys]

    if peaks and any(c.kind == GroupEventKind.OFFSET_RESET for c in changes):
        changes = _rewinds_from_the_highest(changes, parts, peaks, window)
    rewinds = list(past_rewinds) + [
        Rewind(at=now, detail=c.detail) for c in changes if c.kind == GroupEventKind.OFFSET_RESET
    ]

    current = GroupPoint(polled_at=now, committed_total=totals.committed_total, lag=totals.lag,
                         log_end_total=totals.log_end_total, counted=totals.counted_partitions,
                         partial=totals.partial_partitions)
    group_history = [*past_points, current]  # past_points: the polls before this one (group_points_between)
    state_name = _listed_state(row, listing)
    # Membership is evidence only where the coordinator described the group (DescribeGroups,
    # ConsumerGroupDescribe); the listing's state alone does not say who is there.
    member_count = members.member_count(membership)
    described_state = membership.state if membership is not None and membership.known else ""
    in_window = comparable_window(group_history, now, window)
    verdict = group_status(StatusInputs(
        now=now, history=group_history, window_seconds=window,
        stopped_after_seconds=settings.MONITOR_STOPPED_AFTER_SECONDS,
        lost_messages=totals.lost_messages, data_loss_partitions=totals.lost_partitions,
        rewinds=rewinds, members=member_count, broker_state=state_name, partitions=states,
        members_live=members_live(described_state, member_count), comparable=in_window,
    ))
    if totals.partial_partitions:
        # A partial total is no new evidence about the group as a whole: unless the
        # partitions themselves say more, the previous verdict stands until the window
        # holds enough comparable polls.
        unknown = f"lag of {totals.partial_partitions} partition{'s' if totals.partial_partitions != 1 else ''} " \
                  f"unknown in the latest poll"
        judged_by_totals = verdict.status in (GroupStatus.OK, GroupStatus.GROWING, GroupStatus.IDLE)
        if judged_by_totals and len(in_window) < 3 and not is_new \
                and row.status not in (GroupStatus.UNKNOWN, GroupStatus.GONE):
            previous_reason = row.status_reason.split(" (lag of ")[0]
            verdict = Verdict(GroupStatus(row.status), f"{previous_reason} ({unknown})")
        elif verdict.status != GroupStatus.UNKNOWN:
            verdict = Verdict(verdict.status, f"{verdict.reason} ({unknown})")

    catch_up = forecast.catch_up(  # rates matter only while messages wait
        totals.lag,
        forecast.rate([(p.polled_at, p.committed_total) for p in in_window]) if totals.lag else None,
        forecast.rate([(p.polled_at, p.log_end_total) for p in in_window]) if totals.lag else None,
    )
    retention = forecast.retention_risk(_retention_inputs(parts, partition_rows, tables))

    if row.status != verdict.status or row.status_since is None:
        row.status_since = now
    row.status, row.status_reason = verdict.status, verdict.reason[:500]
    row.total_lag = totals.lag
    row.max_time_lag_seconds = totals.max_time_lag_seconds
    row.topics = totals.topics
    row.lost_messages = (row.lost_messages or 0) + lost_since
    row.lost_counted_to = counted_to
    row.catch_up_seconds = catch_up.seconds
    row.catch_up_never = catch_up.never
    row.retention_risk_seconds = retention.seconds
    row.retention_risk_method = retention.method
    row.partial_partitions = totals.partial_partitions
    row.stalled_partitions = stalled_count
    row.last_seen_at = now
    row.gone_at = None
    row.unread_since = None
    row.last_sample_at = now if parts else None
    return GroupResult(group=row, partitions=parts, topics=totals.topic_lags, verdict=verdict, changes=changes,
                       partition_rows=partition_rows)


def _rewinds_from_the_highest(changes: list[GroupChange], parts: list[PartitionLag],
                              peaks: dict[TopicPartitionKey, int], window: float) -> list[GroupChange]:
    """Offset resets measured from the highest committed offset the window saw on that
    partition (read before the cycle's writes, see :func:`history.committed_peaks`)."""
    committed = {p.key: p.committed_offset for p in parts}
    result = []
    for change in changes:
        key = (change.topic, change.partition or 0)
        peak, now_at = peaks.get(key), committed.get(key)
        if change.kind == GroupEventKind.OFFSET_RESET and peak is not None and now_at is not None:
            change = GroupChange(change.kind, change.topic, change.partition,
                                 rewind_detail(change.topic, change.partition or 0, peak, now_at,
                                               humanize.duration(window)))
        result.append(change)
    return result


_OWNED_STATUSES = (GroupStatus.STALLED, GroupStatus.STOPPED, GroupStatus.GROWING)


def _listed_state(row: ConsumerGroup, listing: GroupListing | None) -> str:
    """The group's state as this poll's listing says, else as the row last had it."""
    return listing.state if listing else row.state


def _apply_members(row: ConsumerGroup, listing: GroupListing | None, membership: GroupMembership | None) -> None:
    """State, protocol and members on the group row, as this poll's listing and describe
    say, whether its offsets were read or not (the describe is a request, and an ACL, of its
    own); unknown where the describe did not answer, never the members of an earlier poll."""
    state = _listed_state(row, listing)
    row.state = state[:40]
    row.protocol = membership.protocol if membership is not None else (listing.protocol if listing else "unknown")
    row.member_details = members.stored_members(membership)
    count = members.member_count(membership)
    row.members = count if count is not None else (0 if state.lower() == "empty" else None)


def _apply_membership(result: GroupResult, listing: GroupListing | None, membership: GroupMembership | None) -> None:
    """State, protocol, members and partition owners on the group row; a stalled, stopped or
    growing group's reason names who owns its lagging partitions, where known."""
    row = result.group
    _apply_members(row, listing, membership)
    if row.member_details and row.status in _OWNED_STATUSES:
        lagging = [(p.topic, p.partition) for p in sorted(result.partitions, key=lambda p: -(p.lag or 0)) if p.lag]
        note = members.owner_note(row.member_details, lagging)
        if note and ", owner " not in row.status_reason:  # a stalled partition's reason names its owner
            row.status_reason = f"{row.status_reason}; {note}"[:500]


def _retention_inputs(parts: list[PartitionLag], rows: list[tuple], tables: _LogTables
                      ) -> Iterator[forecast.PartitionRetention]:
    """The partitions retention risk can depend on: those losing messages now, those with
    unread messages on a topic with a known retention.ms, and those with unread messages
    while the log start advances. The rest could only be skipped."""
    for part, row in zip(parts, rows):
        committed, start, lag = part.committed_offset, part.log_start_offset, part.lag
        if committed is None or start is None or (committed >= start and not lag):
            continue
        settings_of_topic = tables.retention.get(part.topic)
        retention_ms = settings_of_topic.retention_ms if settings_of_topic is not None else None
        rate = tables.log_start_rate((part.topic, part.partition))
        if committed >= start and retention_ms is None and (not rate or rate <= 0):
            continue
        yield forecast.PartitionRetention(committed_offset=committed, log_start_offset=start, lag=lag,
                                          log_start_rate=rate, time_lag_seconds=row[6], retention_ms=retention_ms)


REASON_LENGTH = 200
"""Time-lag reasons are kept to this many characters."""


def _state(result: GroupResult, stored: history.StoredHistory, now: datetime, window_start: datetime) -> bytes:
    """The group's partitions as stored for the next poll and the pages, each with the
    highest committed offset of the status window (plain values: see samples.StateRow)."""
    group_id = result.group.id
    before = stored.states.get(group_id, {}) if group_id is not None else {}
    before_at = stored.previous_at.get(group_id) if group_id is not None else None
    micros, next_peak = samples.micros, history.next_peak
    now_us, start_us, before_us = micros(now), micros(window_start), micros(before_at)
    rows = []
    for row in result.partition_rows:
        topic, partition, committed, start, end, lag, seconds, method, reason, since, stalled = row[:_STORED_ROW_LENGTH]
        peak, peak_us = next_peak(before.get((topic, partition)), before_us, committed, now_us,  # type: ignore[arg-type]
                                  start_us)  # type: ignore[arg-type]
        rows.append((topic, partition, committed, start, end, lag, seconds, method, reason[:REASON_LENGTH],
                     None if since is None else micros(since), bool(stalled), peak, peak_us))
    return samples.pack_state_rows(rows)


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
    update_rows(Topic, changed, ["partitions", "last_seen_at"])


MAX_GROUP_NAME_LENGTH = 255  # ConsumerGroup.name


def _set_aside_unstorable_groups(reading: ClusterReading) -> None:
    """Groups whose id cannot be stored (longer than the column, or holding NUL, which
    PostgreSQL text cannot) become group errors named in the poll's error, instead of
    failing the whole cycle for every other group of the cluster."""
    unstorable = {g.group_id for g in reading.groups} | set(reading.committed)
    unstorable = {name for name in unstorable if len(name) > MAX_GROUP_NAME_LENGTH or "\x00" in name}
    if not unstorable:
        return
    for name in unstorable:
        reason = (f"a group id of {len(name)} characters cannot be stored (at most {MAX_GROUP_NAME_LENGTH})"
                  if len(name) > MAX_GROUP_NAME_LENGTH else "a group id holding NUL cannot be stored")
        reading.group_errors[name] = reason
        reading.committed.pop(name, None)
        reading.membership.pop(name, None)
    reading.groups = [g for g in reading.groups if g.group_id not in unstorable]


def _shown_name(name: str) -> str:
    """A group id in an error message: as is, or quoted with escapes when it is long or
    holds control characters."""
    if len(name) <= 80 and name.isprintable():
        return name
    return repr(name if len(name) <= 80 else name[:80] + "...")


def _partial_errors(reading: ClusterReading) -> str:
    """What could not be read although the cluster answered; empty when all went well."""
    parts = []
    if reading.group_errors:
        shown = "; ".join(f"{_shown_name(g)}: {e}" for g, e in sorted(reading.group_errors.items())[:3])
        parts.append(f"{len(reading.group_errors)} group(s) could not be read ({shown})")
    if reading.topic_errors:
        shown = "; ".join(f"{t}: {e}" for t, e in sorted(reading.topic_errors.items())[:3])
        parts.append(f"{len(reading.topic_errors)} topic(s) not found ({shown})")
    other = {tp: e for tp, e in reading.log_errors.items() if tp[0] not in reading.topic_errors}
    if other:
        (topic, partition), first = sorted(other.items())[0]
        parts.append(f"{len(other)} partition(s) without log offsets ({topic}/{partition}: {first})")
    return "; ".join(parts)
