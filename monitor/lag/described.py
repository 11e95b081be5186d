"""Which listed groups a cycle describes (members and their assignments), and the
remembered description it uses for the others.

Describing every group every poll (DescribeGroups, ConsumerGroupDescribe) makes the
coordinator answer for all of a cluster's members each cycle, beside the offset fetch:
for 10,000 groups a tenth of the cycle's broker time, and as much of the poller's again
to read the answers. Between rebalances the answer does not change, and a rebalance shows
in the group's listed state. So this process remembers each group's last description with
the state the listing gave then, and a cycle describes a group again when

- the listing gives it another state (a rebalance, a group left Empty or Dead) or
  protocol than then,
- its last description failed or told nothing (unknown is never carried over),
- its last poll judged it anything but ok or idle (a stalled, stopped or growing group's
  reason names the owners of its lagging partitions: those stay fresh),
- or between half and all of ``MONITOR_MEMBERSHIP_REFRESH_SECONDS`` have passed since
  (0: every poll), the share fixed per group, so that a big cluster's groups, first
  described in one cycle, are not all described again in one later cycle.

A healthy group whose members changed without its listed state showing it (a rebalance
completed between two polls) shows its previous members until then. Another process
describes whatever it has not described itself.
"""
from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from django.conf import settings

from monitor.choices import GroupStatus
from monitor.kafka.adapter import GroupListing, GroupMembership
from monitor.models import ConsumerGroup

CALM = frozenset({GroupStatus.OK, GroupStatus.IDLE})
"""Statuses whose groups' descriptions may be carried over to the next poll."""


@dataclass(frozen=True)
class _Described:
    at: float
    """time.monotonic() of the description."""
    listing: GroupListing
    """How the group was listed then (state, protocol)."""
    membership: GroupMembership


class Descriptions:
    """Per cluster id and group id, the last description this process read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_cluster: dict[int, dict[str, _Described]] = {}

    def due(self, cluster_id: int, listings: Iterable[GroupListing], whole_cluster: bool = True,
            now: float | None = None) -> tuple[list[GroupListing], dict[str, GroupMembership]]:
        """The listings to describe in this cycle, and the remembered descriptions of the
        others. With ``whole_cluster``, groups no longer listed are forgotten."""
        now = time.monotonic() if now is None else now
        refresh = settings.MONITOR_MEMBERSHIP_REFRESH_SECONDS
        listings = list(listings)
        with self._lock:
            known = self._by_cluster.setdefault(cluster_id, {})
            if whole_cluster:
                listed = {g.group_id for g in listings}
                for group_id in [g for g in known if g not in listed]:
                    del known[group_id]
            found = {g.group_id: known.get(g.group_id) for g in listings}
        describe, carried = [], {}
        for listing in listings:
            last = found[listing.group_id]
            if last is None or refresh <= 0 or now - last.at >= refresh * _share(listing.group_id) \
                    or (last.listing.state, last.listing.protocol) != (listing.state, listing.protocol):
                describe.append(listing)
            else:
                carried[listing.group_id] = last.membership
        return describe, carried

    def remember(self, cluster_id: int, described: Iterable[GroupListing], memberships: dict[str, GroupMembership],
                 now: float | None = None) -> None:
        """What this cycle's descriptions said; only those that told who is there."""
        now = time.monotonic() if now is None else now
        with self._lock:
            known = self._by_cluster.setdefault(cluster_id, {})
            for listing in described:
                membership = memberships.get(listing.group_id)
                if membership is not None and membership.known:
                    known[listing.group_id] = _Described(now, listing, membership)
                else:
                    known.pop(listing.group_id, None)

    def judged(self, cluster_id: int, groups: Iterable[ConsumerGroup]) -> None:
        """After a cycle: groups it judged anything but calm are described again at the
        next poll (their reasons name partition owners)."""
        self.forget(cluster_id, [g.name for g in groups if g.status not in CALM])

    def forget(self, cluster_id: int, group_ids: Collection[str]) -> None:
        """These groups are described again at the next poll."""
        if not group_ids:
            return
        with self._lock:
            known = self._by_cluster.get(cluster_id, {})
            for group_id in group_ids:
                known.pop(group_id, None)

    def clear(self) -> None:
        with self._lock:
            self._by_cluster.clear()


def _share(group_id: str) -> float:
    """The group's own share of the refresh period: in (0.5, 1], the same every time."""
    return 1.0 - (zlib.crc32(group_id.encode("utf-8", "surrogatepass")) % 1024) / 2048


DESCRIPTIONS = Descriptions()
