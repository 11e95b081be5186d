"""Model signals of the alerting area: deleting a rule (admin, shell, a queryset) first
resolves its open alerts with a message that says so, and keeps its queued
notifications (an email digest may carry other rules' alerts)."""
from __future__ import annotations

from typing import Any

from django.db.models.signals import pre_delete
from django.dispatch import receiver

from monitor.models import AlertRule


@receiver(pre_delete, sender=AlertRule, dispatch_uid="monitor.alerts.close_deleted_rule")
def close_deleted_rule(sender: type[AlertRule], instance: AlertRule, **_kwargs: Any) -> None:
    from monitor.alerts.engine import RULE_DELETED, close_rule

    close_rule(instance, RULE_DELETED)
