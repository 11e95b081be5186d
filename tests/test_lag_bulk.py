"""The poll's bulk writes (monitor/lag/bulk.py) on real PostgreSQL: rows inserted by COPY
and updated through the staging table hold exactly what was written, field by field."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from monitor.choices import GroupStatus
from monitor.lag.bulk import insert_rows, update_rows
from monitor.models import Cluster, ConsumerGroup, Topic

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def groups():
    cluster = Cluster.objects.create(name="bulk", bootstrap_servers="127.0.0.1:9")
    now = timezone.now()
    ConsumerGroup.objects.bulk_create([ConsumerGroup(cluster=cluster, name=f"g{n}", first_seen_at=now, last_seen_at=now,
                                                     total_lag=n, status_reason=f"reason {n}",
                                                     member_details=[{"member_id": f"m{n}"}]) for n in range(3)])
    return list(ConsumerGroup.objects.filter(cluster=cluster).order_by("name"))


def test_updated_rows_hold_the_written_values_of_every_kind(groups):
    at = timezone.now() - timedelta(minutes=5)
    for n, group in enumerate(groups):
        group.partition_state = bytes([0, 255, n]) * 100
        group.topics = ["orders", "o'rders\n<script>"]
        group.lost_counted_to = {"orders/0": n}
        group.member_details = None
        group.status, group.status_reason, group.status_since = GroupStatus.STALLED, f"stuck {n} \x7f é", at
        group.max_time_lag_seconds = 1.5 * n
        group.catch_up_never = n == 1

    update_rows(ConsumerGroup, groups, ["partition_state", "topics", "lost_counted_to", "member_details", "status",
                                        "status_reason", "status_since", "max_time_lag_seconds", "catch_up_never"])

    for n, stored in enumerate(ConsumerGroup.objects.filter(pk__in=[g.pk for g in groups]).order_by("name")):
        assert bytes(stored.partition_state) == bytes([0, 255, n]) * 100
        assert stored.topics == ["orders", "o'rders\n<script>"]
        assert stored.lost_counted_to == {"orders/0": n}
        assert stored.member_details is None  # was a list: NULL is written, not skipped
        assert (stored.status, stored.status_reason, stored.status_since) == (GroupStatus.STALLED, f"stuck {n} \x7f é", at)
        assert stored.max_time_lag_seconds == 1.5 * n and stored.catch_up_never is (n == 1)
        assert stored.total_lag == n  # not among the fields: untouched


def test_two_updates_of_different_fields_in_one_transaction_touch_only_their_own(groups):
    first, second = groups[0], groups[1]
    first.total_lag = 100
    second.status_reason = "second only"
    with transaction.atomic():
        update_rows(ConsumerGroup, [first], ["total_lag"])
        update_rows(ConsumerGroup, [second], ["status_reason"])

    stored = {g.name: g for g in ConsumerGroup.objects.filter(pk__in=[g.pk for g in groups])}
    assert (stored["g0"].total_lag, stored["g0"].status_reason) == (100, "reason 0")
    assert (stored["g1"].total_lag, stored["g1"].status_reason) == (1, "second only")
    assert (stored["g2"].total_lag, stored["g2"].status_reason) == (2, "reason 2")


def test_an_update_rolled_back_with_its_transaction_leaves_nothing_behind(groups):
    groups[0].total_lag = 999
    with pytest.raises(RuntimeError), transaction.atomic():
        update_rows(ConsumerGroup, groups[:1], ["total_lag"])
        raise RuntimeError("the cycle failed after the update")
    groups[1].status_reason = "later"
    update_rows(ConsumerGroup, groups[1:2], ["status_reason"])  # the same staging table, the same connection

    stored = {g.name: g for g in ConsumerGroup.objects.filter(pk__in=[g.pk for g in groups])}
    assert (stored["g0"].total_lag, stored["g0"].status_reason) == (0, "reason 0")
    assert stored["g1"].status_reason == "later" and stored["g1"].total_lag == 1


def test_rows_inserted_by_copy_are_stored_as_given(groups):
    cluster = groups[0].cluster
    now = timezone.now()
    insert_rows(Topic, ["cluster_id", "name", "partitions", "first_seen_at", "last_seen_at"],
                [(cluster.id, "orders\n'x'", 3, now, now), (cluster.id, "é", 1, now, now)])

    assert sorted(Topic.objects.filter(cluster=cluster).values_list("name", "partitions")) == [
        ("orders\n'x'", 3), ("é", 1)]


def test_an_update_the_table_refuses_after_its_rows_were_staged_leaves_nothing_for_the_next(groups):
    """No transaction around it: the staged rows go with the failed UPDATE, so the next
    update of the same field (the same staging table) cannot write them again."""
    from django.db import IntegrityError

    before = groups[0].first_seen_at
    groups[0].first_seen_at = None  # staged fine (no constraints there), refused by the table
    with pytest.raises(IntegrityError):
        update_rows(ConsumerGroup, groups[:1], ["first_seen_at"])
    later = before + timedelta(hours=1)
    groups[2].first_seen_at = later
    update_rows(ConsumerGroup, groups[2:], ["first_seen_at"])

    stored = {g.name: g for g in ConsumerGroup.objects.filter(pk__in=[g.pk for g in groups])}
    assert (stored["g0"].first_seen_at, stored["g2"].first_seen_at) == (before, later)
