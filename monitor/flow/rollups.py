"""Per-minute rollups of the flow graph's edges, kept up to date from the events table,
and the read that combines them with raw events at the edges of a range (PostgreSQL).

What one rollup row holds (:class:`monitor.models.FlowEdgeRollup`): for one minute and
one (service, topic, consumer group), the reports per stage and the latency histogram of
the edge's *first receipts*: each (event, topic, service, group) is measured once, at its
earliest receipt report (consumed or processed; ties by id), as that receipt's time minus
the event's first publication on the topic, counted in the fixed log-scale buckets of
:mod:`monitor.pathways.histogram`. Every figure of a range is a sum over the minutes in
it, so a week reads sums instead of two million events, and p95 comes from summed
bucket counts, never from an average of percentiles. Hour rows (the sums of their
minutes) keep a week at 168 rows per edge.

The one definition is :func:`_minute_rows_sql`: the updater stores its result per minute
and the read layer runs it over the partial minutes at the range's edges (and, with no
rollup, over the whole range: the raw computation the tests compare against), so a
rollup-backed result equals the raw one exactly.

The updater (:func:`update`) trails ingest like :mod:`monitor.pathways.updater`: it reads
the events added since its cursor and recomputes, from the events table, every minute
they touch: the minutes of the new reports and those of the other receipts of the same
events (a late publication changes their latency; an earlier receipt reported late moves
the first receipt). Recomputing a minute replaces its rows, so a run repeated or an event
read twice changes nothing, and ingest pays nothing. Reads use the rollup only for the
minutes before :func:`rolled_up_until` (the last run, less the settle time); the rest of
a range comes from raw events.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection, transaction

from monitor.choices import RECEIPT_STAGES, Stage
from monitor.models import Event, FlowEdgeRollup, ProcessingCursor
from monitor.pathways import histogram

log = logging.getLogger(__name__)

CURSOR = "flow_rollups"
MINUTE = 60
HOUR = 3600
DAY = 86_400
PERIODS = (DAY, HOUR, MINUTE)  # each the sum of the next: a week reads days, not 10,080 minutes
SETTLE_SECONDS = 60  # an ingest transaction commits well within this after its rows are stamped
BATCH = 20_000
_LOCK_KEY = 0x666C6F77  # "flow": one updater at a time (a run replaces whole minutes)


def supported() -> bool:
    """The rollup is built and read on PostgreSQL; the demo's SQLite reads raw events."""
    return connection.vendor == "postgresql"


def floor_to(moment: datetime, seconds: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def ceil_to(moment: datetime, seconds: int) -> datetime:
    floored = floor_to(moment, seconds)
    return floored if floored == moment else floored + timedelta(seconds=seconds)


# --------------------------------------------------------------------------- the one definition

def _bucket_sql(seconds: str) -> str:
    """SQL for :func:`monitor.pathways.histogram.bucket_of` of a latency in seconds."""
    milliseconds = f"(({seconds}) * 1000.0)"
    base = f"LN({histogram.BASE}::float8)"
    return (f"CASE WHEN {milliseconds} >= 1.0 THEN LEAST({histogram.LAST_BUCKET}, "
            f"FLOOR(LN({milliseconds}) / {base})::int + 1) ELSE 0 END")


LOOKUPS, LISTED, WHOLE_TABLE = "lookups", "listed", "whole table"


def _minute_rows_sql(first_receipts: str = LOOKUPS) -> str:
    """Rows (minute, service, topic, consumer_group, published, consumed, processed,
    failed, dead_lettered, latency_buckets jsonb) of the reports in the windows given as
    two arrays of starts and ends (non-overlapping, so nothing is counted twice).

    A receipt is first when no receipt of the same event and edge precedes it anywhere
    in the table. Three ways to find them, the same rows: ``LOOKUPS``, two event id
    lookups per receipt (a read's partial minutes); ``LISTED``, every report of the
    events given as a third parameter (the event ids of the windows' receipts) read at
    once and sorted (the updater's minutes: one probe per event instead of two per
    receipt, on every partition); ``WHOLE_TABLE``, one sort and hash join of the table
    (a rebuild: one window holding everything)."""
    table = connection.ops.quote_name(Event._meta.db_table)

    def counted(stage: Stage) -> str:
        return f"COUNT(*) FILTER (WHERE e.stage = '{stage.value}')"

    latency = "EXTRACT(EPOCH FROM (r.timestamp - pub.published_at))::float8"
    return f"""
        windows AS (
            SELECT * FROM unnest(%s::timestamptz[], %s::timestamptz[]) AS w(start_at, end_at)
        ), {_related_sql() if first_receipts == LISTED else ""}counted AS (
            SELECT date_trunc('minute', e.timestamp) AS minute, e.service, e.topic, e.consumer_group,
                   {counted(Stage.PUBLISHED)} AS published, {counted(Stage.CONSUMED)} AS consumed,
                   {counted(Stage.PROCESSED)} AS processed, {counted(Stage.FAILED)} AS failed,
                   {counted(Stage.DEAD_LETTERED)} AS dead_lettered
            FROM {table} e JOIN windows w ON e.timestamp >= w.start_at AND e.timestamp < w.end_at
            WHERE e.topic <> ''
            GROUP BY 1, 2, 3, 4
        ), first_receipts AS ({_FIRST_RECEIPTS[first_receipts](latency)}
        ), histograms AS (
            SELECT minute, service, topic, consumer_group, jsonb_object_agg(bucket::text, measured) AS buckets
            FROM (SELECT minute, service, topic, consumer_group, bucket, COUNT(*) AS measured
                  FROM first_receipts GROUP BY 1, 2, 3, 4, 5) per_bucket
            GROUP BY 1, 2, 3, 4
        ), minute_rows AS (
            SELECT c.minute, c.service, c.topic, c.consumer_group, c.published, c.consumed, c.processed,
                   c.failed, c.dead_lettered, COALESCE(h.buckets, '{{}}'::jsonb) AS latency_buckets
            FROM counted c LEFT JOIN histograms h USING (minute, service, topic, consumer_group)
        )"""


# Added to a timestamp that is sorted or minimised in an event id lookup: no index yields
# that order, so the lookup goes through the event id index. Otherwise a partition not yet
# analysed since it filled looks tiny, and the planner walks a timestamp index through
# the whole partition for every receipt (seconds per thousand receipts).
_UNORDERED = "interval '0 seconds'"


def _first_receipts_sql(latency: str) -> str:
    table = connection.ops.quote_name(Event._meta.db_table)
    receipts = ", ".join(f"'{stage.value}'" for stage in RECEIPT_STAGES)
    return f"""
            SELECT date_trunc('minute', r.timestamp) AS minute, r.service, r.topic, r.consumer_group,
                   {_bucket_sql(latency)} AS bucket
            FROM {table} r JOIN windows w ON r.timestamp >= w.start_at AND r.timestamp < w.end_at
            CROSS JOIN LATERAL (
                SELECT MIN(p.timestamp + {_UNORDERED}) AS published_at FROM {table} p
                WHERE p.event_id = r.event_id AND p.topic = r.topic AND p.stage = '{Stage.PUBLISHED.value}'
            ) pub
            CROSS JOIN LATERAL (  -- a lookup per receipt, never a hash of every receipt in the table
                SELECT o.id FROM {table} o
                WHERE o.event_id = r.event_id AND o.topic = r.topic AND o.service = r.service
                  AND o.consumer_group = r.consumer_group AND o.stage IN ({receipts})
                ORDER BY o.timestamp + {_UNORDERED}, o.id LIMIT 1
            ) earliest
            WHERE r.stage IN ({receipts}) AND r.topic <> '' AND pub.published_at IS NOT NULL AND earliest.id = r.id"""


def _all_first_receipts_sql(latency: str) -> str:
    table = connection.ops.quote_name(Event._meta.db_table)
    receipts = ", ".join(f"'{stage.value}'" for stage in RECEIPT_STAGES)
    return f"""
            SELECT date_trunc('minute', r.timestamp) AS minute, r.service, r.topic, r.consumer_group,
                   {_bucket_sql(latency)} AS bucket
            FROM (SELECT DISTINCT ON (event_id, topic, service, consumer_group)
                         event_id, topic, service, consumer_group, timestamp
                  FROM {table} WHERE stage IN ({receipts}) AND topic <> ''
                  ORDER BY event_id, topic, service, consumer_group, timestamp, id) r
            JOIN (SELECT event_id, topic, MIN(timestamp) AS published_at FROM {table}
                  WHERE stage = '{Stage.PUBLISHED.value}' AND topic <> '' GROUP BY 1, 2) pub
              USING (event_id, topic)"""


def _related_sql() -> str:
    table = connection.ops.quote_name(Event._meta.db_table)
    stages = ", ".join(f"'{stage.value}'" for stage in (Stage.PUBLISHED, *RECEIPT_STAGES))
    return f"""related AS MATERIALIZED (
            SELECT id, event_id, topic, service, consumer_group, stage, timestamp FROM {table}
            WHERE event_id = ANY(%s) AND topic <> '' AND stage IN ({stages})
        ), """


def _listed_first_receipts_sql(latency: str) -> str:
    # Window functions over the listed reports, no join: with a fresh partition's stale
    # statistics the planner took the listed reports for one row and joined them to
    # themselves in a nested loop (10,000 reports: 20 s).
    receipts = ", ".join(f"'{stage.value}'" for stage in RECEIPT_STAGES)
    latency = latency.replace("pub.published_at", "r.published_at")
    return f"""
            SELECT date_trunc('minute', r.timestamp) AS minute, r.service, r.topic, r.consumer_group,
                   {_bucket_sql(latency)} AS bucket
            FROM (SELECT event_id, topic, service, consumer_group, stage, timestamp,
                         MIN(timestamp) FILTER (WHERE stage = '{Stage.PUBLISHED.value}')
                             OVER (PARTITION BY event_id, topic) AS published_at,
                         ROW_NUMBER() OVER (PARTITION BY event_id, topic, service, consumer_group,
                                                         stage IN ({receipts})
                                            ORDER BY timestamp, id) AS receipt_rank
                  FROM related) r
            WHERE r.stage IN ({receipts}) AND r.receipt_rank = 1 AND r.published_at IS NOT NULL
              AND EXISTS (SELECT 1 FROM windows w WHERE r.timestamp >= w.start_at AND r.timestamp < w.end_at)"""


_FIRST_RECEIPTS = {LOOKUPS: _first_receipts_sql, LISTED: _listed_first_receipts_sql,
                   WHOLE_TABLE: _all_first_receipts_sql}


def _window_params(windows: Sequence[tuple[datetime, datetime]]) -> list[Any]:
    return [[start for start, _ in windows], [end for _, end in windows]]


_COUNTS = ("published", "consumed", "processed", "failed", "dead_lettered")


# --------------------------------------------------------------------------- keeping it current

def _analytic_session(cursor: Any) -> None:
    cursor.execute("SELECT set_config('work_mem', '64MB', true), set_config('jit', 'off', true)")


def recompute_minutes(minutes: Iterable[datetime]) -> int:
    """Replace the rollup rows of these minutes (and of their hours) with what the events
    table says now; returns the minute rows written. Call inside a transaction."""
    starts = sorted({floor_to(minute, MINUTE) for minute in minutes})
    if not starts:
        return 0
    table = connection.ops.quote_name(FlowEdgeRollup._meta.db_table)
    columns = ", ".join(("period_seconds", "period_start", "service", "topic", "consumer_group", *_COUNTS,
                         "latency_buckets"))
    windows = _window_params([(start, start + timedelta(minutes=1)) for start in starts])
    event_table = connection.ops.quote_name(Event._meta.db_table)
    with connection.cursor() as cursor:
        _analytic_session(cursor)
        cursor.execute(
            f"SELECT DISTINCT r.event_id FROM {event_table} r "
            f"JOIN unnest(%s::timestamptz[], %s::timestamptz[]) AS w(start_at, end_at) "
            f"ON r.timestamp >= w.start_at AND r.timestamp < w.end_at WHERE r.stage = ANY(%s) AND r.topic <> ''",
            [*windows, [stage.value for stage in RECEIPT_STAGES]])
        received = [event_id for (event_id,) in cursor.fetchall()]
        cursor.execute(f"DELETE FROM {table} WHERE period_seconds = %s AND period_start = ANY(%s)",
                       [MINUTE, starts])
        cursor.execute(
            f"WITH {_minute_rows_sql(LISTED)} INSERT INTO {table} ({columns}) "
            f"SELECT %s, minute, service, topic, consumer_group, {', '.join(_COUNTS)}, latency_buckets "
            f"FROM minute_rows",
            [*windows, received, MINUTE],
        )
        written = cursor.rowcount
    _recompute_sums({floor_to(start, HOUR) for start in starts}, HOUR)
    return written


def _recompute_sums(starts_of: Iterable[datetime], period: int) -> None:
    """Rows of ``period`` (hours, days): the sums of the rows of the next shorter period
    (counts and buckets); the days of recomputed hours follow."""
    starts = sorted(set(starts_of))
    if not starts:
        return
    source = PERIODS[PERIODS.index(period) + 1]
    table = connection.ops.quote_name(FlowEdgeRollup._meta.db_table)
    sums = ", ".join(f"SUM({name})" for name in _COUNTS)
    columns = ", ".join(("period_seconds", "period_start", "service", "topic", "consumer_group", *_COUNTS,
                         "latency_buckets"))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE period_seconds = %s AND period_start = ANY(%s)",
                       [period, starts])
        cursor.execute(
            f"""
            WITH periods AS (SELECT unnest(%s::timestamptz[]) AS period),
            parts AS (
                SELECT p.period, m.* FROM periods p JOIN {table} m
                  ON m.period_seconds = %s AND m.period_start >= p.period
                     AND m.period_start < p.period + make_interval(secs => %s)
            ), counts AS (
                SELECT period, service, topic, consumer_group, {sums} FROM parts GROUP BY 1, 2, 3, 4
            ), buckets AS (
                SELECT period, service, topic, consumer_group, jsonb_object_agg(bucket, measured) AS buckets
                FROM (SELECT m.period, m.service, m.topic, m.consumer_group, b.key AS bucket,
                             SUM(b.value::bigint) AS measured
                      FROM parts m, jsonb_each_text(m.latency_buckets) b GROUP BY 1, 2, 3, 4, 5) per_bucket
                GROUP BY 1, 2, 3, 4
            )
            INSERT INTO {table} ({columns})
            SELECT %s, c.*, COALESCE(b.buckets, '{{}}'::jsonb)
            FROM counts c LEFT JOIN buckets b USING (period, service, topic, consumer_group)
            """,
            [starts, source, period, period],
        )
    if period != PERIODS[0]:
        longer = PERIODS[PERIODS.index(period) - 1]
        _recompute_sums({floor_to(start, longer) for start in starts}, longer)


@dataclass
class UpdateResult:
    events: int = 0
    minutes: int = 0


@dataclass(frozen=True)
class _Batch:
    reports: int
    last_id: int
    settled_until: int | None  # the last id before the first report received after the cutoff
    all_settled: bool
    minutes: frozenset[datetime]


def _read_batch(after_id: int, cutoff: datetime) -> _Batch:
    """The next ``BATCH`` reports after ``after_id``, summed up in the database: how far
    they are settled, and the minutes they touch: their own and those of the other
    receipts of the same events (reading 20,000 rows' timestamps into Python cost more
    than the rest of a run)."""
    table = connection.ops.quote_name(Event._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH batch AS MATERIALIZED (
                SELECT id, event_id, timestamp, received_at, topic FROM {table}
                WHERE id > %s ORDER BY id LIMIT %s
            ), unsettled AS (SELECT MIN(id) AS first_id FROM batch WHERE received_at > %s)
            SELECT (SELECT COUNT(*) FROM batch), (SELECT MAX(id) FROM batch),
                   (SELECT MAX(id) FROM batch WHERE id < COALESCE((SELECT first_id FROM unsettled), %s)),
                   (SELECT first_id IS NULL FROM unsettled),
                   ARRAY(SELECT DISTINCT date_trunc('minute', timestamp) FROM batch WHERE topic <> ''),
                   ARRAY(SELECT DISTINCT event_id FROM batch WHERE topic <> '')
            """,
            [after_id, BATCH, cutoff, 2 ** 63 - 1],
        )
        reports, last_id, settled_until, all_settled, minutes, event_ids = cursor.fetchone()
        if event_ids:
            # The ids as an array, not a subquery: a partition not yet analysed would be
            # scanned once per id of a semi-join; an array is matched in one pass at worst.
            cursor.execute(
                f"SELECT DISTINCT date_trunc('minute', timestamp) FROM {table} "
                f"WHERE event_id = ANY(%s) AND stage = ANY(%s) AND topic <> ''",
                [event_ids, [stage.value for stage in RECEIPT_STAGES]],
            )
            minutes = [*(minutes or ()), *(minute for (minute,) in cursor.fetchall())]
    return _Batch(reports, last_id or after_id, settled_until, bool(all_settled), frozenset(minutes or ()))


def update(now: datetime) -> UpdateResult:
    """Bring the rollup up to date with every event stored before ``now``."""
    result = UpdateResult()
    if not supported():
        return result
    with transaction.atomic():
        with connection.cursor() as cursor:
            # A run still going (a backlog) is left to finish: runs never queue up behind it.
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_LOCK_KEY])
            if not cursor.fetchone()[0]:
                return result
        cursor_row, _ = ProcessingCursor.objects.get_or_create(name=CURSOR)
        last_id = settled_until = cursor_row.position
        settled = True
        cutoff = now - timedelta(seconds=SETTLE_SECONDS)
        touched: set[datetime] = set()
        while True:
            batch = _read_batch(last_id, cutoff)
            if not batch.reports:
                break
            touched |= batch.minutes
            if settled and batch.settled_until is not None:
                settled_until = batch.settled_until
            settled = settled and batch.all_settled
            last_id = batch.last_id
            result.events += batch.reports
        result.minutes = len(touched)
        recompute_minutes(touched)
        # updated_at says when the rollup last read everything: reads trust it up to then.
        ProcessingCursor.objects.filter(pk=cursor_row.pk).update(position=settled_until, updated_at=now)
    return result


def rebuild(now: datetime) -> int:
    """Every rollup row from the events table (the data migration, a repair); returns the
    minute rows written."""
    if not supported():
        return 0
    table = connection.ops.quote_name(FlowEdgeRollup._meta.db_table)
    event_table = connection.ops.quote_name(Event._meta.db_table)
    columns = ", ".join(("period_seconds", "period_start", "service", "topic", "consumer_group", *_COUNTS,
                         "latency_buckets"))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        # A maintenance statement over every report: minutes on a large table, not a web request.
        cursor.execute("SELECT set_config('statement_timeout', '0', true), set_config('work_mem', '256MB', true), "
                       "set_config('jit', 'off', true)")
        cursor.execute(f"DELETE FROM {table}")
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {event_table}")
        (last_id,) = cursor.fetchone()
        if not last_id:  # nothing stored: no watermark until the updater's first run
            ProcessingCursor.objects.filter(name=CURSOR).delete()
            return 0
        cursor.execute(
            f"WITH {_minute_rows_sql(WHOLE_TABLE)} INSERT INTO {table} ({columns}) "
            f"SELECT %s, minute, service, topic, consumer_group, {', '.join(_COUNTS)}, latency_buckets "
            f"FROM minute_rows",
            [*_window_params([(datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))]), MINUTE],
        )
        written = cursor.rowcount
        cursor.execute(f"SELECT DISTINCT date_trunc('hour', period_start) FROM {table}")
        _recompute_sums((hour for (hour,) in cursor.fetchall()), HOUR)
        ProcessingCursor.objects.update_or_create(name=CURSOR, defaults={"position": last_id})
        ProcessingCursor.objects.filter(name=CURSOR).update(updated_at=now)
    return written


def prune(cutoff: datetime) -> int:
    """Drop the rollup of what event retention deleted (reports older than ``cutoff``);
    the hour and day holding the cutoff are summed again from what remains."""
    if not supported():
        return 0
    with transaction.atomic():
        deleted = 0
        for period in PERIODS:
            deleted += FlowEdgeRollup.objects.filter(period_seconds=period,
                                                     period_start__lt=floor_to(cutoff, period)).delete()[0]
        _recompute_sums([floor_to(cutoff, HOUR)], HOUR)
    return deleted


# --------------------------------------------------------------------------- reading

def rolled_up_until() -> datetime | None:
    """Minutes before this are complete in the rollup (None: never built)."""
    if not supported():
        return None
    last_run = ProcessingCursor.objects.filter(name=CURSOR).values_list("updated_at", flat=True).first()
    return floor_to(last_run - timedelta(seconds=SETTLE_SECONDS), MINUTE) if last_run else None


@dataclass(frozen=True)
class EdgeRow:
    """One (service, topic, consumer group) of a range: reports per stage and the bucket
    counts of its first receipts' latency."""

    service: str
    topic: str
    consumer_group: str
    published: int
    consumed: int
    processed: int
    failed: int
    dead_lettered: int
    latency_buckets: dict[int, int]


@dataclass(frozen=True)
class ReadPlan:
    """Which parts of a range come from raw events and which from rollup rows:
    ``rolled`` holds (period seconds, start, end) windows."""

    raw: tuple[tuple[datetime, datetime], ...]
    rolled: tuple[tuple[int, datetime, datetime], ...]

    def windows(self, period: int) -> list[tuple[datetime, datetime]]:
        return [(start, end) for seconds, start, end in self.rolled if seconds == period]


def read_plan(since: datetime, until: datetime, rolled_until: datetime | None) -> ReadPlan:
    """Whole days from day rows, whole hours from hour rows, whole minutes from minute
    rows, the partial minutes at the edges (and anything after ``rolled_until``) from raw
    events."""
    if until <= since:
        return ReadPlan((), ())
    first = ceil_to(since, MINUTE)
    last = min(floor_to(until, MINUTE), rolled_until or first)
    if last <= first:
        return ReadPlan(((since, until),), ())
    raw = tuple(w for w in ((since, first), (last, until)) if w[0] < w[1])

    def split(start: datetime, end: datetime, periods: tuple[int, ...]) -> list[tuple[int, datetime, datetime]]:
        period, shorter = periods[0], periods[1:]
        if start >= end:
            return []
        if not shorter:
            return [(period, start, end)]
        inner_start, inner_end = ceil_to(start, period), floor_to(end, period)
        if inner_end <= inner_start:
            return split(start, end, shorter)
        return [*split(start, inner_start, shorter), (period, inner_start, inner_end),
                *split(inner_end, end, shorter)]

    return ReadPlan(raw, tuple(split(first, last, PERIODS)))


def edge_rows(since: datetime, until: datetime, rolled_until: datetime | None) -> list[EdgeRow]:
    """The range's edge rows in one statement: rollup rows of its whole minutes and hours
    plus the raw computation of the rest (``rolled_until=None``: all raw)."""
    plan = read_plan(since, until, rolled_until)
    if not (plan.raw or plan.rolled):
        return []
    table = connection.ops.quote_name(FlowEdgeRollup._meta.db_table)
    fields = ", ".join(_COUNTS)
    periods = " OR ".join(
        ["(period_seconds = %s AND period_start >= %s AND period_start < %s)"] * len(plan.rolled)) or "false"
    period_params: list[Any] = [value for window in plan.rolled for value in window]
    sums = ", ".join(f"SUM({name})::bigint AS {name}" for name in _COUNTS)
    nulls = ", ".join("NULL::bigint" for _ in _COUNTS)
    # Counts and buckets summed apart: rows carrying their jsonb through a sort cost more
    # than the sums. The raw part (a CTE used twice) is computed once.
    sql = f"""
        WITH {_minute_rows_sql()}, rolled AS NOT MATERIALIZED (
            SELECT service, topic, consumer_group, {fields}, latency_buckets FROM {table} WHERE {periods}
        ), count_rows AS (
            SELECT service, topic, consumer_group, {sums}
            FROM (SELECT service, topic, consumer_group, {fields} FROM rolled
                  UNION ALL SELECT service, topic, consumer_group, {fields} FROM minute_rows) parts
            GROUP BY 1, 2, 3
        ), bucket_rows AS (
            SELECT service, topic, consumer_group, b.key::int AS bucket, SUM(b.value::bigint)::bigint AS measured
            FROM (SELECT service, topic, consumer_group, latency_buckets FROM rolled
                  UNION ALL SELECT service, topic, consumer_group, latency_buckets FROM minute_rows) parts,
                 jsonb_each_text(parts.latency_buckets) b
            GROUP BY 1, 2, 3, 4
        )
        SELECT service, topic, consumer_group, {fields}, NULL::int, NULL::bigint FROM count_rows
        UNION ALL
        SELECT service, topic, consumer_group, {nulls}, bucket, measured FROM bucket_rows
    """
    with transaction.atomic(), connection.cursor() as cursor:
        _analytic_session(cursor)
        cursor.execute(sql, [*_window_params(plan.raw), *period_params])
        rows = cursor.fetchall()
    counts: dict[tuple[str, str, str], tuple[int, ...]] = {}
    buckets: dict[tuple[str, str, str], dict[int, int]] = {}
    for service, topic, group, *stage_counts, bucket, measured in rows:
        if bucket is None:
            counts[(service, topic, group)] = tuple(stage_counts)
        else:
            buckets.setdefault((service, topic, group), {})[bucket] = measured
    return [
        EdgeRow(service, topic, group, published, consumed, processed, failed, dead_lettered,
                buckets.get((service, topic, group), {}))
        for (service, topic, group), (published, consumed, processed, failed, dead_lettered) in counts.items()
    ]
