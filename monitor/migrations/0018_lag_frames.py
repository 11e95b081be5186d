"""Lag samples move into packed frames (monitor.lag.samples): one row per poll, kind and
bucket of groups instead of one row per sample; both frame tables are partitioned by day
on PostgreSQL. Existing samples are carried over, then the three sample tables go."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import django.db.models.deletion
from django.db import migrations, models

from monitor import timepartitions
from monitor.lag import frames, samples

CHUNK = 20_000


def _partition_tables(apps: Any, schema_editor: Any) -> None:
    for table in ("monitor_lagframe", "monitor_lagrollup"):
        timepartitions.convert_to_partitioned(schema_editor, table, "polled_at", ["id", "polled_at"])
        if schema_editor.connection.vendor == "postgresql":
            # Frames are compressed already: no second compression attempt by TOAST.
            schema_editor.execute(f'ALTER TABLE "{table}" ALTER COLUMN "payload" SET STORAGE EXTERNAL')


def _rows(schema_editor: Any, sql: str) -> Any:
    """Rows of ``sql`` in chunks, without holding a whole table in memory."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(sql)
        while chunk := cursor.fetchmany(CHUNK):
            yield from chunk


def _carry_over(apps: Any, schema_editor: Any) -> None:
    LagFrame = apps.get_model("monitor", "LagFrame")
    LagRollup = apps.get_model("monitor", "LagRollup")
    ConsumerGroup = apps.get_model("monitor", "ConsumerGroup")
    cluster_of = dict(ConsumerGroup.objects.values_list("id", "cluster_id"))
    pending: list[Any] = []

    def flush(force: bool = False) -> None:
        if pending and (force or len(pending) >= 500):
            for model in (LagFrame, LagRollup):
                batch = [f for f in pending if isinstance(f, model)]
                model.objects.bulk_create(batch, batch_size=500)
            pending.clear()

    # Topic totals, per poll (resolution 0) and rollups, per cluster, time and bucket.
    key: tuple[Any, ...] | None = None
    rows: list[tuple[Any, ...]] = []

    def emit_totals() -> None:
        if key is None or not rows:
            return
        cluster_id, resolution, polled_at, bucket = key
        payload = frames.encode(frames.TOTALS, sorted(rows, key=lambda r: (r[0], r[1])))
        if resolution:
            pending.append(LagRollup(cluster_id=cluster_id, kind=1, bucket=bucket, polled_at=polled_at,
                                     resolution=resolution, payload=payload))
        else:
            pending.append(LagFrame(cluster_id=cluster_id, kind=1, bucket=bucket, polled_at=polled_at,
                                    payload=payload))
        flush()

    for (group_id, topic, resolution, polled_at, lag, time_lag, partitions, unknown, partial, committed,
         log_end) in _rows(schema_editor, (
            "SELECT s.group_id, s.topic, s.resolution, s.polled_at, s.lag, s.time_lag_seconds, s.partitions, "
            "s.unknown_partitions, s.partial_partitions, s.committed_offset_total, s.log_end_offset_total "
            "FROM monitor_topiclagsample s JOIN monitor_consumergroup g ON g.id = s.group_id "
            "ORDER BY g.cluster_id, s.resolution, s.polled_at, s.group_id % 64, s.group_id, s.topic")):
        # Carried-over polls are split into 64 buckets whatever their size.
        this = (cluster_of[group_id], resolution, polled_at, samples.bucket_of(group_id))
        if this != key:
            emit_totals()
            key, rows = this, []
        rows.append((group_id, topic, lag, time_lag, partitions, unknown, partial, committed, log_end))
    emit_totals()

    # Partition detail: every stored poll becomes detail; each group's latest its state.
    key, rows = None, []

    def emit_partitions() -> None:
        if key is None or not rows:
            return
        cluster_id, polled_at, bucket = key
        pending.append(LagFrame(cluster_id=cluster_id, kind=2, bucket=bucket, polled_at=polled_at,
                                payload=frames.encode(frames.PARTITIONS, rows)))
        flush()

    latest: dict[int, Any] = dict(ConsumerGroup.objects.exclude(last_sample_at=None).values_list("id", "last_sample_at"))
    states: dict[int, list[samples.PartitionState]] = defaultdict(list)
    for row in _rows(schema_editor, (
            "SELECT s.group_id, s.topic, s.partition, s.committed_offset, s.log_start_offset, s.log_end_offset, "
            "s.lag, s.time_lag_seconds, s.time_lag_method, s.time_lag_reason, s.stuck_since, s.stalled, s.polled_at "
            "FROM monitor_partitionlagsample s JOIN monitor_consumergroup g ON g.id = s.group_id "
            "ORDER BY g.cluster_id, s.polled_at, s.group_id % 64, s.group_id, s.topic, s.partition")):
        group_id, polled_at = row[0], row[12]
        this = (cluster_of[group_id], polled_at, samples.bucket_of(group_id))
        if this != key:
            emit_partitions()
            key, rows = this, []
        rows.append(row[:12])
        if latest.get(group_id) == polled_at:
            states[group_id].append(samples.PartitionState(*row[1:12], row[3], polled_at))
    emit_partitions()
    for group_id, state in states.items():
        ConsumerGroup.objects.filter(id=group_id).update(partition_state=samples.pack_state(state))

    # Log offsets, per cluster and time.
    key, rows = None, []

    def emit_offsets() -> None:
        if key is None or not rows:
            return
        cluster_id, polled_at = key
        pending.append(LagFrame(cluster_id=cluster_id, kind=3, bucket=0, polled_at=polled_at,
                                payload=frames.encode(frames.LOG_OFFSETS, rows)))
        flush()

    for cluster_id, polled_at, topic, partition, log_start, log_end in _rows(schema_editor, (
            "SELECT cluster_id, polled_at, topic, partition, log_start_offset, log_end_offset "
            "FROM monitor_logoffsetsample ORDER BY cluster_id, polled_at, topic, partition")):
        this = (cluster_id, polled_at)
        if this != key:
            emit_offsets()
            key, rows = this, []
        rows.append((topic, partition, log_start, log_end))
    emit_offsets()
    flush(force=True)


class Migration(migrations.Migration):

    dependencies = [
        ('monitor', '0017_flow_edge_minutes'),
    ]

    operations = [
        migrations.AddField(
            model_name='consumergroup',
            name='partition_state',
            field=models.BinaryField(editable=False, help_text='The partitions of the latest poll, packed (monitor.lag.samples): offsets, lag, time lag, stuck since, the window\'s highest committed offset', null=True),
        ),
        migrations.CreateModel(
            name='LagFrame',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.SmallIntegerField(choices=[(1, 'topic totals'), (2, 'partition detail'), (3, 'log offsets')])),
                ('bucket', models.SmallIntegerField(default=0, help_text='width + group id modulo width, for a poll split into width buckets (0 for log offsets)')),
                ('polled_at', models.DateTimeField()),
                ('payload', models.BinaryField()),
                ('cluster', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='monitor.cluster')),
            ],
            options={
                'indexes': [models.Index(fields=['cluster', 'kind', 'bucket', 'polled_at'], name='lagframe_key')],
            },
        ),
        migrations.CreateModel(
            name='LagRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.SmallIntegerField(choices=[(1, 'topic totals'), (2, 'partition detail'), (3, 'log offsets')])),
                ('bucket', models.SmallIntegerField(default=0, help_text='width + group id modulo width, for a poll split into width buckets (0 for log offsets)')),
                ('polled_at', models.DateTimeField()),
                ('payload', models.BinaryField()),
                ('resolution', models.IntegerField()),
                ('cluster', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='monitor.cluster')),
            ],
            options={
                'indexes': [models.Index(fields=['cluster', 'kind', 'bucket', 'polled_at'], name='lagrollup_key')],
            },
        ),
        migrations.RunPython(_partition_tables, migrations.RunPython.noop),
        migrations.RunPython(_carry_over, migrations.RunPython.noop),
        migrations.DeleteModel(name='LogOffsetSample'),
        migrations.DeleteModel(name='PartitionLagSample'),
        migrations.DeleteModel(name='TopicLagSample'),
    ]
