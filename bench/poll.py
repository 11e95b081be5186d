"""Benchmark: one lag poll cycle against its floor, measured in the same run.

Starts a tansu broker on a free port and creates a throwaway PostgreSQL database (both
removed afterwards). For two sizes, 50 groups committing on every partition of 10 topics
x 20 partitions (10,000 group-partitions) and of 10 topics x 4 partitions, it seeds the
history a cluster polled every 30 s holds (``--history-polls``, default 32 earlier polls:
the status window and the stopped-after period the status rules read back), then
measures ``--repeat`` poll cycles exactly as ``poll_cluster`` runs them (Kafka reads,
stored history, computation, one transaction, the snapshot cache) and reports medians:

- the cycle, its Kafka half (from the cycle's start until Kafka has answered; the stored
  history is read meanwhile) and what follows it (computation and writes);
- the floor: one OffsetFetch of all groups followed by one ListOffsets of all
  partitions, the least any lag poll has to do, measured between the cycles;
- cycle / floor (the goal: within 3x), Kafka half / floor, and the part after Kafka;
- Kafka requests and SQL statements per cycle at both sizes: they must not grow with
  partitions;
- at the larger size, the same cluster polled in ``--shards`` shards (default 3, 0 skips
  it): the shards one after the other (one worker) and all at once on threads (as many
  workers as shards), against the unsharded cycle measured alternately with them.

Database: ``--database-url`` (or BENCH_DATABASE_URL), default the local PostgreSQL
(started if this machine can); a throwaway ``test_bench_poll_<pid>`` database is
created in it and dropped. The snapshot cache is Django's in-process cache.

    python bench/poll.py [--repeat 7] [--history-polls 32] [--database-url postgres://postgres@127.0.0.1:5432/postgres]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GROUPS = 50
TOPICS = 10
POLL_INTERVAL_SECONDS = 30
GOAL_RATIO = 3.0
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def configure(database_url: str) -> None:
    os.environ.setdefault("DEBUG", "true")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ["DATABASE_URL"] = database_url
    os.environ["MONITOR_TEST_DB_NAME"] = f"test_bench_poll_{os.getpid()}"  # concurrent runs never collide
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "monitor.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def seed(kafka, prefix: str, partitions_per_topic: int) -> tuple[list[str], list[tuple[str, int]]]:
    """Topics with a few messages per partition, and groups committed on every partition:
    half caught up, half behind by a varying amount."""
    from monitor.kafka.adapter import Producer, commit_offsets, create_topics

    topics = [f"{prefix}-topic-{n}" for n in range(TOPICS)]
    create_topics(kafka, {t: partitions_per_topic for t in topics})
    partitions = [(t, p) for t in topics for p in range(partitions_per_topic)]
    producer = Producer(kafka)
    messages = 3
    for topic, partition in partitions:
        for _ in range(messages):
            producer.send(topic, b"bench", partition=partition)
    producer.close()
    groups = [f"{prefix}-group-{n:02d}" for n in range(GROUPS)]
    for n, group in enumerate(groups):
        behind = 0 if n % 2 == 0 else 1 + n % messages
        commit_offsets(kafka, group, {tp: max(0, messages - behind) for tp in partitions})
    return groups, partitions


def seed_history(cluster_id: int, polls: int) -> None:
    """Copy the cluster's latest poll ``polls`` times back in time, one poll interval
    apart: the history the status window and time lag read in production. Then
    ANALYZE, as autovacuum does within a minute on any live database."""
    from django.db import connection

    from monitor.models import Cluster, LagFrame

    if connection.vendor != "postgresql":
        return  # the SQL below is PostgreSQL's
    latest = Cluster.objects.get(pk=cluster_id).last_success_at
    table = connection.ops.quote_name(LagFrame._meta.db_table)
    with connection.cursor() as cursor:
        if polls > 0:
            # The latest poll's frames (topic totals, log offsets, partition detail) again,
            # one interval apart.
            cursor.execute(
                f"INSERT INTO {table} (cluster_id, kind, bucket, payload, polled_at) "
                f"SELECT cluster_id, kind, bucket, payload, polled_at - make_interval(secs => k * %s) "
                f"FROM {table}, generate_series(1, %s) AS k WHERE cluster_id = %s AND polled_at = %s",
                [POLL_INTERVAL_SECONDS, polls, cluster_id, latest],
            )
        cursor.execute("ANALYZE")


def cycle(cluster_id: int) -> dict[str, float]:
    """One cycle as the scheduler runs it, with its SQL statements counted."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from monitor.lag.poll import poll_cluster

    with CaptureQueriesContext(connection) as queries:
        outcome = poll_cluster(cluster_id)
    assert outcome is not None and outcome.ok, outcome
    return {"seconds": outcome.duration_seconds, "kafka": outcome.kafka_seconds,
            "after_kafka": outcome.duration_seconds - outcome.kafka_seconds, "history": outcome.history_seconds,
            "requests": outcome.requests, "statements": len(queries), "partitions": outcome.partitions,
            "groups": outcome.groups}


def measure(kafka, broker_bootstrap: str, name: str, partitions_per_topic: int, repeat: int,
            history_polls: int) -> dict[str, float]:
    from monitor.kafka.adapter import KafkaAdapter
    from monitor.models import Cluster

    groups, partitions = seed(kafka, name, partitions_per_topic)
    cluster = Cluster.objects.create(name=name, bootstrap_servers=broker_bootstrap, group_include=f"{name}-group-*",
                                     poll_interval_seconds=POLL_INTERVAL_SECONDS)
    cycle(cluster.id)  # the first poll creates the group rows
    seed_history(cluster.id, history_polls)
    cycle(cluster.id)
    with KafkaAdapter(kafka) as adapter:
        metadata = adapter.topic_metadata({t for t, _ in partitions})
        leaders = {(t, p): leader for t, parts in metadata.leaders.items() for p, leader in parts.items()}
        adapter.round_trip_floor(groups, leaders)  # connections and coordinator lookup warm
        runs = []
        for _ in range(repeat):  # cycles and floors alternate: both see the same machine load
            run = cycle(cluster.id)
            run["floor"] = adapter.round_trip_floor(groups, leaders)
            runs.append(run)
    result = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    result["ratio"] = statistics.median(run["seconds"] / run["floor"] for run in runs)
    result["kafka_ratio"] = statistics.median(run["kafka"] / run["floor"] for run in runs)
    result["after_kafka_ratio"] = statistics.median(run["after_kafka"] / run["floor"] for run in runs)
    return result


def sharded_cycle(cluster_id: int, shards: int, parallel: bool) -> float:
    """One sharded cycle as ``shards`` poll_cluster_shard tasks run it; its wall time."""
    import threading

    from django.db import connection
    from django.utils import timezone

    from monitor.lag.poll import poll_cluster
    from monitor.lag.shards import Shard

    started_at = timezone.now()
    failures: list[object] = []

    def run(index: int) -> None:
        try:
            outcome = poll_cluster(cluster_id, shard=Shard(index, shards), cycle_started_at=started_at)
            if outcome is None or not outcome.ok:
                failures.append(outcome)
        finally:
            if parallel:
                connection.close()  # each thread's own connection

    clock = time.monotonic()
    if parallel:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(shards)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        for index in range(shards):
            run(index)
    elapsed = time.monotonic() - clock
    assert not failures, failures
    return elapsed


def measure_shards(name: str, shards: int, repeat: int) -> dict[str, float]:
    """Unsharded, sharded one after the other and sharded at once, alternating."""
    from monitor.models import Cluster

    cluster_id = Cluster.objects.get(name=name).pk
    runs = []
    for _ in range(repeat):
        unsharded = cycle(cluster_id)["seconds"]
        runs.append({"unsharded": unsharded, "sequential": sharded_cycle(cluster_id, shards, parallel=False),
                     "parallel": sharded_cycle(cluster_id, shards, parallel=True)})
    result = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    result["sequential_ratio"] = statistics.median(run["sequential"] / run["unsharded"] for run in runs)
    result["parallel_ratio"] = statistics.median(run["parallel"] / run["unsharded"] for run in runs)
    return result


def report_shards(result: dict[str, float], shards: int, repeat: int) -> None:
    print(f"\nsharded cycle of the 200-partition cluster, {shards} shards (medians of {repeat})")
    print(f"{'unsharded cycle':<36}{result['unsharded']:>10.3f} s")
    print(f"{'shards one after the other':<36}{result['sequential']:>10.3f} s  "
          f"({result['sequential_ratio']:.2f}x the unsharded cycle: the cost of sharding)")
    print(f"{'shards at once (threads)':<36}{result['parallel']:>10.3f} s  "
          f"({result['parallel_ratio']:.2f}x the unsharded cycle, on {os.cpu_count()} CPUs)")


def report(large: dict[str, float], small: dict[str, float], repeat: int) -> None:
    rows = [
        ("group-partitions", lambda r: f"{int(r['groups'])} x {int(r['partitions'])} = {int(r['groups'] * r['partitions']):,}"),
        ("poll cycle", lambda r: f"{r['seconds']:.3f} s"),
        ("  kafka half", lambda r: f"{r['kafka']:.3f} s"),
        ("  after kafka (compute, write)", lambda r: f"{r['after_kafka']:.3f} s"),
        ("  history read (during kafka)", lambda r: f"{r['history']:.3f} s"),
        ("floor (OffsetFetch + ListOffsets)", lambda r: f"{r['floor']:.3f} s"),
        ("cycle / floor", lambda r: f"{r['ratio']:.1f}x"),
        ("kafka half / floor", lambda r: f"{r['kafka_ratio']:.1f}x"),
        ("after kafka / floor", lambda r: f"{r['after_kafka_ratio']:.1f}x"),
        ("kafka requests per cycle", lambda r: f"{int(r['requests'])}"),
        ("SQL statements per cycle", lambda r: f"{int(r['statements'])}"),
    ]
    print(f"\nmedians of {repeat} cycles{'':9}{'200 partitions':>22}{'40 partitions':>22}")
    for label, cell in rows:
        print(f"{label:<36}{cell(large):>22}{cell(small):>22}")
    same_requests = small["requests"] == large["requests"]
    same_statements = small["statements"] == large["statements"]
    print(f"\nkafka requests: {int(small['requests'])} at 40 partitions, {int(large['requests'])} at 200 "
          f"({'constant' if same_requests else 'GROW'} in partitions); SQL statements: {int(small['statements'])} "
          f"and {int(large['statements'])} ({'constant' if same_statements else 'GROW'})")
    ratio = large["ratio"]
    print(f"goal: cycle within {GOAL_RATIO:.0f}x of floor at 10,000 group-partitions -> {ratio:.1f}x "
          f"({'met' if ratio <= GOAL_RATIO else 'not met'}); kafka half {large['kafka_ratio']:.1f}x, "
          f"after kafka {large['after_kafka_ratio']:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", "--cycles", type=int, default=7, help="measured cycles per size (median)")
    parser.add_argument("--history-polls", type=int, default=32,
                        help="earlier polls seeded per group (default: the status window of a 30 s poll)")
    parser.add_argument("--shards", type=int, default=3, help="shards of the sharded cycle (0: not measured)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: must be at least 1")
    from tests.services import ensure_postgresql, start_broker

    if args.database_url is None:
        ensure_postgresql()
    configure(args.database_url or DEFAULT_DATABASE_URL)

    from django.db import connection

    from monitor.kafka.adapter import ConnectionSettings, wait_until_reachable

    if connection.vendor != "postgresql":
        args.history_polls = 0
    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    broker = start_broker()
    started = time.monotonic()
    try:
        kafka = ConnectionSettings([broker.bootstrap], timeout_seconds=10)
        wait_until_reachable(kafka)
        print(f"database: {connection.vendor} ({test_db}); broker: tansu at {broker.bootstrap}; "
              f"{args.history_polls} earlier polls of history per group")
        large = measure(kafka, broker.bootstrap, "large", 20, args.repeat, args.history_polls)
        sharded = measure_shards("large", args.shards, args.repeat) if args.shards > 1 else None
        small = measure(kafka, broker.bootstrap, "small", 4, args.repeat, args.history_polls)
    finally:
        broker.stop()
        connection.creation.destroy_test_db(test_db, verbosity=0)
    report(large, small, args.repeat)
    if sharded is not None:
        report_shards(sharded, args.shards, args.repeat)
    print(f"(bench ran {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
