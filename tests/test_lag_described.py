"""Which groups a cycle describes again, and which descriptions it carries over
(monitor/lag/described.py): plain data, no broker."""
import pytest

from monitor.choices import GroupStatus
from monitor.kafka.adapter import GroupListing, GroupMember, GroupMembership
from monitor.lag.described import Descriptions
from monitor.models import ConsumerGroup

CLUSTER = 1


@pytest.fixture(autouse=True)
def refresh(settings):
    settings.MONITOR_MEMBERSHIP_REFRESH_SECONDS = 300
    return settings


def listing(group_id, state="Stable", group_type="classic"):
    return GroupListing(group_id, state, "consumer", group_type)


def membership(group_id, *member_ids, known=True):
    members = tuple(GroupMember(m, f"client-{m}", "10.0.0.1", (("orders", 0),)) for m in member_ids)
    return GroupMembership(group_id, "classic", "Stable", members, known=known)


def described_once(descriptions, *listings, at=0.0):
    due, carried = descriptions.due(CLUSTER, listings, now=at)
    descriptions.remember(CLUSTER, due, {g.group_id: membership(g.group_id, "m-1") for g in due}, now=at)
    return due, carried


def test_a_group_never_described_is_described_and_then_carried_over_while_its_listing_stays():
    descriptions = Descriptions()
    due, carried = described_once(descriptions, listing("billing"))
    assert [g.group_id for g in due] == ["billing"] and carried == {}

    due, carried = descriptions.due(CLUSTER, [listing("billing")], now=149.0)
    assert due == [] and carried == {"billing": membership("billing", "m-1")}


@pytest.mark.parametrize("later", [
    listing("billing", state="PreparingRebalance"),  # a rebalance shows in the listed state
    listing("billing", state="Empty"),
    listing("billing", group_type="consumer"),  # moved to the KIP-848 protocol
])
def test_a_group_listed_otherwise_than_when_it_was_described_is_described_again(later):
    descriptions = Descriptions()
    described_once(descriptions, listing("billing"))
    due, carried = descriptions.due(CLUSTER, [later], now=10.0)
    assert due == [later] and carried == {}


def test_every_group_is_described_again_once_the_refresh_has_passed_and_every_poll_with_zero(refresh):
    descriptions = Descriptions()
    described_once(descriptions, listing("billing"))
    assert descriptions.due(CLUSTER, [listing("billing")], now=300.0)[0] == [listing("billing")]
    refresh.MONITOR_MEMBERSHIP_REFRESH_SECONDS = 0
    assert descriptions.due(CLUSTER, [listing("billing")], now=1.0)[0] == [listing("billing")]


def test_groups_described_in_one_cycle_are_described_again_spread_over_the_refresh_period():
    descriptions = Descriptions()
    groups = [listing(f"g-{n}") for n in range(1000)]
    described_once(descriptions, *groups)
    due_by = {at: len(descriptions.due(CLUSTER, groups, now=float(at))[0]) for at in (149, 180, 240, 299, 300)}
    assert due_by[149] == 0 and due_by[300] == 1000
    assert 100 < due_by[180] < due_by[240] < due_by[299] < 1000  # spread, not all in one cycle


def test_a_description_that_told_nothing_is_never_carried_over():
    descriptions = Descriptions()
    due, _ = descriptions.due(CLUSTER, [listing("billing")], now=0.0)
    descriptions.remember(CLUSTER, due, {"billing": membership("billing", known=False)}, now=0.0)
    assert descriptions.due(CLUSTER, [listing("billing")], now=1.0) == ([listing("billing")], {})
    descriptions.remember(CLUSTER, due, {}, now=2.0)  # no answer at all
    assert descriptions.due(CLUSTER, [listing("billing")], now=3.0) == ([listing("billing")], {})


def test_groups_judged_anything_but_ok_or_idle_are_described_at_the_next_poll():
    descriptions = Descriptions()
    names = {status: f"g-{status}" for status in GroupStatus.values}
    described_once(descriptions, *(listing(name) for name in names.values()))
    descriptions.judged(CLUSTER, [ConsumerGroup(name=name, status=status) for status, name in names.items()])

    due, carried = descriptions.due(CLUSTER, [listing(name) for name in names.values()], now=1.0)
    assert sorted(carried) == sorted([names["ok"], names["idle"]])
    assert sorted(g.group_id for g in due) == sorted(n for s, n in names.items() if s not in ("ok", "idle"))


def test_a_whole_cluster_cycle_forgets_groups_no_longer_listed_and_a_shard_keeps_the_others():
    descriptions = Descriptions()
    described_once(descriptions, listing("billing"), listing("shipping"))
    descriptions.due(CLUSTER, [listing("billing")], whole_cluster=False, now=1.0)  # one shard's groups
    assert descriptions.due(CLUSTER, [listing("shipping")], whole_cluster=False, now=2.0)[0] == []
    descriptions.due(CLUSTER, [listing("billing")], now=3.0)  # shipping deleted from the cluster
    assert descriptions.due(CLUSTER, [listing("shipping")], now=4.0)[0] == [listing("shipping")]


def test_clusters_are_remembered_apart():
    descriptions = Descriptions()
    described_once(descriptions, listing("billing"))
    assert descriptions.due(CLUSTER + 1, [listing("billing")], now=1.0)[0] == [listing("billing")]
