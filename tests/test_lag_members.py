"""Group members and partition owners as stored, shown and named in reasons."""
from monitor.kafka.adapter import GroupMember, GroupMembership
from monitor.lag import members

BILLING = GroupMembership("billing", "consumer", "Stable", (
    GroupMember("m-2", "billing-b", "10.2.3.5", (("orders", 0),)),
    GroupMember("m-1", "billing-a", "10.2.3.4", (("orders", 7), ("refunds", 1))),
), known=True)


def test_stored_members_keep_ids_hosts_and_partitions_and_unknown_stays_none():
    stored = members.stored_members(BILLING)
    assert stored == [
        {"member_id": "m-1", "client_id": "billing-a", "host": "10.2.3.4", "partitions": [["orders", 7], ["refunds", 1]]},
        {"member_id": "m-2", "client_id": "billing-b", "host": "10.2.3.5", "partitions": [["orders", 0]]},
    ]
    assert members.stored_members(GroupMembership("x", "classic", error="timeout")) is None
    assert members.member_count(GroupMembership("x", "classic")) is None
    assert members.member_count(BILLING) == 2


def test_owner_note_names_client_and_host_of_the_first_lagging_partitions_it_knows():
    stored = members.stored_members(BILLING)
    note = members.owner_note(stored, [("orders", 7), ("orders", 3), ("orders", 0)])
    assert note == ("partition 7 of orders owned by billing-a on 10.2.3.4; "
                    "partition 0 of orders owned by billing-b on 10.2.3.5")
    assert members.owner_note(None, [("orders", 7)]) == ""


def test_api_members_have_the_contract_shape():
    assert members.api_members(members.stored_members(BILLING))[0] == {
        "member_id": "m-1", "client_id": "billing-a", "host": "10.2.3.4",
        "partitions": [{"topic": "orders", "partition": 7}, {"topic": "refunds", "partition": 1}],
        "partitions_known": True,
    }
    assert members.api_members(None) == []


def test_a_member_whose_assignment_the_broker_did_not_send_owns_nothing_known():
    told = GroupMembership("legacy", "classic", "Stable", (GroupMember("c-1", "legacy-1", "", None),), known=True)
    stored = members.stored_members(told)
    assert stored == [{"member_id": "c-1", "client_id": "legacy-1", "host": "", "partitions": None}]
    assert not members.assignments_known(stored) and members.owners(stored) == {}
    assert members.api_members(stored)[0]["partitions_known"] is False
    assert members.assignments_known(members.stored_members(BILLING))
