"""Template filters: ``{{ seconds|duration }}``, ``{{ lag|number }}``, ``{{ when|ago }}``, ``{{ when|utc }}``."""
from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

from monitor import humanize

register = template.Library()


@register.filter
def duration(seconds: float | None) -> str:
    return humanize.duration(seconds)


@register.filter
def number(value: float | int | None) -> str:
    return humanize.count(value)


@register.filter
def compact(value: float | int | None) -> str:
    return humanize.compact(value)


@register.filter
def ago(value: datetime | None) -> str:
    return humanize.ago(value, timezone.now())


@register.filter
def utc(value: datetime | None) -> str:
    return humanize.utc(value)


@register.filter
def iso(value: datetime | None) -> str:
    """Machine-readable time for <time datetime> and sorting."""
    return value.isoformat() if value else ""
