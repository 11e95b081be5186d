"""Benchmark: what reading record timestamps (time lag method ``record``) adds to a poll cycle.

Starts a tansu broker on a free port and creates a throwaway PostgreSQL database (both
removed afterwards). Seeds ``--groups`` groups (default 10,000), each committed on the 10
partitions of one of 10 topics (100 partitions; 10 messages each, written a second
apart); a third of the groups are caught up, the others 1 to 8 messages behind, so every
partition has several distinct lagging offsets (up to 800 offsets to time). Then
``--history-polls`` earlier polls of history are seeded (the log-end table the
interpolated method reads) and cycles run exactly as ``poll_cluster`` runs them, in
three modes, in rotated order so all see the same machine load:

- **off**: ``MONITOR_TIME_LAG_FETCH_CYCLE_BYTES=0``, the interpolated method only (the baseline);
- **cold**: records on, both caches emptied before the cycle: every lagging partition is
  fetched (the first cycle after a start, or a cluster whose consumers all moved);
- **warm**: records on, caches as the previous cycle left them (a steady state: consumers
  stuck or slow cost a cache lookup, not a fetch).

It prints medians: the cycle, the record phase (cache lookups, the Fetch, parsing; it runs
serially on the Kafka thread, so a cycle grows by at most that much) against the **off**
cycle (goal: <= 10 %; whole-cycle differences are shown too, but on a shared machine with
tansu's slow OffsetFetch of 10,000 groups they are mostly noise), Kafka
requests per cycle (goal: at most one extra Fetch per partition leader; tansu is one
broker, so one leader), record bytes fetched per cycle and partitions read. The cache is
Django's in-process cache here (no Redis), plus the in-process layer of
``monitor.lag.record_times``.

    python bench/timelag.py [--groups 10000] [--repeat 3] [--history-polls 2] [--database-url URL]
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

TOPICS = 10
PARTITIONS = 10
MESSAGES = 10
GOAL_ADDED = 0.10
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def seed(kafka, prefix: str, groups: int) -> None:
    from monitor.kafka.adapter import Producer, commit_offsets_of_many_groups, create_topics

    topics = [f"{prefix}-topic-{n}" for n in range(TOPICS)]
    create_topics(kafka, {t: PARTITIONS for t in topics})
    producer = Producer(kafka)
    start_ms = int(time.time() * 1000) - 3_600_000
    for topic in topics:
        for partition in range(PARTITIONS):
            for n in range(MESSAGES):
                producer.send(topic, b"bench-record" * 8, partition=partition, timestamp_ms=start_ms + n * 1000)
    producer.close()
    offsets = {}
    for n in range(groups):
        behind = 0 if n % 3 == 0 else 1 + n % 8
        offsets[f"{prefix}-group-{n:05d}"] = {(topics[n % TOPICS], p): MESSAGES - behind for p in range(PARTITIONS)}
    commit_offsets_of_many_groups(kafka, offsets)


def clear_record_caches() -> None:
    from django.core.cache import cache

    from monitor.lag import record_times

    with record_times._local_lock:
        record_times._local.clear()
    cache.clear()


def cycle(cluster_id: int, mode: str) -> dict[str, float]:
    from django.conf import settings

    from monitor.lag.poll import poll_cluster

    settings.MONITOR_TIME_LAG_FETCH_CYCLE_BYTES = 0 if mode == "off" else 1024 * 1024
    if mode == "cold":
        clear_record_caches()
    outcome = poll_cluster(cluster_id)
    assert outcome is not None and outcome.ok, outcome
    reads = outcome.record_reads
    return {"seconds": outcome.duration_seconds, "kafka": outcome.kafka_seconds, "requests": outcome.requests,
            "fetch_requests": reads.requests if reads else 0, "bytes": reads.bytes if reads else 0,
            "read_partitions": reads.fetched_partitions if reads else 0, "cached": reads.cached if reads else 0,
            "timed": len(reads.times) if reads else 0, "not_read": len(reads.not_read) if reads else 0, "record_seconds": reads.seconds if reads else 0.0, "groups": outcome.groups, "partitions": outcome.partitions}


def methods(cluster_id: int) -> dict[str, int]:
    from collections import Counter

    from monitor.lag import samples
    from monitor.models import Cluster, ConsumerGroup

    latest = Cluster.objects.get(pk=cluster_id).last_success_at
    polled = ConsumerGroup.objects.filter(cluster_id=cluster_id, last_sample_at=latest)
    return dict(Counter(part.time_lag_method for parts in samples.latest_partitions(polled).values()
                        for part in parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="cycles per mode (median)")
    parser.add_argument("--history-polls", type=int, default=2, help="earlier polls of history seeded")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    args = parser.parse_args()
    if args.repeat < 1 or args.groups < 1:
        parser.error("--repeat and --groups: at least 1")
    os.environ.setdefault("MONITOR_KAFKA_TIMEOUT_SECONDS", "120")  # tansu answers 10,000 groups slowly
    from bench.poll import configure, seed_history
    from tests.services import ensure_postgresql, start_broker

    if args.database_url is None:
        ensure_postgresql()
    configure(args.database_url or DEFAULT_DATABASE_URL)
    from django.db import connection

    from monitor.kafka.adapter import ConnectionSettings, wait_until_reachable
    from monitor.models import Cluster

    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    broker = start_broker()
    started = time.monotonic()
    try:
        kafka = ConnectionSettings([broker.bootstrap], timeout_seconds=30)
        wait_until_reachable(kafka)
        seed(kafka, "tl", args.groups)
        seeded = time.monotonic() - started
        cluster = Cluster.objects.create(name="bench", bootstrap_servers=broker.bootstrap, group_include="tl-group-*",
                                         poll_interval_seconds=30)
        cycle(cluster.id, "off")  # creates the group rows
        seed_history(cluster.id, args.history_polls)
        cycle(cluster.id, "warm")  # connections, caches and plans warm
        runs: dict[str, list[dict[str, float]]] = {"off": [], "cold": [], "warm": []}
        orders = (("off", "cold", "warm"), ("cold", "warm", "off"), ("warm", "off", "cold"))
        for round_number in range(args.repeat):
            for mode in orders[round_number % 3]:  # rotated: no mode always runs first
                runs[mode].append(cycle(cluster.id, mode))
        shares = methods(cluster.id)
    finally:
        broker.stop()
        connection.creation.destroy_test_db(test_db, verbosity=0)
    med = {mode: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for mode, rs in runs.items()}
    off = med["off"]
    print(f"database: {connection.vendor}; broker: tansu (one leader); seeded in {seeded:.0f} s; "
          f"{args.history_polls} earlier polls of history")
    print(f"{int(off['groups']):,} groups x {PARTITIONS} partitions = {int(off['groups']) * PARTITIONS:,} "
          f"group-partitions over {int(off['partitions'])} partitions; medians of {args.repeat} cycles per mode\n")
    print(f"{'':34}{'off':>12}{'cold':>12}{'warm':>12}")
    rows = [
        ("poll cycle", lambda m: f"{m['seconds']:.2f} s"),
        ("  kafka half", lambda m: f"{m['kafka']:.2f} s"),
        ("added vs off (whole cycle)", lambda m: f"{(m['seconds'] / off['seconds'] - 1) * 100:+.1f} %"),
        ("record phase (Kafka thread)", lambda m: f"{m['record_seconds']:.3f} s"),
        ("  share of the off cycle", lambda m: f"{m['record_seconds'] / off['seconds'] * 100:.1f} %"),
        ("kafka requests per cycle", lambda m: f"{int(m['requests'])}"),
        ("  of which Fetch (record times)", lambda m: f"{int(m['fetch_requests'])}"),
        ("lagging offsets timed by record", lambda m: f"{int(m['timed'])}"),
        ("  from the cache", lambda m: f"{int(m['cached'])}"),
        ("lagging offsets not read", lambda m: f"{int(m['not_read'])}"),
        ("partitions read", lambda m: f"{int(m['read_partitions'])}"),
        ("record bytes fetched per cycle", lambda m: f"{int(m['bytes']):,}"),
    ]
    for label, cell in rows:
        print(f"{label:<34}" + "".join(f"{cell(med[mode]):>12}" for mode in ("off", "cold", "warm")))
    # The record phase runs serially on the Kafka thread: a cycle grows by at most its
    # length (plus the few record_time_lag calls after it). Whole-cycle medians carry the
    # noise of a shared machine and of tansu's slow OffsetFetch, so the goal is judged on
    # the phase itself and the whole-cycle change is shown beside it.
    cold_added = med["cold"]["record_seconds"] / off["seconds"]
    warm_added = med["warm"]["record_seconds"] / off["seconds"]
    extra = max(med["cold"]["requests"] - off["requests"], med["warm"]["requests"] - off["requests"])
    print(f"\ntime lag methods in the last cycle: {shares}")
    print(f"goal: <= {GOAL_ADDED:.0%} added (record phase / off cycle) -> cold {cold_added:+.1%} "
          f"({'met' if cold_added <= GOAL_ADDED else 'NOT met'}), warm {warm_added:+.1%} "
          f"({'met' if warm_added <= GOAL_ADDED else 'NOT met'}); extra Kafka requests per cycle: {int(extra)} "
          f"(goal: at most 1 per leader, 1 leader here: {'met' if extra <= 1 else 'NOT met'})")
    print(f"(bench ran {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
