"""The migrations describe the models exactly: a model change without its migration fails here."""
from io import StringIO

from django.core.management import call_command


def test_models_and_migrations_are_in_step(db):
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    assert "No changes detected" in out.getvalue()


def test_lag_samples_stored_before_frames_are_carried_over(transactional_db):
    """The lag-frames migration packs the rows of the three sample tables into frames and each group's latest
    partitions onto its row; what the readers return is what the rows held."""
    from datetime import datetime, timedelta, timezone as dt_timezone

    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from monitor.lag import samples
    from monitor.lag.timelag import OffsetPoint

    executor = MigrationExecutor(connection)
    graph = executor.loader.graph
    [frames_migration] = [key for key in graph.nodes if key[0] == "monitor" and key[1].endswith("_lag_frames")]
    before, after = list(graph.node_map[frames_migration].parents and
                         [parent.key for parent in graph.node_map[frames_migration].parents]), graph.leaf_nodes()
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    at = datetime(2026, 12, 1, 8, 0, tzinfo=dt_timezone.utc)
    cluster = old.get_model("monitor", "Cluster").objects.create(name="old", bootstrap_servers="k:9092")
    group = old.get_model("monitor", "ConsumerGroup").objects.create(
        cluster=cluster, name="billing", first_seen_at=at, last_seen_at=at, last_sample_at=at + timedelta(seconds=30))
    for step in (0, 30):
        when = at + timedelta(seconds=step)
        old.get_model("monitor", "PartitionLagSample").objects.create(
            group=group, topic="orders", partition=0, polled_at=when, committed_offset=90 + step, log_start_offset=0,
            log_end_offset=100 + step, lag=10, time_lag_seconds=1.5, time_lag_method="interpolated",
            time_lag_reason="", stalled=False)
        old.get_model("monitor", "TopicLagSample").objects.create(
            group=group, topic="orders", resolution=0, polled_at=when, lag=10, time_lag_seconds=1.5, partitions=1,
            unknown_partitions=0, partial_partitions=0, committed_offset_total=90 + step,
            log_end_offset_total=100 + step)
        old.get_model("monitor", "LogOffsetSample").objects.create(
            cluster=cluster, topic="orders", partition=0, polled_at=when, log_start_offset=0,
            log_end_offset=100 + step)
    old.get_model("monitor", "TopicLagSample").objects.create(
        group=group, topic="orders", resolution=60, polled_at=at - timedelta(days=3), lag=77, partitions=1,
        unknown_partitions=0, partial_partitions=0)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)

    from monitor.models import ConsumerGroup

    row = ConsumerGroup.objects.get(name="billing")
    epoch = datetime(1970, 1, 1, tzinfo=dt_timezone.utc)
    assert [(p.polled_at, p.lag, p.committed_offset_total) for p in samples.topic_points([row.id], epoch, None)] == [
        (at, 10, 90), (at + timedelta(seconds=30), 10, 120)]
    assert [p.lag for p in samples.topic_points([row.id], epoch, None, resolution=None)] == [77, 10, 10]
    assert [(p.committed_offset, p.log_end_offset) for p in samples.latest_partitions([row])[row.id]] == [(120, 130)]
    assert len(samples.partition_points(row.id, epoch, at + timedelta(days=1))) == 2
    assert samples.log_points(row.cluster_id, epoch)[("orders", 0)] == [
        OffsetPoint(at, 100, 0), OffsetPoint(at + timedelta(seconds=30), 130, 0)]


_PARTITIONING_SCRIPT = """
import datetime as dt, json, uuid, django
django.setup()
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from monitor import timepartitions

graph = MigrationLoader(None, ignore_no_migrations=True).graph
target = next(node for node in graph.nodes if node[0] == "monitor" and node[1].endswith("_events_time_partitions"))
before = next(parent for parent in graph.node_map[target].parents if parent.key[0] == "monitor").key
call_command("migrate", "monitor", before[1], verbosity=0)
columns = ("event_id, type, service, stage, timestamp, received_at, topic, key, consumer_group, trace_id, "
           "span_id, parent_span_id, report_hash")
days = [dt.datetime(2024, 5, 1, 10, tzinfo=dt.timezone.utc), dt.datetime(2024, 5, 1, 23, tzinfo=dt.timezone.utc),
        dt.datetime(2024, 5, 3, 1, tzinfo=dt.timezone.utc)]
with connection.cursor() as cursor:
    for number, moment in enumerate(days):
        cursor.execute(f"INSERT INTO monitor_event ({columns}) VALUES (%s, 'T', 's', 'published', %s, %s, "
                       "'orders', '', '', '', '', '', %s)", [f"evt-{number}", moment, moment, uuid.uuid4()])

def rows():
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, event_id, timestamp, report_hash::text FROM monitor_event ORDER BY id")
        return [[i, e, t.isoformat(), h] for i, e, t, h in cursor.fetchall()]

def primary_key():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                       "WHERE conrelid = 'monitor_event'::regclass AND contype = 'p'")
        return cursor.fetchone()[0]

report = {"before": rows()}
call_command("migrate", "monitor", target[1], verbosity=0)
report["after"] = rows()
report["partitioned"] = timepartitions.is_partitioned("monitor_event")
report["partitions"] = sorted(timepartitions.partitions("monitor_event"))
report["primary_key_after"] = primary_key()
call_command("migrate", "monitor", before[1], verbosity=0)
report["back"] = rows()
report["partitioned_back"] = timepartitions.is_partitioned("monitor_event")
report["primary_key_back"] = primary_key()
print(json.dumps(report))
"""


def test_events_stored_before_the_partitioning_migration_are_all_there_after_it_and_back(postgresql):
    """PostgreSQL: the migration rebuilds the events table partitioned by day with every row,
    and its reverse rebuilds the plain table (in a scratch database of its own)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from bench.scratch_db import create_database, drop_database

    database_url = create_database(os.environ["DATABASE_URL"], "test_partition_migration")
    try:
        environment = {name: value for name, value in os.environ.items()
                       if name not in ("REDIS_URL", "MONITOR_TEST_DB_NAME")}
        environment.update(DATABASE_URL=database_url, DEBUG="true", DJANGO_SETTINGS_MODULE="monitor.settings")
        child = subprocess.run([sys.executable, "-c", _PARTITIONING_SCRIPT], capture_output=True, text=True,
                               cwd=Path(__file__).resolve().parent.parent, env=environment, timeout=600)
    finally:
        drop_database(database_url)
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.strip().splitlines()[-1])
    assert len(report["before"]) == 3
    assert report["after"] == report["before"] == report["back"]
    assert report["partitioned"] and not report["partitioned_back"]
    assert {"monitor_event_p20240501", "monitor_event_p20240503", "monitor_event_pdefault"} <= set(
        report["partitions"])
    assert "monitor_event_p20240502" not in report["partitions"]
    assert report["primary_key_after"] == "PRIMARY KEY (id, \"timestamp\")"
    assert report["primary_key_back"] == "PRIMARY KEY (id)"


def test_the_flow_rollup_migration_builds_the_rollup_of_the_stored_events(transactional_db):
    """0017 on a database that already holds reports: their per-minute rollup exists after it."""
    from datetime import UTC, datetime, timedelta

    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from monitor.flow import rollups
    from monitor.models import Event, FlowEdgeRollup
    from tests.flow_data import event

    executor = MigrationExecutor(connection)
    executor.migrate([("monitor", "0016_events_time_partitions")])
    at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    Event.objects.bulk_create([event("e1", "published", "orders", at, topic="orders.events"),
                               event("e1", "consumed", "billing", at + timedelta(seconds=2), topic="orders.events",
                                     group="billing")])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    minutes = dict(FlowEdgeRollup.objects.filter(period_seconds=rollups.MINUTE)
                   .values_list("consumer_group", "latency_buckets"))
    assert set(minutes) == {"", "billing"} and sum(minutes["billing"].values()) == 1
    assert rollups.rolled_up_until() is not None
