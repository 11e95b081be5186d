"""Benchmark: what a poll cycle adds to the database (issue 10, "Storage").

Records cycles of one cluster of ``--groups`` groups x ``--partitions`` partitions over
``--topics`` topics through the poller's own ``record_cycle`` (the code every real poll
runs after Kafka answered), from synthetic readings in which EVERY partition moves at
every poll (the worst case: a cluster where every group commits and every topic is
produced to between two polls), polls 30 s apart in simulated time, so partition detail
is stored at its usual period (MONITOR_PARTITION_DETAIL_SECONDS, 300 s: every tenth poll).

Measured: the bytes the database grows by per cycle (every table, index and TOAST of the
monitor app, frames partitioned by day included), in steady state: after warm-up cycles,
with a plain VACUUM after each cycle as autovacuum does (a group's row is rewritten each
poll, its old version becomes reusable space). Goal: <= 1 GiB a day per 100,000
group-partitions polled every 30 s (~364 KiB a cycle).

Baseline in the same run: the same cycle's samples stored the way they were before (one
row per partition sample, per topic total and per log offset, with those tables' indexes),
written into scratch tables of that shape.

    python bench/storage.py [--groups 10000] [--partitions 10] [--topics 1000] [--cycles 20]
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import datetime, timedelta, timezone as dt_timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KIB, MIB, GIB = 1024, 1024 ** 2, 1024 ** 3
POLL_SECONDS = 30
GOAL_PER_DAY_PER_100K = GIB

_OLD_LAYOUT = """
CREATE TABLE bench_old_partition (id bigserial PRIMARY KEY, group_id bigint NOT NULL, topic varchar(255) NOT NULL,
  partition integer NOT NULL, polled_at timestamptz NOT NULL, committed_offset bigint, log_start_offset bigint,
  log_end_offset bigint, lag bigint, time_lag_seconds double precision, time_lag_method varchar(24) NOT NULL,
  time_lag_reason varchar(200) NOT NULL, stuck_since timestamptz, stalled boolean NOT NULL);
CREATE INDEX ON bench_old_partition (group_id, polled_at);
CREATE INDEX ON bench_old_partition (polled_at);
CREATE TABLE bench_old_topic (id bigserial PRIMARY KEY, group_id bigint NOT NULL, topic varchar(255) NOT NULL,
  resolution integer NOT NULL, polled_at timestamptz NOT NULL, lag bigint, time_lag_seconds double precision,
  partitions integer NOT NULL, unknown_partitions integer NOT NULL, partial_partitions integer NOT NULL,
  committed_offset_total bigint, log_end_offset_total bigint);
CREATE INDEX ON bench_old_topic (group_id, topic, resolution, polled_at);
CREATE INDEX ON bench_old_topic (resolution, polled_at);
CREATE TABLE bench_old_offsets (id bigserial PRIMARY KEY, cluster_id bigint NOT NULL, topic varchar(255) NOT NULL,
  partition integer NOT NULL, polled_at timestamptz NOT NULL, log_start_offset bigint, log_end_offset bigint NOT NULL);
CREATE INDEX ON bench_old_offsets (cluster_id, topic, partition, polled_at);
CREATE INDEX ON bench_old_offsets (cluster_id, topic, partition, log_end_offset, polled_at);
CREATE INDEX ON bench_old_offsets (polled_at);
"""


class Cluster:
    """Offsets of a synthetic cluster that move at every poll."""

    def __init__(self, groups: int, partitions: int, topics: int, seed: int = 7) -> None:
        self.random = random.Random(seed)
        self.topics = [f"topic-{n:05d}" for n in range(topics)]
        self.partitions = partitions
        self.ends = {(t, p): self.random.randint(10**6, 10**9) for t in self.topics for p in range(partitions)}
        self.starts = {tp: end - self.random.randint(10**4, 10**6) for tp, end in self.ends.items()}
        self.groups = {f"group-{n:06d}": self.topics[n % topics] for n in range(groups)}
        self.committed = {(name, p): self.ends[(topic, p)] - self.random.randint(0, 5000)
                          for name, topic in self.groups.items() for p in range(partitions)}

    def advance(self) -> None:
        rnd = self.random.randint
        for tp in self.ends:
            self.ends[tp] += rnd(50, 3000)
            self.starts[tp] += rnd(0, 500)
        for (name, p), offset in self.committed.items():
            end = self.ends[(self.groups[name], p)]
            self.committed[(name, p)] = min(end, offset + rnd(40, 3000))

    def reading(self, at: datetime):  # -> ClusterReading
        from monitor.kafka.adapter import GroupListing, LogOffsets
        from monitor.lag.record import ClusterReading

        committed: dict[str, dict[tuple[str, int], int]] = {}
        for (name, p), offset in self.committed.items():
            committed.setdefault(name, {})[(self.groups[name], p)] = offset
        return ClusterReading(
            polled_at=at, groups=[GroupListing(name, "Stable", "consumer") for name in self.groups],
            committed=committed, partition_counts={t: self.partitions for t in self.topics},
            log_offsets={tp: LogOffsets(self.starts[tp], end) for tp, end in self.ends.items()}, requests=3,
        )


def table_bytes() -> dict[str, int]:
    """Bytes of each monitor table (a partitioned table's partitions summed under its name;
    indexes and TOAST included)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(p.relname, c.relname), sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                       "JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent "
                       "WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname LIKE 'monitor%%' "
                       "GROUP BY 1")
        return {name: int(size) for name, size in cursor.fetchall()}


def app_bytes() -> int:
    """Bytes of every monitor table (partitions, indexes and TOAST included)."""
    return sum(table_bytes().values())


def vacuum() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM monitor_consumergroup")
        cursor.execute("VACUUM monitor_cluster")
        cursor.execute("VACUUM monitor_topic")


def old_layout_bytes(cluster_id: int, at: datetime, results, log_offsets) -> int:
    """Bytes one cycle's samples take stored as one row each (the layout before frames)."""
    from django.db import connection

    from monitor.lag.record import PARTITION_ROW_FIELDS

    with connection.cursor() as cursor:
        cursor.execute(_OLD_LAYOUT)
        partition_rows = [(r.group.id, at) + row[:len(PARTITION_ROW_FIELDS)] for r in results.groups
                          for row in r.partition_rows]
        with cursor.cursor.copy("COPY bench_old_partition (group_id, polled_at, topic, partition, committed_offset, "
                                "log_start_offset, log_end_offset, lag, time_lag_seconds, time_lag_method, "
                                "time_lag_reason, stuck_since, stalled) FROM STDIN") as copy:
            for row in partition_rows:
                copy.write_row(row[:10] + (row[10][:200],) + row[11:])
        with cursor.cursor.copy("COPY bench_old_topic (group_id, topic, resolution, polled_at, lag, time_lag_seconds, "
                                "partitions, unknown_partitions, partial_partitions, committed_offset_total, "
                                "log_end_offset_total) FROM STDIN") as copy:
            for r in results.groups:
                for t in r.topics:
                    copy.write_row((r.group.id, t.topic, 0, at, t.lag, t.time_lag_seconds, t.partitions,
                                    t.unknown_partitions, t.partial_partitions, t.committed_offset_total,
                                    t.log_end_offset_total))
        with cursor.cursor.copy("COPY bench_old_offsets (cluster_id, topic, partition, polled_at, log_start_offset, "
                                "log_end_offset) FROM STDIN") as copy:
            for (topic, partition), offsets in sorted(log_offsets.items()):
                copy.write_row((cluster_id, topic, partition, at, offsets.log_start_offset, offsets.log_end_offset))
        cursor.execute("SELECT sum(pg_total_relation_size(c)) FROM unnest(ARRAY['bench_old_partition', "
                       "'bench_old_topic', 'bench_old_offsets']::regclass[]) AS c")
        size = int(cursor.fetchone()[0])
        cursor.execute("DROP TABLE bench_old_partition, bench_old_topic, bench_old_offsets")
    return size


def measure(groups: int, partitions: int, topics: int, cycles: int, warmup: int = 3) -> dict[str, float]:
    """Record ``warmup`` + ``cycles`` polls; print and return the figures."""
    from django.conf import settings

    fetch_bytes = settings.MONITOR_TIME_LAG_FETCH_CYCLE_BYTES
    settings.MONITOR_TIME_LAG_FETCH_CYCLE_BYTES = 0  # no Kafka here: time lag from the stored history
    try:
        return _measure(groups, partitions, topics, cycles, warmup)
    finally:
        settings.MONITOR_TIME_LAG_FETCH_CYCLE_BYTES = fetch_bytes


def _measure(groups: int, partitions: int, topics: int, cycles: int, warmup: int) -> dict[str, float]:
    from monitor.lag.record import record_cycle
    from monitor.models import Cluster as ClusterRow

    row = ClusterRow.objects.create(name=f"storage-{groups}x{partitions}", bootstrap_servers="127.0.0.1:9",
                                    poll_interval_seconds=POLL_SECONDS)
    synthetic = Cluster(groups, partitions, topics)
    at = datetime(2026, 12, 7, 0, 0, 5, tzinfo=dt_timezone.utc)
    record_seconds: list[float] = []
    result = None
    before = 0
    tables_before: dict[str, int] = {}
    for index in range(warmup + cycles):
        synthetic.advance()
        reading = synthetic.reading(at)
        started = time.perf_counter()
        result = record_cycle(row, reading, at, time.monotonic())
        record_seconds.append(time.perf_counter() - started)
        vacuum()
        if index == warmup - 1:
            before = app_bytes()
            tables_before = table_bytes()
        at += timedelta(seconds=POLL_SECONDS)
    grown = (app_bytes() - before) / cycles
    tables_after = table_bytes()
    by_table = {name: (size - tables_before.get(name, 0)) / cycles for name, size in tables_after.items()}
    assert result is not None
    baseline = old_layout_bytes(row.id, at, result, reading.log_offsets)
    group_partitions = groups * partitions
    per_day = grown * (86_400 / POLL_SECONDS) * (100_000 / group_partitions)
    print(f"  storage per cycle, {groups} groups x {partitions} partitions over {topics} topics, every partition moving:")
    print(f"    frames (this design)              {grown / KIB:10.1f} KiB a cycle "
          f"({grown / group_partitions:.2f} bytes a group-partition)")
    print(f"    one row per sample (before)       {baseline / KIB:10.1f} KiB a cycle "
          f"(same samples, same run)   ratio {baseline / max(grown, 1):.0f}x smaller")
    print(f"    per day per 100,000 group-partitions at {POLL_SECONDS} s: {per_day / GIB:.2f} GiB   goal <= 1 GiB   "
          f"{'met' if per_day <= GOAL_PER_DAY_PER_100K else 'NOT MET'}")
    print("    by table: " + ", ".join(f"{name.removeprefix('monitor_')} {size / KIB:.1f} KiB"
                                    for name, size in sorted(by_table.items(), key=lambda kv: -kv[1]) if size))
    print(f"    record_cycle (store one poll)     {sorted(record_seconds)[len(record_seconds) // 2]:.2f} s median")
    return {"bytes_per_cycle": grown, "baseline_bytes_per_cycle": baseline, "per_day_per_100k": per_day}


def setup(database_url: str) -> None:
    import os

    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ["DEBUG"] = "false"
    os.environ["DATABASE_URL"] = database_url
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "monitor.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=10)
    parser.add_argument("--topics", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import scratch_db

    database_url = scratch_db.create_database(args.database_url, "bench_storage")
    try:
        setup(database_url)
        measure(args.groups, args.partitions, args.topics, args.cycles)
    finally:
        from django.db import connections

        connections.close_all()
        scratch_db.drop_database(database_url)


if __name__ == "__main__":
    main()
