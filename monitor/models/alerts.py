"""Alert rules, alerts (one open per rule and subject), the notification outbox,
delivery attempts, silences and maintenance windows."""
from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from monitor.choices import AlertState, NotificationKind, Operator, Severity
from monitor.models.channels import Channel


class AlertRule(models.Model):
    name = models.CharField(max_length=200, unique=True)
    cluster = models.CharField(max_length=100, default="*", help_text="Cluster name glob")
    group = models.CharField(max_length=255, default="*", help_text="Consumer group glob")
    topic = models.CharField(max_length=255, default="*", help_text="Topic glob")
    metric = models.CharField(max_length=60, help_text="See the metric registry")
    op = models.CharField(max_length=2, choices=Operator.choices, default=Operator.GT)
    threshold = models.FloatField()
    for_seconds = models.PositiveIntegerField(default=0)
    keep_firing_seconds = models.PositiveIntegerField(default=0)
    repeat_seconds = models.PositiveIntegerField(default=0)
    severity = models.CharField(max_length=20, choices=Severity.choices, default=Severity.WARNING)
    channels = models.ManyToManyField(Channel, blank=True, related_name="rules")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Alert(models.Model):
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    subject = models.CharField(max_length=600, help_text="cluster/group/topic")
    cluster = models.CharField(max_length=100, blank=True)
    group = models.CharField(max_length=255, blank=True)
    topic = models.CharField(max_length=255, blank=True)
    state = models.CharField(max_length=20, choices=AlertState.choices)
    value = models.FloatField(null=True)
    threshold = models.FloatField()
    no_data = models.BooleanField(default=False, help_text="The subject stopped reporting")
    detail = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(help_text="When the condition began to hold")
    fired_at = models.DateTimeField(null=True, blank=True)
    clear_since = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField()
    last_notified_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)
    acknowledgement_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "subject"],
                condition=Q(state__in=["pending", "firing"]),
                name="uniq_open_alert_per_rule_subject",
            )
        ]
        indexes = [models.Index(fields=["state", "-started_at"], name="alert_state_time")]

    def __str__(self) -> str:
        return f"{self.rule.name} [{self.subject}] {self.state}"

    @property
    def subject_label(self) -> str:
        """``prod / billing / payments`` without the empty parts (event metrics have no cluster)."""
        return " / ".join(part for part in (self.cluster, self.group, self.topic) if part) or self.subject


class Notification(models.Model):
    """Outbox row: written in the same transaction as the alert's state change.

    ``idempotency_key`` is sent with every attempt (HTTP header ``Idempotency-Key``,
    webhook body, Slack metadata, email Message-ID): delivery is at-least-once, and a
    receiver that sees the same key twice got the same message twice. A digest outlives
    the alert it was first written for (``alert`` becomes null when that rule is deleted)."""

    alert = models.ForeignKey(Alert, on_delete=models.SET_NULL, null=True, blank=True, related_name="notifications")
    idempotency_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=20, choices=NotificationKind.choices)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    due_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True, help_text="Gave up: permanent error")
    attempts = models.IntegerField(default=0)
    last_status_code = models.IntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    muted = models.BooleanField(default=False, help_text="Silenced or in maintenance: recorded, not sent")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["due_at"],
                condition=Q(sent_at=None, failed_at=None),
                name="notification_unsent_due",
            )
        ]


class DeliveryAttempt(models.Model):
    """One try to send. Written (committed) before the send starts, completed after it:
    an attempt without ``finished_at`` is one whose worker died or lost its claim
    mid-send, so the receiver may or may not have got it."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField(help_text="When the send started")
    finished_at = models.DateTimeField(null=True, blank=True, help_text="Empty: the attempt never finished")
    status_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    duration_seconds = models.FloatField()
    ok = models.BooleanField(default=False)

    class Meta:
        ordering = ["-at"]


class Silence(models.Model):
    """Mutes notifications for matching subjects until ``ends_at``; alerts still record."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, null=True, blank=True, related_name="silences")
    cluster = models.CharField(max_length=100, default="*")
    group = models.CharField(max_length=255, default="*")
    topic = models.CharField(max_length=255, default="*")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.TextField()
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    until_resolved = models.ForeignKey(
        Alert, on_delete=models.CASCADE, null=True, blank=True, related_name="silences",
        help_text="Set: the silence ends when this alert resolves (ends_at is only a backstop)")

    class Meta:
        ordering = ["-ends_at"]


class MaintenanceWindow(models.Model):
    """A recurring weekly window (UTC) during which matching notifications are muted."""

    name = models.CharField(max_length=200)
    cluster = models.CharField(max_length=100, default="*")
    group = models.CharField(max_length=255, default="*")
    topic = models.CharField(max_length=255, default="*")
    weekdays = models.CharField(max_length=20, default="0,1,2,3,4,5,6", help_text="0=Monday ... 6=Sunday")
    start_time = models.TimeField(help_text="UTC")
    duration_minutes = models.PositiveIntegerField()
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name




class Heartbeat(models.Model):
    """The last sign of life of a background component ("scheduler", "worker").

    The scheduler's row doubles as its lock: ``owner`` is the beat process that holds
    it; another beat takes over only when the row is older than the lock's lease."""

    component = models.CharField(max_length=40, primary_key=True)
    at = models.DateTimeField()
    owner = models.CharField(max_length=200, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"{self.component} at {self.at:%Y-%m-%d %H:%M:%S}"
