"""Pathways (the routes traces take) and business transactions, kept up to date
incrementally from the events table by :mod:`monitor.pathways.updater`."""
from __future__ import annotations

from django.db import models

from monitor.choices import TransactionKey, TransactionState


class Pathway(models.Model):
    """One distinct route: services and topics in the order a trace reached them."""

    fingerprint = models.CharField(max_length=32, unique=True)
    services = models.JSONField(default=list)
    topics = models.JSONField(default=list)
    label = models.CharField(max_length=1000, help_text="services joined by arrows")
    first_seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.label


class TracePathway(models.Model):
    """One trace's route and latencies. The latency's histogram bucket is stored, so the
    database sums per-minute histograms that merge exactly over any range."""

    trace_id = models.CharField(max_length=32, unique=True)
    pathway = models.ForeignKey(Pathway, on_delete=models.CASCADE, related_name="traces")
    origin_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    latency_seconds = models.FloatField()
    latency_bucket = models.SmallIntegerField()
    hop_buckets = models.JSONField(default=list, help_text="histogram bucket of each service's latency from the origin")

    class Meta:
        indexes = [models.Index(fields=["origin_at", "pathway"], name="tracepathway_origin")]


class BusinessFlow(models.Model):
    """A declared business transaction: which event types start, complete or compensate one."""

    name = models.CharField(max_length=200, unique=True)
    start_types = models.JSONField(default=list, help_text="event types that start one")
    success_types = models.JSONField(default=list, help_text="event types that complete one")
    compensated_types = models.JSONField(default=list, blank=True, help_text="event types that end one by compensation")
    key = models.CharField(max_length=20, choices=TransactionKey.choices, default=TransactionKey.KEY,
                           help_text="what identifies one transaction")
    slo_seconds = models.PositiveIntegerField(default=300, help_text="older than this without an end: stuck")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BusinessTransaction(models.Model):
    """One transaction of a flow. ``state`` is in flight, completed or compensated; an
    in-flight one older than its flow's SLO is reported as stuck when read."""

    flow = models.ForeignKey(BusinessFlow, on_delete=models.CASCADE, related_name="transactions")
    key = models.CharField(max_length=255)
    trace_id = models.CharField(max_length=32, blank=True)
    state = models.CharField(max_length=20, choices=TransactionState.choices, default=TransactionState.IN_FLIGHT)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    last_event_type = models.CharField(max_length=200, blank=True)
    last_service = models.CharField(max_length=200, blank=True)
    last_event_at = models.DateTimeField()
    compensations = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["flow", "key"], name="uniq_transaction_key")]
        indexes = [models.Index(fields=["flow", "state", "started_at"], name="transaction_state")]


class ProcessingCursor(models.Model):
    """How far an incremental reader of the events table has safely read (an event id)."""

    name = models.CharField(max_length=50, unique=True)
    position = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)
