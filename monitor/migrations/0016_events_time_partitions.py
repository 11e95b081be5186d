"""Events partitioned by time on PostgreSQL: one partition a UTC day plus a default one.

On PostgreSQL the plain table is rebuilt as a partitioned one with every row carried over
(``monitor.timepartitions.convert_to_partitioned``): primary key ``(id, timestamp)``, the report
hash unique with its timestamp as ``(timestamp, report_hash)`` (which also serves time ranges,
so the index of the timestamp alone goes), the other indexes as they were, partitions for each
day present and the next two. On SQLite (the demo) only the keys and that index change.
Reversible on both.
"""
from django.db import migrations, models
from django.utils import timezone

from monitor import timepartitions

TABLE = "monitor_event"


def partition(apps, schema_editor):
    timepartitions.convert_to_partitioned(
        schema_editor, TABLE, "timestamp", primary_key=["id", "timestamp"],
        unique={"event_time_report_hash": ["timestamp", "report_hash"]}, now=timezone.now())


def unpartition(apps, schema_editor):
    timepartitions.convert_to_plain(schema_editor, TABLE, primary_key=["id"],
                                    unique={"monitor_event_report_hash_key": ["report_hash"]})


class Migration(migrations.Migration):

    dependencies = [
        ('monitor', '0015_oncall_status_since_silence_until_resolved'),
    ]

    operations = [
        migrations.RemoveIndex(model_name='event', name='event_time'),
        timepartitions.UnlessPostgreSQL(migrations.AlterField(
            model_name='event',
            name='report_hash',
            field=models.UUIDField(help_text='blake2b-128 of (event_id, stage, service, consumer_group, timestamp)'),
        )),
        timepartitions.UnlessPostgreSQL(migrations.AddConstraint(
            model_name='event',
            constraint=models.UniqueConstraint(fields=('timestamp', 'report_hash'), name='event_time_report_hash'),
        )),
        migrations.RunPython(partition, unpartition),
    ]
