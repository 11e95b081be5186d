"""Benchmark: one alert evaluation of 1,000 rules x 500 consumer groups, against its
database floor measured in the same run.

Seeds one cluster with 500 groups reading 2 topics each (1,000 group/topic subjects,
with per-partition samples for the message tables) and 1,000 enabled rules over them:
600 on ``lag``, 200 on ``time_lag_seconds``, 200 on ``status``, most scoped to every
group (``*``), some to a glob, some to one group; thresholds chosen so that a few
percent of the (rule, subject) pairs breach and keep alerts firing.

Each measured evaluation follows a fresh poll (new lag values for every group), as in
production. Reported:

- evaluation seconds (median of ``--runs``), rule x subject pairs per second;
- the floor: the SQL statements of one evaluation, recorded and replayed alone (in a
  transaction rolled back afterwards); evaluation / floor is the Python overhead;
- queries per evaluation for 10 rules x 10 groups and for 1,000 x 500: they must not
  grow per rule or per subject (no N+1).

Database: ``--database-url`` (or BENCH_DATABASE_URL), else a throwaway SQLite file.
A throwaway database is created and dropped either way.

    python bench/alerts.py [--runs 5] [--database-url postgres://postgres@127.0.0.1:5432/bench]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GROUPS = 500
TOPICS = ("orders", "payments")
PARTITIONS = 4
RULES = 1000


def configure(database_url: str | None) -> None:
    os.environ.setdefault("DEBUG", "true")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ["DATABASE_URL"] = database_url or f"sqlite:///{tempfile.mkdtemp(prefix='bench-alerts-')}/bench.sqlite3"
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "monitor.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def seed_cluster(name: str, groups: int):
    from django.utils import timezone

    from monitor.choices import ClusterStatus
    from monitor.models import Cluster, ConsumerGroup

    now = timezone.now()
    cluster = Cluster.objects.create(name=name, bootstrap_servers="127.0.0.1:9", status=ClusterStatus.OK)
    ConsumerGroup.objects.bulk_create(
        ConsumerGroup(cluster=cluster, name=f"g-{n:03d}", first_seen_at=now, last_seen_at=now, topics=list(TOPICS))
        for n in range(groups))
    return cluster


def poll(cluster, seed: int, churn: bool = False) -> None:
    """A new poll of every group of the cluster, as the poller stores it. Each partition
    keeps its own lag level, drifting +-10% per poll; ``churn`` draws every lag anew
    (the worst case: thousands of alerts change state at once)."""
    from django.utils import timezone

    from monitor.choices import GroupStatus
    from monitor.lag import samples
    from monitor.lag.bulk import update_rows
    from monitor.models import ConsumerGroup

    rng = random.Random(seed)
    levels = random.Random(cluster.name)
    now = timezone.now()
    groups = list(ConsumerGroup.objects.filter(cluster=cluster))
    topic_rows, partition_rows = [], []
    statuses = [GroupStatus.OK] * 90 + [GroupStatus.GROWING] * 6 + [GroupStatus.STALLED] * 3 + [GroupStatus.STOPPED]
    for group in groups:
        total = 0
        for topic in TOPICS:
            lags = [int((rng if churn else levels).expovariate(1 / 200) * (1 if churn else rng.uniform(0.9, 1.1)))
                    for _ in range(PARTITIONS)]
            total += sum(lags)
            topic_rows.append((group.id, topic, sum(lags), sum(lags) / 20, PARTITIONS, 0, 0, None, None))
            partition_rows.extend(
                samples.PartitionState(topic, p, None, None, None, lag, lag / 20, "interpolated", "", None, False,
                                       None, None)
                for p, lag in enumerate(lags))
        status = (rng if churn else levels).choice(statuses)
        group.total_lag, group.last_sample_at, group.status = total, now, status
        group.partition_state = samples.pack_state(partition_rows)
        partition_rows = []
    samples.store_poll(cluster.id, now, totals=topic_rows)
    update_rows(ConsumerGroup, groups, ["total_lag", "last_sample_at", "status", "partition_state"])


def seed_rules(cluster, count: int, channel) -> None:
    from monitor.alerts.metrics import STATUS_RANK
    from monitor.models import AlertRule

    rng = random.Random(7)
    rules = []
    for n in range(count):
        kind = n % 5
        if kind < 3:
            metric, op, threshold = "lag", ">", float(rng.choice([1500, 2000, 2500, 3000]))
        elif kind == 3:
            metric, op, threshold = "time_lag_seconds", ">", float(rng.choice([75, 100, 150]))
        else:
            metric, op, threshold = "status", ">=", float(STATUS_RANK["stalled"])
        group = "*" if n % 10 < 8 else (f"g-{n % 5}*" if n % 10 == 8 else f"g-{n % 500:03d}")
        rules.append(AlertRule(name=f"{cluster.name} rule {n}", cluster=cluster.name, group=group, topic="*",
                               metric=metric, op=op, threshold=threshold, for_seconds=0 if n % 2 else 60,
                               severity="warning"))
    AlertRule.objects.bulk_create(rules, batch_size=1000)
    through = AlertRule.channels.through
    through.objects.bulk_create(through(alertrule_id=r.id, channel_id=channel.id)
                                for r in AlertRule.objects.filter(cluster=cluster.name))


class Recorder:
    """Records every statement (SQL, params) run through the connection."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, object, bool]] = []

    def __call__(self, execute, sql, params, many, context):
        self.statements.append((sql, params, many))
        return execute(sql, params, many, context)


def replay(statements: list[tuple[str, object, bool]]) -> float:
    """Run the recorded statements alone, each in a savepoint, all rolled back."""
    from django.db import DatabaseError, connection, transaction

    seconds = 0.0

    class Rollback(Exception):
        pass

    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                for sql, params, many in statements:
                    started = time.perf_counter()
                    try:
                        with transaction.atomic():
                            if many:
                                cursor.executemany(sql, params)
                            else:
                                cursor.execute(sql, params)
                            if cursor.description is not None:
                                cursor.fetchall()
                    except DatabaseError:
                        pass  # e.g. an insert the evaluation already made; its cost is still counted
                    seconds += time.perf_counter() - started
            raise Rollback
    except Rollback:
        pass
    return seconds


def reads(statements: list[tuple[str, object, bool]]) -> int:
    return sum(1 for sql, _, _ in statements if sql.lstrip().upper().startswith("SELECT") and "pg_advisory" not in sql)


def evaluation(at):
    from django.db import connection

    from monitor.alerts.engine import evaluate

    recorder = Recorder()
    with connection.execute_wrapper(recorder):
        started = time.perf_counter()
        result = evaluate(at)
        seconds = time.perf_counter() - started
    return seconds, result, recorder.statements


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    args = parser.parse_args()
    configure(args.database_url)

    from django.db import connection
    from django.utils import timezone

    from monitor.alerts import metrics
    from monitor.choices import ChannelKind
    from monitor.models import Alert, AlertRule, Channel

    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        channel = Channel.objects.create(name="bench", kind=ChannelKind.WEBHOOK, webhook_url="http://127.0.0.1:9/")
        print(f"database: {connection.vendor} ({test_db})")

        # The small case churns so that it makes every kind of change the large one makes.
        small = seed_cluster("small", 10)
        seed_rules(small, 10, channel)
        poll(small, 1, churn=True)
        evaluation(timezone.now())
        poll(small, 2, churn=True)
        _, small_result, small_statements = evaluation(timezone.now() + timedelta(seconds=15))
        AlertRule.objects.filter(cluster="small").delete()

        cluster = seed_cluster("large", GROUPS)
        seed_rules(cluster, RULES, channel)
        subjects = len(TOPICS) * GROUPS
        pairs = sum((len(TOPICS) * GROUPS if r.metric != "status" else GROUPS) * (
            1 if r.group == "*" else (100 if r.group.endswith("*") else 1) / GROUPS)
            for r in AlertRule.objects.filter(cluster="large"))
        print(f"{RULES} rules x {GROUPS} groups ({subjects} group/topic subjects, "
              f"{int(pairs):,} rule x subject pairs per evaluation); metrics: "
              f"{', '.join(sorted(m for m in metrics.all_metrics() if m in ('lag', 'time_lag_seconds', 'status')))}")

        start = timezone.now()
        poll(cluster, 100)
        first_seconds, first, _ = evaluation(start)
        print(f"\nfirst evaluation   {first_seconds:.3f} s: {first.summary()}")

        runs = []
        for run in range(args.runs):
            poll(cluster, 200 + run)
            seconds, result, statements = evaluation(start + timedelta(seconds=15 * (run + 1)))
            runs.append((seconds, result, statements))
        seconds = statistics.median(r[0] for r in runs)
        _, typical, statements = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        floor = statistics.median(replay(statements) for _ in range(3))
        open_alerts = Alert.objects.filter(state__in=["pending", "firing"]).count()
        print(f"steady evaluation  {seconds:.3f} s (median of {args.runs}), {pairs / seconds:,.0f} pairs/s; "
              f"{open_alerts} open alerts; last: {typical.summary()}")
        print(f"database floor     {floor:.3f} s: the evaluation's {len(statements)} statements replayed alone")
        print(f"evaluation / floor {seconds / floor:.1f}x")

        poll(cluster, 999, churn=True)
        churn_seconds, churn, churn_statements = evaluation(start + timedelta(seconds=15 * (args.runs + 1)))
        churn_floor = replay(churn_statements)
        print(f"\nworst case: every lag drawn anew ({churn.fired + churn.resolved + churn.pending + churn.dropped:,} "
              f"state changes): {churn_seconds:.3f} s, floor {churn_floor:.3f} s "
              f"({len(churn_statements)} statements), ratio {churn_seconds / churn_floor:.1f}x")
        small_reads, large_reads = reads(small_statements), reads(statements)
        print(f"\nqueries per evaluation (10 rules x 10 groups -> {RULES} rules x {GROUPS} groups); small: "
              f"{small_result.summary()}")
        verdict = "constant: per metric and table, never per rule or subject" if small_reads == large_reads else "GROWS"
        print(f"  reads   {small_reads} -> {large_reads} ({verdict})")
        print(f"  writes  {len(small_statements) - small_reads} -> {len(statements) - large_reads} "
              f"(one per kind of change per 500 changed alerts; executemany batches count once)")
    finally:
        connection.creation.destroy_test_db(test_db, verbosity=0)


if __name__ == "__main__":
    main()
