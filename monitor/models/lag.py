"""Lag time series: raw per-partition samples, per group/topic aggregates and rollups,
the per-partition log-end history used for time lag, poll cycles and lifecycle events."""
from __future__ import annotations

from django.db import models

from monitor.choices import GroupEventKind, TimeLagMethod
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


class LogOffsetSample(models.Model):
    """Log-start and log-end offsets of one partition at one poll: the table time lag is
    interpolated from (survives restarts) and the source of produce/retention rates."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="+")
    topic = models.CharField(max_length=255)
    partition = models.IntegerField()
    polled_at = models.DateTimeField()
    log_start_offset = models.BigIntegerField(null=True)
    log_end_offset = models.BigIntegerField()

    class Meta:
        indexes = [
            models.Index(fields=["cluster", "topic", "partition", "polled_at"], name="logoffset_tp_time"),
            # Time lag seeks the points around a committed offset (the log end only grows).
            models.Index(fields=["cluster", "topic", "partition", "log_end_offset", "polled_at"],
                         name="logoffset_tp_end"),
            models.Index(fields=["polled_at"], name="logoffset_time"),
        ]


class PartitionLagSample(models.Model):
    """Raw lag of one group on one partition at one poll."""

    # A cycle writes tens of thousands of these rows, so the group gets no index of its own
    # (partlag_group_time below starts with it) and no database-level constraint: checking
    # it costs one lookup per row at commit, about a third of writing the samples. Only the
    # poller writes these rows, for groups it holds in the same transaction, and deleting a
    # group still deletes its samples (Django cascades on_delete itself).
    group = models.ForeignKey(ConsumerGroup, on_delete=models.CASCADE, related_name="partition_samples",
                              db_index=False, db_constraint=False)
    topic = models.CharField(max_length=255)
    partition = models.IntegerField()
    polled_at = models.DateTimeField()
    committed_offset = models.BigIntegerField(null=True)
    log_start_offset = models.BigIntegerField(null=True)
    log_end_offset = models.BigIntegerField(null=True)
    lag = models.BigIntegerField(null=True, help_text="null when unknown, never 0 for unknown")
    time_lag_seconds = models.FloatField(null=True)
    time_lag_method = models.CharField(max_length=24, choices=TimeLagMethod.choices)
    time_lag_reason = models.CharField(max_length=200, blank=True)
    stuck_since = models.DateTimeField(
        null=True, help_text="Start of the current stretch with this committed offset while lagging")
    stalled = models.BooleanField(default=False, help_text="Stuck for at least the status window")

    class Meta:
        indexes = [
            # Every read is by group and time (a partition's series too); an index on
            # (group, topic, partition, time) cost 40% of writing a cycle's samples.
            models.Index(fields=["group", "polled_at"], name="partlag_group_time"),
            models.Index(fields=["polled_at"], name="partlag_time"),
        ]


class TopicLagSample(models.Model):
    """Lag of one group on one topic: per poll (resolution 0) or a rollup bucket
    (resolution = bucket seconds, values are the bucket's maximum)."""

    group = models.ForeignKey(ConsumerGroup, on_delete=models.CASCADE, related_name="topic_samples")
    topic = models.CharField(max_length=255)
    resolution = models.IntegerField(default=0)
    polled_at = models.DateTimeField()
    lag = models.BigIntegerField(null=True)
    time_lag_seconds = models.FloatField(null=True)
    partitions = models.IntegerField(default=0)
    unknown_partitions = models.IntegerField(default=0)
    partial_partitions = models.IntegerField(
        default=0, help_text="Of the unknown ones: partitions with a commit whose log offsets could not be read "
                             "(the totals are partial); the rest have no commit")
    # Per poll (resolution 0), summed over the topic's partitions: the status window reads
    # a group's totals per poll from these rows instead of summing every partition sample.
    committed_offset_total = models.BigIntegerField(null=True)
    log_end_offset_total = models.BigIntegerField(null=True)

    class Meta:
        indexes = [
            models.Index(fields=["group", "topic", "resolution", "polled_at"], name="topiclag_gtr_time"),
            models.Index(fields=["resolution", "polled_at"], name="topiclag_res_time"),
        ]


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
