"""Lag time series (packed frames of samples, polled and rolled up), poll cycles and
lifecycle events."""
from __future__ import annotations

from django.db import models

from monitor import timepartitions
from monitor.choices import GroupEventKind
from monitor.models.clusters import Cluster, ConsumerGroup


class PollRun(models.Model):
    """One poll cycle of one cluster."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="poll_runs")
    started_at = models.DateTimeField()
    duration_seconds = models.FloatField()
    requests = models.IntegerField(default=0)
    groups = models.IntegerField(default=0)
    partitions = models.IntegerField(default=0)
    ok = models.BooleanField(default=True)
    error = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["cluster", "-started_at"], name="pollrun_cluster_time")]


class FrameKind(models.IntegerChoices):
    TOTALS = 1, "topic totals"
    PARTITIONS = 2, "partition detail"
    LOG_OFFSETS = 3, "log offsets"


class _Frame(models.Model):
    """The samples of one kind from one poll of a cluster (one bucket of its groups),
    packed by :mod:`monitor.lag.frames`: a few bytes a sample instead of a row each."""

    # No database-level constraint and no index of its own: frames are only read by
    # cluster and time (the index below), and deleting a cluster deletes them (Django
    # cascades on_delete itself).
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="+", db_index=False,
                                db_constraint=False)
    kind = models.SmallIntegerField(choices=FrameKind.choices)
    bucket = models.SmallIntegerField(default=0, help_text="width + group id modulo width, for a poll split into "
                                                           "width buckets (0 for log offsets)")
    polled_at = models.DateTimeField()
    payload = models.BinaryField()

    class Meta:
        abstract = True


class LagFrame(_Frame):
    """Samples as polled: topic totals and log offsets of every poll, partition detail every
    MONITOR_PARTITION_DETAIL_SECONDS. Kept MONITOR_RAW_RETENTION_HOURS; partitioned by day
    on PostgreSQL (retention drops whole days)."""

    class Meta:
        indexes = [models.Index(fields=["cluster", "kind", "bucket", "polled_at"], name="lagframe_key")]


class LagRollup(_Frame):
    """Frames of ``resolution`` seconds made from the polled ones: topic totals (each value
    the bucket's maximum, the offsets its last) and log offsets (the bucket's last). Kept
    MONITOR_ROLLUP_RETENTION_DAYS; partitioned by day on PostgreSQL."""

    resolution = models.IntegerField()

    class Meta:
        indexes = [models.Index(fields=["cluster", "kind", "bucket", "polled_at"], name="lagrollup_key")]


timepartitions.register(LagFrame._meta.db_table, "polled_at")
timepartitions.register(LagRollup._meta.db_table, "polled_at")


class GroupEvent(models.Model):
    """Lifecycle of groups as the poller saw it; marked on the charts."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="group_events")
    group = models.ForeignKey(ConsumerGroup, on_delete=models.CASCADE, null=True, related_name="events")
    kind = models.CharField(max_length=30, choices=GroupEventKind.choices)
    topic = models.CharField(max_length=255, blank=True)
    partition = models.IntegerField(null=True, blank=True)
    at = models.DateTimeField()
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["group", "at"], name="groupevent_group_time")]
