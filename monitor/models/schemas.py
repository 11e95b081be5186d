"""What a cluster's Schema Registry holds and which schema ids the header tap saw."""
from __future__ import annotations

from django.db import models

from monitor.models.clusters import Cluster


class SchemaSubject(models.Model):
    """One registry subject as of the last sync: its compatibility level and versions."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="schema_subjects")
    subject = models.CharField(max_length=255)
    compatibility = models.CharField(max_length=40, blank=True, help_text="Effective level (subject, else global)")
    versions = models.JSONField(default=list, blank=True, help_text="[{version, schema_id}], oldest first")
    synced_at = models.DateTimeField()

    class Meta:
        ordering = ["cluster__name", "subject"]
        constraints = [models.UniqueConstraint(fields=["cluster", "subject"], name="uniq_schema_subject")]

    def __str__(self) -> str:
        return f"{self.cluster.name}/{self.subject}"


class TopicSchemaId(models.Model):
    """A schema id the header tap read from messages of a topic (Confluent wire format)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="topic_schema_ids")
    topic = models.CharField(max_length=255)
    schema_id = models.IntegerField()
    messages = models.BigIntegerField(default=0)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        ordering = ["cluster__name", "topic", "schema_id"]
        constraints = [models.UniqueConstraint(fields=["cluster", "topic", "schema_id"], name="uniq_topic_schema_id")]
