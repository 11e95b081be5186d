"""Benchmark: one lag poll cycle against its floor, measured in the same run.

Starts a tansu broker on a free port, creates 50 groups committing on every partition
of 10 topics x 20 partitions (10,000 group-partitions), and measures:

- a poll cycle (median of several): seconds, Kafka requests, and its Kafka and database
  halves;
- the floor: one OffsetFetch of all groups followed by one ListOffsets of all
  partitions, the least any lag poll has to do;
- the same cycle on 10 topics x 4 partitions, to show requests do not grow with
  partitions.

Database: ``--database-url`` (or BENCH_DATABASE_URL), else a throwaway SQLite file.
A throwaway database is created and dropped either way.

    python bench/poll.py [--cycles 5] [--database-url postgres://postgres@127.0.0.1:5432/bench]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GROUPS = 50
TOPICS = 10
GOAL_RATIO = 3.0


def configure(database_url: str | None) -> None:
    os.environ.setdefault("DEBUG", "true")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ["DATABASE_URL"] = database_url or f"sqlite:///{tempfile.mkdtemp(prefix='bench-poll-')}/bench.sqlite3"
    os.environ.pop("REDIS_URL", None)  # the snapshot cache is not what is measured
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


def cycle(cluster_id: int) -> dict[str, float]:
    """A poll cycle, as poll_cluster runs it, with its two halves timed apart."""
    from django.utils import timezone

    from monitor.kafka.adapter import KafkaAdapter
    from monitor.lag.clusters import connection_settings
    from monitor.lag.poll import read_cluster
    from monitor.lag.record import record_cycle
    from monitor.models import Cluster

    cluster = Cluster.objects.get(pk=cluster_id)
    started_at, clock = timezone.now(), time.perf_counter()
    with KafkaAdapter(connection_settings(cluster)) as adapter:
        reading = read_cluster(adapter, cluster)
    kafka_seconds = time.perf_counter() - clock
    record_cycle(cluster, reading, started_at, time.monotonic() - kafka_seconds)
    total = time.perf_counter() - clock
    return {"seconds": total, "kafka": kafka_seconds, "database": total - kafka_seconds,
            "requests": reading.requests, "partitions": len(reading.partitions), "groups": len(reading.committed)}


def floor(kafka, groups: list[str], partitions: list[tuple[str, int]], repeats: int) -> float:
    from monitor.kafka.adapter import KafkaAdapter

    with KafkaAdapter(kafka) as adapter:
        metadata = adapter.topic_metadata({t for t, _ in partitions})
        leaders = {(t, p): leader for t, parts in metadata.leaders.items() for p, leader in parts.items()}
        adapter.round_trip_floor(groups, leaders)  # connections and coordinator lookup warm
        return statistics.median(adapter.round_trip_floor(groups, leaders) for _ in range(repeats))


def measure(kafka, broker_bootstrap: str, name: str, partitions_per_topic: int, cycles: int) -> dict[str, float]:
    from monitor.models import Cluster

    groups, partitions = seed(kafka, name, partitions_per_topic)
    cluster = Cluster.objects.create(name=name, bootstrap_servers=broker_bootstrap, group_include=f"{name}-group-*")
    cycle(cluster.id)  # first poll creates the group rows
    runs = [cycle(cluster.id) for _ in range(cycles)]
    result = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    result["floor"] = floor(kafka, groups, partitions, repeats=max(cycles, 5))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    args = parser.parse_args()
    configure(args.database_url)

    from django.db import connection

    from monitor.kafka.adapter import ConnectionSettings, wait_until_reachable
    from tests.services import start_broker

    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    broker = start_broker()
    try:
        kafka = ConnectionSettings([broker.bootstrap], timeout_seconds=10)
        wait_until_reachable(kafka)
        print(f"database: {connection.vendor} ({test_db}); broker: tansu at {broker.bootstrap}")
        large = measure(kafka, broker.bootstrap, "large", 20, args.cycles)
        small = measure(kafka, broker.bootstrap, "small", 4, args.cycles)
    finally:
        broker.stop()
        connection.creation.destroy_test_db(test_db, verbosity=0)

    for label, r in (("50 groups x 200 partitions", large), ("50 groups x 40 partitions", small)):
        print(f"\n{label}: {int(r['groups'])} groups, {int(r['partitions'])} partitions "
              f"({int(r['groups'] * r['partitions'])} group-partitions)")
        print(f"  poll cycle     {r['seconds']:.3f} s  (kafka {r['kafka']:.3f} s, database {r['database']:.3f} s), "
              f"{int(r['requests'])} requests")
        print(f"  floor          {r['floor']:.3f} s  (one OffsetFetch + one ListOffsets round trip)")
        print(f"  cycle / floor  {r['seconds'] / r['floor']:.1f}x   kafka half / floor {r['kafka'] / r['floor']:.1f}x")
    print(f"\nrequests per cycle: {int(small['requests'])} at 40 partitions, {int(large['requests'])} at 200 "
          f"({'constant' if small['requests'] == large['requests'] else 'GROWS'} in partitions)")
    ratio = large["seconds"] / large["floor"]
    print(f"goal: cycle within {GOAL_RATIO:.0f}x of floor -> {ratio:.1f}x "
          f"({'met' if ratio <= GOAL_RATIO else 'not met'}); kafka half {large['kafka'] / large['floor']:.1f}x")


if __name__ == "__main__":
    main()
