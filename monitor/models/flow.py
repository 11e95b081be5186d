"""Rollups of the flow graph: the events table summed per minute (and per hour) and edge."""
from __future__ import annotations

from django.db import models


class FlowEdgeRollup(models.Model):
    """The reports of one (service, topic, consumer group) in one period: a count per
    stage and the publish-to-receipt latencies of its first receipts as counts per bucket
    of :mod:`monitor.pathways.histogram` (``{"bucket": count}``), so sums over any set of
    periods are exact. ``period_seconds`` is 60 (a minute) or 3600 (an hour: the sum of
    its minutes, so a week reads 168 rows per edge instead of 10,080).

    The service publishes to the topic (an empty ``consumer_group`` with publications)
    or consumes it as the group; :func:`monitor.flow.queries.edge_aggregates` decides,
    from the summed counts, exactly as it does from raw events."""

    period_seconds = models.PositiveIntegerField()
    period_start = models.DateTimeField()
    service = models.CharField(max_length=200)
    topic = models.CharField(max_length=255)
    consumer_group = models.CharField(max_length=255, blank=True)
    published = models.PositiveIntegerField(default=0)
    consumed = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    dead_lettered = models.PositiveIntegerField(default=0)
    latency_buckets = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["period_seconds", "period_start", "service", "topic", "consumer_group"],
                                    name="uniq_flow_edge_rollup"),
        ]
