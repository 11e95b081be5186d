"""Notification channels: where alerts go."""
from __future__ import annotations

from django.db import models

from monitor.choices import ChannelKind


class Channel(models.Model):
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=ChannelKind.choices)
    webhook_url = models.CharField(
        max_length=1000, blank=True, help_text="Slack incoming webhook or generic webhook URL (secret)"
    )
    email_to = models.TextField(blank=True, help_text="Recipients, comma or newline separated")
    enabled = models.BooleanField(default=True)
    failing = models.BooleanField(default=False, help_text="Set after a permanent delivery error")
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def recipients(self) -> list[str]:
        return [r.strip() for r in self.email_to.replace("\n", ",").split(",") if r.strip()]
