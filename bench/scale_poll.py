"""The poll measurements of ``bench/scale.py`` (issue 10), against a tansu broker it starts.

Every group is seeded on the broker itself: topics with a few records per partition, then
the groups' committed offsets through the adapter's batched OffsetCommit
(:func:`monitor.kafka.adapter.commit_offsets_of_many_groups`); half the groups lag. A
cluster row watches them, and the poller reads them as it reads any cluster.

- **cycle vs floor**: ``poll_cluster`` exactly as the worker runs it (Kafka, stored
  history, computation, one transaction, the snapshot written to Redis), after earlier cycles stamped
  30 s apart so the status window has history, alternating with the floor: kafka-python
  reading every committed offset of those groups (one OffsetFetch) and then the LATEST and
  EARLIEST offsets of their partitions (both ListOffsets in flight), answers decoded. The
  ratio is the median of cycle / floor pairs measured back to back. Beside them, the
  cycle's own Kafka requests alone (``read_cluster``, no database): what the cycle must ask
  the broker costs more than the floor by itself (ListGroups, DescribeGroups, ...).
- **sharded cycle**: a bigger cluster polled in shards by real Celery worker processes
  (``celery -A monitor worker``, prefork) over Redis, the tasks sent as ``schedule_polls``
  sends them; wall time from sending until every shard's PollRun is written, and a check
  that the shards recorded every group once.
- **worker memory**: a solo-pool worker process runs ``poll_cluster`` cycle after cycle;
  its RSS (``/proc/<pid>/status``) after the first cycles and at the end.
- **SQLite**: the cycle-vs-floor measurement in a process of its own on an SQLite database,
  against a broker of its own (a 50-group cluster lists only its groups)
  (``python bench/scale_poll.py --sqlite --bootstrap host:port``), printed as JSON.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

POLL_INTERVAL_SECONDS = 30
MESSAGES = 3
CYCLE_GOAL = 1.5
SQLITE_GOAL = 3.0
SHARD_INTERVAL_SECONDS = 60
FLAT_KIB_PER_CYCLE = 64
"""Flat memory: at most this much growth a cycle once warm (6 MiB over 100 cycles), the
least-squares slope of every cycle's RSS: one reading wanders by several MiB from cycle to
cycle (what the allocator holds at that moment), so the first and last alone can show growth
that is not there, or hide growth that is."""
REDIS_URL = "redis://127.0.0.1:6379/0"
KAFKA_TIMEOUT_SECONDS = "120"  # tansu answers an OffsetFetch of 50,000 groups slowly


class Report(Protocol):
    def add(self, what: str, figure: str, goal: str, met: bool | None) -> None: ...


@dataclass(frozen=True)
class Layout:
    """``groups`` groups, each reading every partition of ``topics_per_group`` topics of
    ``partitions_per_topic`` partitions, over ``topics`` topics."""

    prefix: str
    groups: int
    topics: int
    partitions_per_topic: int
    topics_per_group: int = 1

    @property
    def partitions_per_group(self) -> int:
        return self.partitions_per_topic * self.topics_per_group

    @property
    def label(self) -> str:
        return f"{self.groups:,} groups x {self.partitions_per_group} partitions"


def seed(kafka: Any, layout: Layout) -> float:
    """Topics with ``MESSAGES`` records a partition, the groups' commits in batches; half
    the groups are behind by 1..MESSAGES records. Returns the seconds it took."""
    from monitor.kafka.adapter import Producer, commit_offsets_of_many_groups, create_topics

    started = time.monotonic()
    topics = [f"{layout.prefix}-topic-{n:04d}" for n in range(layout.topics)]
    create_topics(kafka, {t: layout.partitions_per_topic for t in topics})
    producer = Producer(kafka)
    for topic in topics:
        for partition in range(layout.partitions_per_topic):
            producer.send_many(topic, partition, MESSAGES, value=b"scale")
    producer.close()
    batch: dict[str, dict[tuple[str, int], int]] = {}
    for n in range(layout.groups):
        behind = 0 if n % 2 == 0 else 1 + n % MESSAGES
        read = [topics[(n + k) % layout.topics] for k in range(layout.topics_per_group)]
        batch[f"{layout.prefix}-group-{n:06d}"] = {(t, p): MESSAGES - behind for t in read
                                                   for p in range(layout.partitions_per_topic)}
        if len(batch) == 5000:
            commit_offsets_of_many_groups(kafka, batch)
            batch = {}
    if batch:
        commit_offsets_of_many_groups(kafka, batch)
    return time.monotonic() - started


def create_cluster(bootstrap: str, layout: Layout) -> int:
    from monitor.models import Cluster

    return Cluster.objects.create(name=layout.prefix, bootstrap_servers=bootstrap,
                                  group_include=f"{layout.prefix}-group-*",
                                  poll_interval_seconds=POLL_INTERVAL_SECONDS).pk


def database_bytes() -> int:
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            return int(cursor.fetchone()[0])
    return sum(os.path.getsize(f) for f in Path(connection.settings_dict["NAME"]).parent.glob(
        Path(connection.settings_dict["NAME"]).name + "*"))


def one_cycle(cluster_id: int, now: Any = None) -> dict[str, float]:
    from monitor.lag.poll import poll_cluster

    started = time.perf_counter()  # the whole call: what the task costs, memory given back included
    outcome = poll_cluster(cluster_id, now=now)
    seconds = time.perf_counter() - started
    assert outcome is not None and outcome.ok, outcome
    return {"seconds": seconds, "kafka": outcome.kafka_seconds, "groups": outcome.groups,
            "partitions": outcome.partitions, "requests": outcome.requests}


def kafka_requests_alone(cluster_id: int) -> float:
    """Seconds for the Kafka half of a cycle with nothing else running: connect, every
    request a cycle makes (ListGroups, FindCoordinator, OffsetFetch with DescribeGroups
    beside it, Metadata, ListOffsets, DescribeConfigs, the record Fetch), close."""
    from monitor.kafka.adapter import KafkaAdapter
    from monitor.lag.clusters import connection_settings
    from monitor.lag.poll import read_cluster
    from monitor.models import Cluster

    cluster = Cluster.objects.get(pk=cluster_id)
    started = time.perf_counter()
    with KafkaAdapter(connection_settings(cluster)) as adapter:
        read_cluster(adapter, cluster)
    return time.perf_counter() - started


def measure_cycle(kafka: Any, bootstrap: str, layout: Layout, runs: int, history_cycles: int | None
                  ) -> dict[str, float]:
    """Cycles and floors alternating (see the module); medians. ``history_cycles`` earlier
    cycles first (None: as many as fill the status history a cycle reads back, as on a
    cluster polled for a while)."""
    from django.utils import timezone

    from monitor.kafka.adapter import KafkaAdapter
    from monitor.lag import history
    from monitor.models import Cluster

    seconds = seed(kafka, layout)
    cluster_id = create_cluster(bootstrap, layout)
    if history_cycles is None:
        history_cycles = math.ceil(history.status_history_seconds(Cluster.objects.get(pk=cluster_id))
                                   / POLL_INTERVAL_SECONDS)
    first = timezone.now() - timedelta(seconds=POLL_INTERVAL_SECONDS * (history_cycles + 1))
    for k in range(history_cycles + 1):  # the first creates the groups; the rest are history
        one_cycle(cluster_id, now=first + timedelta(seconds=POLL_INTERVAL_SECONDS * k))
    group_ids = [f"{layout.prefix}-group-{n:06d}" for n in range(layout.groups)]
    runs_seen = []
    with KafkaAdapter(kafka) as adapter:
        topics = {f"{layout.prefix}-topic-{n:04d}" for n in range(layout.topics)}
        metadata = adapter.topic_metadata(topics)
        leaders = {(t, p): leader for t, parts in metadata.leaders.items() for p, leader in parts.items()}
        adapter.round_trip_floor(group_ids, leaders, earliest=True)  # connections, coordinator lookup warm
        for _ in range(runs):
            size = database_bytes()
            run = one_cycle(cluster_id)
            run["bytes"] = database_bytes() - size
            run["floor"] = adapter.round_trip_floor(group_ids, leaders, earliest=True)
            run["requests_alone"] = kafka_requests_alone(cluster_id)
            runs_seen.append(run)
    result = {key: statistics.median(run[key] for run in runs_seen) for key in runs_seen[0]}
    result["ratio"] = statistics.median(run["seconds"] / run["floor"] for run in runs_seen)
    result["seed_seconds"] = seconds
    result["history_cycles"] = history_cycles
    return result


def report_cycle(report: Report, layout: Layout, result: dict[str, float], goal: float, database: str) -> None:
    assert result["groups"] == layout.groups, result
    report.add(f"poll cycle, {layout.label} ({database}), after {result['history_cycles']:.0f} earlier cycles",
               f"{result['seconds']:.2f} s", "(informative)", None)
    report.add("  Kafka half of it / rest (compute, write)",
               f"{result['kafka']:.2f} / {result['seconds'] - result['kafka']:.2f} s", "(informative)", None)
    report.add("  floor: OffsetFetch + ListOffsets LATEST, EARLIEST", f"{result['floor']:.2f} s", "(same run)", None)
    report.add("  the cycle's Kafka requests alone (no database, nothing beside them)",
               f"{result['requests_alone']:.2f} s = {result['requests_alone'] / result['floor']:.2f}x the floor",
               "(informative)", None)
    report.add("  cycle / floor", f"{result['ratio']:.2f}x", f"<= {goal:g}x", result["ratio"] <= goal)
    report.add("  database growth per cycle", f"{result['bytes'] / 1024 / 1024:.1f} MiB", "(informative)", None)


# -- Celery workers: real processes over Redis --------------------------------------------

class Workers:
    """``celery -A monitor worker`` processes on the bench's database, with a Redis key
    prefix of their own (queues and cache)."""

    def __init__(self, database_url: str, pool: str, concurrency: int, shard_groups: int = 0) -> None:
        from tests.services import ensure_redis

        ensure_redis()
        prefix = f"bench-scale-{os.getpid()}-{pool}"
        self.env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "DEBUG": "false",
                    "MONITOR_CACHE_PREFIX": prefix, "MONITOR_BROKER_KEY_PREFIX": f"{prefix}-",
                    "MONITOR_KAFKA_TIMEOUT_SECONDS": KAFKA_TIMEOUT_SECONDS, "LOG_LEVEL": "WARNING",
                    "MONITOR_POLL_SHARD_GROUPS": str(shard_groups), "DJANGO_SETTINGS_MODULE": "monitor.settings",
                    "MONITOR_POLL_QUEUE": ""}  # these workers take the polls on the default queue
        self.env.pop("MONITOR_TEST_DB_NAME", None)
        self.log = tempfile.NamedTemporaryFile(prefix="bench-scale-worker-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "celery"), "-A", "monitor", "worker", f"--pool={pool}",
             f"--concurrency={concurrency}", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-n", f"{prefix}@%h"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        from celery import Celery

        self.sender = Celery("bench", broker=REDIS_URL)
        self.sender.conf.broker_transport_options = {"global_keyprefix": f"{prefix}-"}

    def send(self, task: str, *args: object) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"the worker exited ({self.process.returncode}); see {self.log.name}")
        self.sender.send_task(task, args=list(args))

    def rss_bytes(self) -> int:
        """Resident memory of the worker process (the solo pool runs tasks in it)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.sender.close()
        self.log.close()
        os.unlink(self.log.name)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not done within {timeout:.0f} s")
        time.sleep(0.05)


def database_url_of_connection() -> str:
    from django.db import connection

    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def sharded_cycle(workers: Workers, cluster_id: int, shards: int) -> tuple[float, list[Any]]:
    """One cycle as ``schedule_polls`` starts it: one task per shard, the same start."""
    from django.db import close_old_connections
    from django.utils import timezone

    from monitor.models import PollRun

    started_at = timezone.now()
    clock = time.monotonic()
    for shard in range(shards):
        workers.send("monitor.poll_cluster_shard", cluster_id, shard, shards, started_at.isoformat())
    runs = PollRun.objects.filter(cluster_id=cluster_id, started_at=started_at)
    wait_for(lambda: runs.count() == shards, 600, "sharded cycle")
    elapsed = time.monotonic() - clock
    close_old_connections()
    return elapsed, list(runs)


def measure_sharded(report: Report, kafka: Any, bootstrap: str, layout: Layout, per_shard: int, concurrency: int,
                    cycles: int) -> None:
    from monitor.lag.shards import shard_count
    from monitor.models import ConsumerGroup

    seed_seconds = seed(kafka, layout)
    cluster_id = create_cluster(bootstrap, layout)
    first = one_cycle(cluster_id)  # never sharded: it finds the groups
    shards = shard_count(layout.groups, per_shard)
    report.add(f"sharded: {layout.label} seeded on the broker", f"{seed_seconds:.0f} s", "(informative)", None)
    report.add("  its first cycle, unsharded, in this process", f"{first['seconds']:.1f} s", "(informative)", None)
    workers = Workers(database_url_of_connection(), "prefork", concurrency, per_shard)
    try:
        sharded_cycle(workers, cluster_id, shards)  # workers start, connect, warm up
        walls = []
        for _ in range(cycles):
            wall, runs = sharded_cycle(workers, cluster_id, shards)
            assert all(run.ok for run in runs), [run.error for run in runs]
            polled = sum(run.groups for run in runs)
            assert polled == layout.groups, (polled, layout.groups)
            walls.append(wall)
            longest = max(run.duration_seconds for run in runs)
        recorded = ConsumerGroup.objects.filter(cluster_id=cluster_id, gone_at__isnull=True,
                                                last_sample_at__gte=runs[0].started_at).count()
    finally:
        workers.stop()
    wall = statistics.median(walls)
    report.add(f"sharded cycle, {shards} shards of <= {per_shard:,} groups, {concurrency} worker processes",
               f"{wall:.1f} s", f"<= {SHARD_INTERVAL_SECONDS} s", wall <= SHARD_INTERVAL_SECONDS)
    report.add("  longest shard of the last cycle", f"{longest:.1f} s", "(informative)", None)
    report.add("  groups recorded by the last cycle (each in one shard)", f"{recorded:,} of {layout.groups:,}",
               "all", recorded == layout.groups)


def measure_worker_memory(report: Report, cluster_id: int, cycles: int) -> None:
    """One solo-pool worker process polls the cluster ``cycles`` times in a row."""
    from django.db import close_old_connections

    from monitor.models import PollRun

    workers = Workers(database_url_of_connection(), "solo", 1)
    samples: dict[int, int] = {}
    try:
        runs = PollRun.objects.filter(cluster_id=cluster_id)
        for n in range(1, cycles + 1):
            before = runs.count()
            workers.send("monitor.poll_cluster", cluster_id)
            wait_for(lambda: runs.count() > before, 600, "worker cycle")
            close_old_connections()
            samples[n] = workers.rss_bytes()
    finally:
        workers.stop()
    mib = {n: rss / 1024 / 1024 for n, rss in samples.items()}
    settled = max(1, min(10, cycles // 2))  # the first cycles fill caches and connection pools
    growth = mib[cycles] - mib[settled]
    per_cycle_kib = growth / max(1, cycles - settled) * 1024
    marks = sorted({1, settled, cycles // 2 or 1, cycles})
    report.add(f"worker RSS over {cycles} cycles (after cycle {', '.join(map(str, marks))})",
               " / ".join(f"{mib[n]:.0f}" for n in marks) + " MiB", "flat", None)
    # Back to back, each cycle reads a longer status history than the last (it fills over
    # its first ~16 minutes of polls): growth of data, reported; flatness is judged in
    # steady state (measure_memory_steady).
    report.add(f"  growth from cycle {settled} to {cycles} (back to back: the history still filling)",
               f"{growth:+.1f} MiB ({per_cycle_kib:+.0f} KiB/cycle)", "(informative)", None)


def _own_rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def measure_memory_steady(report: Report, cluster_id: int, cycles: int) -> None:
    """The poll task's code (``poll_cluster``, Kafka included) in this process, cycle after
    cycle stamped one poll interval apart, measured once the status history it reads back
    is full: a worker polling in real time reads a history that grows for its first
    ``status_history_seconds`` (about 32 polls at 30 s), which is growth of data, not a leak."""
    from datetime import datetime, timezone

    from monitor.lag import history
    from monitor.lag.poll import poll_cluster
    from monitor.models import Cluster

    cluster = Cluster.objects.get(pk=cluster_id)
    interval = cluster.poll_interval_seconds
    fill = int(history.status_history_seconds(cluster) // interval) + 5
    at = datetime.now(timezone.utc) + timedelta(days=1)  # after every poll stored so far
    samples: dict[int, int] = {}
    for n in range(1, fill + cycles + 1):
        outcome = poll_cluster(cluster_id, now=at)
        assert outcome is not None and outcome.ok, outcome
        at += timedelta(seconds=interval)
        if n >= fill:
            samples[n - fill] = _own_rss_bytes()
    mib = {n: rss / 1024 / 1024 for n, rss in samples.items()}
    growth = mib[cycles] - mib[0]
    slope_kib = statistics.linear_regression(list(mib), list(mib.values())).slope * 1024
    report.add(f"poll RSS in steady state, {cycles} cycles {interval} s apart after {fill} filling the history",
               f"{mib[0]:.0f} / {mib[cycles // 2]:.0f} / {mib[cycles]:.0f} MiB (lowest {min(mib.values()):.0f}, "
               f"highest {max(mib.values()):.0f})", "flat", None)
    report.add(f"  last minus first of those {cycles} cycles", f"{growth:+.1f} MiB ({growth / cycles * 1024:+.0f} KiB/cycle)",
               "(informative: two single readings)", None)
    report.add("  growth a cycle, least-squares slope over every cycle's RSS", f"{slope_kib:+.0f} KiB/cycle",
               f"<= {FLAT_KIB_PER_CYCLE} KiB/cycle", slope_kib <= FLAT_KIB_PER_CYCLE)


def measure_sqlite(report: Report, bootstrap: str, runs: int, history_cycles: int | None) -> None:
    """The SQLite measurement in a child process (Django holds one database per process)."""
    with tempfile.TemporaryDirectory(prefix="bench-scale-sqlite-") as folder:
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{folder}/monitor.sqlite3", "DEBUG": "false"}
        env.pop("MONITOR_TEST_DB_NAME", None)
        env.pop("REDIS_URL", None)
        earlier = [] if history_cycles is None else ["--history-cycles", str(history_cycles)]
        done = subprocess.run([sys.executable, __file__, "--sqlite", "--bootstrap", bootstrap, "--runs", str(runs),
                               *earlier],
                              cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"SQLite measurement failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    report_cycle(report, SQLITE_LAYOUT, result, SQLITE_GOAL, "SQLite")


SQLITE_LAYOUT = Layout("sqlite", groups=50, topics=10, partitions_per_topic=20, topics_per_group=10)


def _sqlite_main(bootstrap: str, runs: int, history_cycles: int | None) -> None:
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ["DJANGO_SETTINGS_MODULE"] = "monitor.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["MONITOR_KAFKA_TIMEOUT_SECONDS"] = KAFKA_TIMEOUT_SECONDS
    import django

    django.setup()
    from django.core.management import call_command

    from monitor.kafka.adapter import ConnectionSettings

    call_command("migrate", verbosity=0)
    kafka = ConnectionSettings([bootstrap], timeout_seconds=float(KAFKA_TIMEOUT_SECONDS))
    result = measure_cycle(kafka, bootstrap, SQLITE_LAYOUT, runs, history_cycles)
    print(json.dumps(result))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="the SQLite part of bench/scale.py")
    parser.add_argument("--sqlite", action="store_true", required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--history-cycles", type=int, default=None)
    arguments = parser.parse_args()
    _sqlite_main(arguments.bootstrap, arguments.runs, arguments.history_cycles)
