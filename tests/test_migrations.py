"""The migrations describe the models exactly: a model change without its migration fails here."""
from io import StringIO

from django.core.management import call_command


def test_models_and_migrations_are_in_step(db):
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    assert "No changes detected" in out.getvalue()


def test_lag_samples_stored_before_frames_are_carried_over(transactional_db):
    """0016 packs the rows of the three sample tables into frames and each group's latest
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
