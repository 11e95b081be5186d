"""Kafka clusters and what the poller has seen on them: consumer groups and topics."""
from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from monitor.choices import ClusterStatus, GroupProtocol, GroupStatus, SaslMechanism, SecurityProtocol

name_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*$", "Use letters, digits, '.', '_' and '-' (no spaces or slashes)."
)


def split_patterns(text: str) -> list[str]:
    """Group include/exclude patterns: globs separated by commas or new lines."""
    return [p.strip() for p in text.replace("\n", ",").split(",") if p.strip()]


def validate_bootstrap(value: str) -> None:
    servers = [s.strip() for s in value.split(",") if s.strip()]
    if not servers:
        raise ValidationError("Give at least one host:port.")
    for server in servers:
        host, colon, port = server.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValidationError(f"{server!r} is not host:port.")


def validate_topic_list(value: str) -> None:
    for topic in split_patterns(value):
        if len(topic) > 249 or not all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in topic):
            raise ValidationError(f"{topic!r} is not a Kafka topic name (letters, digits, '.', '_', '-').")


class Cluster(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    bootstrap_servers = models.CharField(
        max_length=1000, validators=[validate_bootstrap], help_text="host:port, comma-separated"
    )
    security_protocol = models.CharField(
        max_length=20, choices=SecurityProtocol.choices, default=SecurityProtocol.PLAINTEXT
    )
    sasl_mechanism = models.CharField(
        max_length=20, choices=SaslMechanism.choices, default=SaslMechanism.NONE, blank=True
    )
    sasl_username = models.CharField(max_length=255, blank=True)
    sasl_password = models.CharField(max_length=1000, blank=True, help_text="Write-only; never shown.")
    ssl_cafile = models.CharField(max_length=1000, blank=True, help_text="Path to a CA bundle on the workers")
    ssl_certfile = models.CharField(max_length=1000, blank=True,
                                    help_text="mTLS: path to the client certificate (PEM) on the workers")
    ssl_keyfile = models.CharField(max_length=1000, blank=True,
                                   help_text="mTLS: path to the client certificate's private key (PEM) on the workers")
    oauth_token_url = models.CharField(max_length=1000, blank=True,
                                       help_text="OAUTHBEARER: the OIDC token endpoint (client-credentials grant)")
    oauth_client_id = models.CharField(max_length=255, blank=True)
    oauth_client_secret = models.CharField(max_length=1000, blank=True, help_text="Write-only; never shown.")
    oauth_scope = models.CharField(max_length=500, blank=True, help_text="OAUTHBEARER: space-separated scopes")
    aws_region = models.CharField(max_length=40, blank=True,
                                  help_text="AWS_MSK_IAM: the cluster's region; credentials from the environment")
    sasl_kerberos_service_name = models.CharField(max_length=100, blank=True, default="kafka",
                                                  help_text="GSSAPI: the brokers' Kerberos service name")
    schema_registry_url = models.CharField(max_length=1000, blank=True,
                                           help_text="Confluent-compatible Schema Registry (optional)")
    schema_registry_username = models.CharField(max_length=255, blank=True)
    schema_registry_password = models.CharField(max_length=1000, blank=True, help_text="Write-only; never shown.")
    poll_interval_seconds = models.PositiveIntegerField(default=30, validators=[MinValueValidator(5)])
    group_include = models.TextField(blank=True, default="*", help_text="Globs, comma or newline separated")
    group_exclude = models.TextField(blank=True, default="", help_text="Globs, comma or newline separated")
    enabled = models.BooleanField(default=True)
    # Header tap (monitor/events/tap.py): records event metadata from message headers.
    tap_enabled = models.BooleanField(default=False, help_text="Sample the tap topics' message headers")
    tap_topics = models.TextField(blank=True, default="", validators=[validate_topic_list],
                                  help_text="Topics to sample, comma or newline separated")
    tap_group = models.CharField(max_length=255, default="kafka-monitor-header-tap",
                                 help_text="Consumer group the tap reads as (its own offsets)")
    tap_sample_percent = models.PositiveSmallIntegerField(
        default=100, validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Share of messages recorded (by offset, deterministic)")

    status = models.CharField(max_length=20, choices=ClusterStatus.choices, default=ClusterStatus.UNKNOWN)
    last_poll_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def bootstrap_list(self) -> list[str]:
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    def watches_group(self, group: str) -> bool:
        return self.group_filter()(group)

    def group_filter(self) -> Callable[[str], bool]:
        """:meth:`watches_group` with the globs compiled once: a poll asks it of every
        listed group, tens of thousands on a large cluster. Case-sensitive, like
        ``fnmatch.fnmatchcase``."""
        include = _compiled_globs(split_patterns(self.group_include) or ["*"])
        exclude = _compiled_globs(split_patterns(self.group_exclude))

        def watches(group: str) -> bool:
            return include is not None and include.match(group) is not None and (
                exclude is None or exclude.match(group) is None)

        return watches


def _compiled_globs(patterns: list[str]) -> re.Pattern[str] | None:
    """One regular expression matching what any of the globs matches (None: no globs)."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


class ConsumerGroup(models.Model):
    """A consumer group with its latest snapshot (denormalised for the overview)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="groups")
    name = models.CharField(max_length=255)
    state = models.CharField(max_length=40, blank=True, help_text="Broker-reported group state")
    members = models.IntegerField(null=True, blank=True)
    protocol = models.CharField(max_length=10, choices=GroupProtocol.choices, default=GroupProtocol.UNKNOWN)
    member_details = models.JSONField(
        null=True, blank=True,
        help_text="Members as the coordinator described them at the last poll: "
                  "[{member_id, client_id, host, partitions: [[topic, partition], ...]}]; null = not told")
    status = models.CharField(max_length=20, choices=GroupStatus.choices, default=GroupStatus.UNKNOWN)
    status_reason = models.CharField(max_length=500, blank=True)
    status_since = models.DateTimeField(null=True, blank=True, help_text="When the status last changed")
    total_lag = models.BigIntegerField(null=True, blank=True)
    max_time_lag_seconds = models.FloatField(null=True, blank=True)
    topics = models.JSONField(default=list, blank=True)
    lost_messages = models.BigIntegerField(default=0)
    catch_up_seconds = models.FloatField(null=True, blank=True, help_text="Forecast; null = not catching up or unknown")
    catch_up_never = models.BooleanField(
        default=False, help_text="The rates are known and the group is not gaining on the producers")
    retention_risk_seconds = models.FloatField(
        null=True, blank=True, help_text="Forecast: time until retention deletes unread messages"
    )
    retention_risk_method = models.CharField(
        max_length=20, blank=True, help_text="How the retention forecast was made: retention_ms, log_start_rate")
    partial_partitions = models.IntegerField(
        default=0, help_text="Partitions with a commit whose lag is unknown in the latest poll: the totals leave "
                             "them out and are partial")
    stalled_partitions = models.IntegerField(
        default=0, help_text="Partitions whose committed offset has not moved over the window while they lag")
    lost_counted_to = models.JSONField(
        default=dict, blank=True,
        help_text='Per "topic/partition": the log start up to which deleted messages were already counted')
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    gone_at = models.DateTimeField(null=True, blank=True)
    partition_state = models.BinaryField(
        null=True, editable=False,
        help_text="The partitions of the latest poll, packed (monitor.lag.samples): offsets, lag, time lag, "
                  "stuck since, the window's highest committed offset")
    last_sample_at = models.DateTimeField(null=True, blank=True)
    unread_since = models.DateTimeField(
        null=True, blank=True,
        help_text="Listed by the cluster, but its committed offsets could not be read since then (status_reason "
                  "says why): its figures are unknown, its partition detail is the poll of last_sample_at")

    class Meta:
        ordering = ["cluster__name", "name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="uniq_group_per_cluster")]

    def __str__(self) -> str:
        return f"{self.cluster.name}/{self.name}"


class Topic(models.Model):
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="topics")
    name = models.CharField(max_length=255)
    partitions = models.IntegerField(default=0)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        ordering = ["cluster__name", "name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="uniq_topic_per_cluster")]

    def __str__(self) -> str:
        return f"{self.cluster.name}/{self.name}"
