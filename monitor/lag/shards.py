"""Which shard of a cluster's poll owns which consumer group.

A cluster with more groups than ``MONITOR_POLL_SHARD_GROUPS`` is polled by several
Celery tasks, one per shard, each reading and recording only the groups it owns. The
owner of a group is a stable hash of its id modulo the shard count, so every listed group
is in exactly one shard, whichever worker runs it and whatever else the cluster lists.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

from django.conf import settings

from monitor.models import ConsumerGroup


def shard_of(group_id: str, shards: int) -> int:
    """The shard (0 .. shards - 1) that owns this group id; never raises on any id."""
    if shards <= 1:
        return 0
    return zlib.crc32(group_id.encode("utf-8", "surrogatepass")) % shards


@dataclass(frozen=True)
class Shard:
    """One part of a sharded cycle: shard ``index`` of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count} does not exist")

    def owns(self, group_id: str) -> bool:
        return shard_of(group_id, self.count) == self.index

    @property
    def label(self) -> str:
        return f"shard {self.index + 1}/{self.count}"


def shard_count(groups: int, per_shard: int) -> int:
    """How many shards ``groups`` groups need with at most ``per_shard`` each (0: never shard)."""
    if per_shard <= 0 or groups <= per_shard:
        return 1
    return math.ceil(groups / per_shard)


def planned_shards(cluster_id: int) -> int:
    """The shard count of the cluster's next cycle, from the groups its last cycle saw
    (a cluster's first cycle is never sharded: it has no groups stored yet)."""
    per_shard = settings.MONITOR_POLL_SHARD_GROUPS
    if per_shard <= 0:
        return 1
    known = ConsumerGroup.objects.filter(cluster_id=cluster_id, gone_at__isnull=True).count()
    return shard_count(known, per_shard)
