"""Event metadata reported by services, the registry of services/types, expected
subscriptions and detector findings."""
from __future__ import annotations

from django.db import models

from monitor import timepartitions
from monitor.choices import FindingKind, Stage


class Service(models.Model):
    name = models.CharField(max_length=200, unique=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class EventType(models.Model):
    name = models.CharField(max_length=200, unique=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Event(models.Model):
    """One report: an event at one stage, by one service. Compact by design.

    On PostgreSQL the table is range-partitioned by ``timestamp``, one partition a UTC day
    (``monitor.timepartitions``; retention drops whole days). PostgreSQL requires the
    partition column in every unique key, so there the primary key is ``(id, timestamp)``
    and the report hash is unique with its timestamp (the hash covers the timestamp, so a
    retried report still collides exactly); ``id`` stays the model's primary key: it is
    unique on its own, drawn from one identity sequence. The unique key leads with the
    timestamp: inserts of recent reports touch only the index's right edge (a hash-first key
    scatters them over the whole index), and it serves time-range scans, so no index of the
    timestamp alone is needed."""

    event_id = models.CharField(max_length=200)
    type = models.CharField(max_length=200)
    service = models.CharField(max_length=200)
    stage = models.CharField(max_length=20, choices=Stage.choices)
    timestamp = models.DateTimeField()
    received_at = models.DateTimeField()
    topic = models.CharField(max_length=255, blank=True)
    partition = models.IntegerField(null=True)
    offset = models.BigIntegerField(null=True)
    key = models.CharField(max_length=255, blank=True)
    consumer_group = models.CharField(max_length=255, blank=True)
    schema_version = models.IntegerField(null=True)
    trace_id = models.CharField(max_length=32, blank=True)
    span_id = models.CharField(max_length=16, blank=True)
    parent_span_id = models.CharField(max_length=16, blank=True)
    attributes = models.JSONField(null=True, blank=True)
    # 16 bytes as a uuid: compact, and no extra LIKE index as a unique varchar would get.
    report_hash = models.UUIDField(
        help_text="blake2b-128 of (event_id, stage, service, consumer_group, timestamp)"
    )

    class Meta:
        constraints = [
            # The ON CONFLICT target of monitor/events/store.py.
            models.UniqueConstraint(fields=["timestamp", "report_hash"], name="event_time_report_hash"),
        ]
        indexes = [
            models.Index(fields=["trace_id"], name="event_trace"),
            models.Index(fields=["event_id"], name="event_event_id"),
            models.Index(fields=["topic", "timestamp"], name="event_topic_time"),
            models.Index(fields=["key", "timestamp"], name="event_key_time"),
            models.Index(fields=["stage", "timestamp"], name="event_stage_time"),
        ]


timepartitions.register(Event._meta.db_table, "timestamp")


class ExpectedSubscription(models.Model):
    """Topic -> consumer group that must consume its events (learned, editable)."""

    topic = models.CharField(max_length=255)
    consumer_group = models.CharField(max_length=255)
    learned = models.BooleanField(default=True)
    enabled = models.BooleanField(default=True)
    first_seen_at = models.DateTimeField()

    class Meta:
        ordering = ["topic", "consumer_group"]
        constraints = [
            models.UniqueConstraint(fields=["topic", "consumer_group"], name="uniq_expected_subscription")
        ]

    def __str__(self) -> str:
        return f"{self.topic} -> {self.consumer_group}"


class Finding(models.Model):
    """What a detector found, with examples that link to the trace view."""

    kind = models.CharField(max_length=30, choices=FindingKind.choices)
    fingerprint = models.CharField(max_length=64, unique=True, help_text="Stable identity: one row per issue")
    service = models.CharField(max_length=200, blank=True)
    topic = models.CharField(max_length=255, blank=True)
    consumer_group = models.CharField(max_length=255, blank=True)
    event_type = models.CharField(max_length=200, blank=True)
    value = models.FloatField(default=0)
    summary = models.CharField(max_length=500)
    examples = models.JSONField(default=list, blank=True, help_text="[{event_id, trace_id}]")
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        ordering = ["-last_seen_at"]
        indexes = [models.Index(fields=["kind", "-last_seen_at"], name="finding_kind_time")]
