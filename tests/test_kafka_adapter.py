"""The Kafka adapter against a real Kafka-protocol broker (tansu)."""
import os
import time

import pytest

from monitor.kafka.adapter import (
    ConnectionSettings, KafkaAdapter, KafkaUnavailable, LogOffsets, Producer, TopicRetention, commit_offsets,
    UNANSWERED, create_topics,
)
from tests.services import free_port


@pytest.fixture
def topic(kafka_settings, unique):
    name = unique("adapter")
    create_topics(kafka_settings, {name: 3})
    producer = Producer(kafka_settings)
    for partition, count in ((0, 5), (1, 2)):
        for _ in range(count):
            producer.send(name, b"m", partition=partition)
    producer.close()
    return name


def test_committed_offsets_of_many_groups_come_back_per_group(kafka_settings, topic, unique):
    first, second = unique("g"), unique("g")
    commit_offsets(kafka_settings, first, {(topic, 0): 3, (topic, 1): 2})
    commit_offsets(kafka_settings, second, {(topic, 0): 1})
    with KafkaAdapter(kafka_settings) as adapter:
        listed = {g.group_id for g in adapter.list_groups()}
        committed = adapter.committed_offsets([first, second])
    assert {first, second} <= listed
    assert committed.offsets == {first: {(topic, 0): 3, (topic, 1): 2}, second: {(topic, 0): 1}}
    assert committed.errors == {}


def test_committed_offsets_read_together_with_membership_equal_each_read_alone(kafka_settings, topic, unique):
    groups = [unique("g") for _ in range(3)]
    for n, group in enumerate(groups):
        commit_offsets(kafka_settings, group, {(topic, 0): n + 1, (topic, 1): 1})
    with KafkaAdapter(kafka_settings) as adapter:
        listed = [g for g in adapter.list_groups() if g.group_id in groups]
        committed, membership = adapter.committed_offsets_and_membership(groups, listed)
    with KafkaAdapter(kafka_settings) as adapter:
        committed_alone = adapter.committed_offsets(groups)
        membership_alone = adapter.group_membership(listed)
    assert committed.offsets == committed_alone.offsets == {
        group: {(topic, 0): n + 1, (topic, 1): 1} for n, group in enumerate(groups)}
    assert committed.errors == committed_alone.errors == {}
    assert membership == membership_alone
    assert set(membership) == set(groups)


def _sent_requests(adapter):
    """The names of the requests this adapter sends from now on."""
    sent = []
    send = adapter.admin._manager.send

    def recording(request, *args, **kwargs):
        sent.append(type(request).__name__)
        return send(request, *args, **kwargs)

    adapter.admin._manager.send = recording
    return sent


def test_the_next_connection_to_a_cluster_asks_for_no_coordinator_it_was_told(kafka_settings, topic, unique):
    groups = [unique("g") for _ in range(3)]
    for group in groups:
        commit_offsets(kafka_settings, group, {(topic, 0): 2})
    with KafkaAdapter(kafka_settings) as adapter:
        sent = _sent_requests(adapter)
        first = adapter.committed_offsets(groups)
    assert "FindCoordinatorRequest" in sent
    with KafkaAdapter(kafka_settings) as adapter:
        sent = _sent_requests(adapter)
        again = adapter.committed_offsets(groups)
        listed = [g for g in adapter.list_groups() if g.group_id in groups]
        membership = adapter.group_membership(listed)
    assert sent == ["OffsetFetchRequest", "ListGroupsRequest", "DescribeGroupsRequest"]
    assert again.offsets == first.offsets == {group: {(topic, 0): 2} for group in groups}
    assert set(membership) == set(groups)


def test_coordinators_of_a_broker_the_cluster_no_longer_lists_are_asked_for_again(kafka_settings, topic, unique):
    group = unique("g")
    commit_offsets(kafka_settings, group, {(topic, 1): 1})
    with KafkaAdapter(kafka_settings) as adapter:
        adapter.committed_offsets([group])
        cluster = adapter.admin._manager.cluster
        # As if the coordinator had been a broker that has since left the cluster.
        cluster._coordinators = {key: 999 for key in cluster._coordinators}
    with KafkaAdapter(kafka_settings) as adapter:
        sent = _sent_requests(adapter)
        committed = adapter.committed_offsets([group])
        coordinators = set(adapter.admin._manager.cluster._coordinators.values())
    assert sent == ["FindCoordinatorRequest", "OffsetFetchRequest"]
    assert committed.offsets == {group: {(topic, 1): 1}}
    assert 999 not in coordinators


def test_a_failed_offset_fetch_forgets_the_coordinators_it_was_sent_to(kafka_settings, topic, unique, monkeypatch):
    group = unique("g")
    commit_offsets(kafka_settings, group, {(topic, 0): 4})
    with KafkaAdapter(kafka_settings) as adapter:
        adapter.committed_offsets([group])
    with KafkaAdapter(kafka_settings) as adapter:
        # The batched answer unusable (as when a group moved to another coordinator):
        # the group-by-group path then asks who coordinates it, and so does the next cycle.
        monkeypatch.setattr(adapter, "_batched_committed_offsets", lambda group_ids: None)
        sent = _sent_requests(adapter)
        committed = adapter.committed_offsets([group])
    assert committed.offsets == {group: {(topic, 0): 4}}
    assert sent[0] == "FindCoordinatorRequest"
    monkeypatch.undo()
    with KafkaAdapter(kafka_settings) as adapter:
        sent = _sent_requests(adapter)
        adapter.committed_offsets([group])
    assert sent == ["OffsetFetchRequest"]


def test_log_offsets_of_all_partitions_cost_one_metadata_and_one_round_trip_per_leader(kafka_settings, topic):
    partitions = [(topic, p) for p in range(3)]
    with KafkaAdapter(kafka_settings) as adapter:
        metadata = adapter.topic_metadata([topic])
        before = adapter.requests
        leaders = {(topic, p): leader for p, leader in metadata.leaders[topic].items()}
        offsets, errors = adapter.log_offsets(partitions, leaders)
        pipelined_requests = adapter.requests - before
        fallback, fallback_errors = adapter.log_offsets(partitions)
    assert metadata.partition_counts == {topic: 3}
    assert offsets == {
        (topic, 0): LogOffsets(0, 5), (topic, 1): LogOffsets(0, 2), (topic, 2): LogOffsets(0, 0),
    }
    assert errors == {} and fallback_errors == {}
    assert fallback == offsets
    assert pipelined_requests == 2  # log end and log start, to the single leader, together


def test_unknown_topic_is_reported_apart_without_failing_the_others(kafka_settings, topic, unique):
    missing = unique("missing")
    with KafkaAdapter(kafka_settings) as adapter:
        metadata = adapter.topic_metadata([topic, missing])
        leaders = {(topic, p): leader for p, leader in metadata.leaders[topic].items()}
        offsets, errors = adapter.log_offsets([(topic, 0), (missing, 0)], leaders)
        fallback, fallback_errors = adapter.log_offsets([(topic, 0), (missing, 0)])
    assert missing in metadata.errors
    assert offsets == {(topic, 0): LogOffsets(0, 5)}
    assert (missing, 0) in errors
    assert fallback == offsets and (missing, 0) in fallback_errors


def test_request_count_does_not_grow_with_partitions(kafka_settings, unique):
    small, large = unique("small"), unique("large")
    create_topics(kafka_settings, {small: 2, large: 40})

    def cost(topic: str, count: int) -> int:
        with KafkaAdapter(kafka_settings) as adapter:
            metadata = adapter.topic_metadata([topic])
            leaders = {(topic, p): leader for p, leader in metadata.leaders[topic].items()}
            adapter.log_offsets([(topic, p) for p in range(count)], leaders)
            return adapter.requests

    assert cost(small, 2) == cost(large, 40)


def test_closed_port_raises_kafka_unavailable_within_the_timeout():
    settings = ConnectionSettings([f"127.0.0.1:{free_port()}"], timeout_seconds=2)
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable, match="cannot reach"):
        with KafkaAdapter(settings) as adapter:
            adapter.list_groups()
    assert time.monotonic() - started < 30  # the 2 s timeout, not kafka-python's minutes-long defaults


def test_connection_settings_never_show_the_password():
    settings = ConnectionSettings(["kafka:9092"], sasl_mechanism="PLAIN", sasl_username="u", sasl_password="s3cret")
    assert "s3cret" not in repr(settings)


# -- record timestamps (time lag) -------------------------------------------------------

@pytest.fixture
def leaders_of(kafka_settings):
    def leaders(*topics: str) -> dict[tuple[str, int], int]:
        with KafkaAdapter(kafka_settings) as adapter:
            metadata = adapter.topic_metadata(topics)
        return {(t, p): leader for t, parts in metadata.leaders.items() for p, leader in parts.items()}
    return leaders


def test_record_timestamps_are_the_create_times_the_producer_gave(kafka_settings, unique, leaders_of):
    name = unique("created")
    create_topics(kafka_settings, {name: 2})
    base_ms = int(time.time() * 1000) - 3_600_000
    producer = Producer(kafka_settings)
    for n in range(4):
        producer.send(name, b"m" * 50, partition=0, timestamp_ms=base_ms + n * 1000)
    producer.send(name, b"m", partition=1, timestamp_ms=base_ms + 9000)
    producer.close()
    with KafkaAdapter(kafka_settings) as adapter:
        before = adapter.requests
        read = adapter.record_timestamps([(name, 0, 1), (name, 0, 3), (name, 1, 0)], leaders_of(name),
                                         partition_max_bytes=4096, max_bytes=8192)
        requests = adapter.requests - before
    assert requests == 1  # one Fetch for the one leader, both partitions and all three offsets in it
    assert {key: (r.offset, r.timestamp_ms - base_ms, r.log_append_time) for key, r in read.found.items()} == {
        (name, 0, 1): (1, 1000, False), (name, 0, 3): (3, 3000, False), (name, 1, 0): (0, 9000, False)}
    assert read.missing == {} and read.bytes > 0


def test_an_offset_holding_a_transaction_marker_or_an_aborted_record_is_answered_by_the_next_record(
        kafka_settings, unique, leaders_of):
    """What compaction does to a committed offset (the record is gone: the next one
    answers) is shown with what this broker can do: offsets that hold a commit marker
    or an aborted record, which a read-committed consumer skips the same way. (tansu
    does not compact; it also leaves the answer's aborted-transaction list empty, so the
    abort is known from the marker read after the record.)"""
    name = unique("txn")
    create_topics(kafka_settings, {name: 1})
    base_ms = int(time.time() * 1000) - 600_000
    plain = Producer(kafka_settings)
    transactional = Producer(kafka_settings, transactional_id=unique("tx"))
    try:
        assert plain.send(name, b"a", partition=0, timestamp_ms=base_ms) == (0, 0)
        transactional.begin_transaction()
        transactional.send(name, b"committed", partition=0, timestamp_ms=base_ms + 1000)  # offset 1
        transactional.commit_transaction()  # marker at 2
        plain.send(name, b"b", partition=0, timestamp_ms=base_ms + 3000)  # 3
        transactional.begin_transaction()
        transactional.send(name, b"aborted", partition=0, timestamp_ms=base_ms + 4000)  # 4
        transactional.abort_transaction()  # marker at 5
        assert plain.send(name, b"c", partition=0, timestamp_ms=base_ms + 6000) == (0, 6)
    finally:
        transactional.close()
        plain.close()
    with KafkaAdapter(kafka_settings) as adapter:
        read = adapter.record_timestamps([(name, 0, o) for o in range(7)], leaders_of(name),
                                         partition_max_bytes=4096, max_bytes=4096)
    found = {key[2]: (r.offset, r.timestamp_ms - base_ms) for key, r in read.found.items()}
    assert found == {0: (0, 0), 1: (1, 1000), 2: (3, 3000), 3: (3, 3000), 4: (6, 6000), 5: (6, 6000),
                     6: (6, 6000)}


def test_timestamps_going_backwards_after_the_record_read_are_measured(kafka_settings, unique, leaders_of):
    name = unique("skew")
    create_topics(kafka_settings, {name: 1})
    now_ms = int(time.time() * 1000)
    producer = Producer(kafka_settings)
    producer.send(name, b"ahead", partition=0, timestamp_ms=now_ms + 600_000)  # a producer 10 min ahead
    producer.send(name, b"right", partition=0, timestamp_ms=now_ms)
    producer.close()
    with KafkaAdapter(kafka_settings) as adapter:
        read = adapter.record_timestamps([(name, 0, 0)], leaders_of(name), partition_max_bytes=4096,
                                         max_bytes=4096)
    assert read.found[(name, 0, 0)].backwards_ms == 600_000


def test_partitions_without_a_leader_or_past_the_log_end_are_missing_with_a_reason(kafka_settings, unique,
                                                                                    leaders_of):
    name = unique("missing")
    create_topics(kafka_settings, {name: 1})
    producer = Producer(kafka_settings)
    producer.send(name, b"m", partition=0)
    producer.close()
    leaders = leaders_of(name)
    with KafkaAdapter(kafka_settings) as adapter:
        read = adapter.record_timestamps([(name, 0, 1), ("no-such-topic", 0, 0)], leaders,
                                         partition_max_bytes=1024, max_bytes=1024)
    assert read.found == {}
    assert read.missing == {(name, 0, 1): "record not within the bytes read",
                            ("no-such-topic", 0, 0): "partition has no leader"}


# -- group membership ------------------------------------------------------------------
# tansu answers DescribeGroups without members and does not serve ConsumerGroupDescribe,
# so these run against tests/kafka_responder.py: a real socket answering with responses
# encoded by the same protocol classes the adapter decodes with (see its docstring).

def test_topic_retention_settings_come_from_describe_configs(kafka_settings, unique):
    kept, plain = unique("kept"), unique("plain")
    create_topics(kafka_settings, {kept: 1}, {kept: {"retention.ms": "3600000", "retention.bytes": "-1"}})
    create_topics(kafka_settings, {plain: 1})

    with KafkaAdapter(kafka_settings) as adapter:
        found = adapter.topic_retention([kept, plain])

    assert found[kept] == TopicRetention(retention_ms=3_600_000, retention_bytes=None)  # -1: unlimited
    assert found.get(plain, TopicRetention(None, None)).retention_ms in (None, 604_800_000)


from tests.kafka_responder import KafkaResponder, ScriptedGroup, ScriptedMember  # noqa: E402

SCRIPTED_GROUPS = [
    ScriptedGroup("billing", "consumer", members=[
        ScriptedMember("m-1", "billing-7f9c", "/10.2.3.4", {"orders": [7, 1]}),
        ScriptedMember("m-2", "billing-a1b2", "/10.2.3.5", {"orders": [0], "refunds": [2]}),
    ]),
    ScriptedGroup("legacy", "classic", members=[ScriptedMember("c-1", "legacy-1", "/10.0.0.9", {"orders": [3]})]),
    ScriptedGroup("jobs", "share", protocol_type="share"),
]


def _membership(responder: KafkaResponder):
    with KafkaAdapter(ConnectionSettings([responder.bootstrap], timeout_seconds=5)) as adapter:
        listed = adapter.list_groups()
        return listed, adapter.group_membership(listed)


def test_kip848_group_members_and_assignments_come_from_consumer_group_describe():
    with KafkaResponder(SCRIPTED_GROUPS) as responder:
        _, membership = _membership(responder)
    billing = membership["billing"]
    assert billing.protocol == "consumer" and billing.known and billing.state == "Stable"
    assert [(m.member_id, m.client_id, m.host, m.partitions) for m in billing.members] == [
        ("m-1", "billing-7f9c", "10.2.3.4", (("orders", 1), ("orders", 7))),
        ("m-2", "billing-a1b2", "10.2.3.5", (("orders", 0), ("refunds", 2))),
    ]
    assert billing.owners()[("orders", 7)] == "m-1"
    assert (69, 0) in responder.requests  # ConsumerGroupDescribe v0, negotiated through ApiVersions


def test_classic_group_members_come_from_describe_groups_with_decoded_assignments():
    with KafkaResponder(SCRIPTED_GROUPS) as responder:
        _, membership = _membership(responder)
    legacy = membership["legacy"]
    assert legacy.protocol == "classic" and legacy.known
    assert [(m.member_id, m.client_id, m.host, m.partitions) for m in legacy.members] == [
        ("c-1", "legacy-1", "10.0.0.9", (("orders", 3),)),
    ]


def test_a_classic_member_without_an_assignment_owns_nothing_known():
    groups = [ScriptedGroup("rebalancing", "classic", state="PreparingRebalance", members=[
        ScriptedMember("c-9", "worker-9", "/10.0.0.7", {"orders": [1]}, assignment_sent=False)])]
    with KafkaResponder(groups) as responder:
        _, membership = _membership(responder)
    [member] = membership["rebalancing"].members
    assert (member.member_id, member.client_id, member.host, member.partitions) == ("c-9", "worker-9", "10.0.0.7", None)
    assert membership["rebalancing"].owners() == {}


def test_share_groups_are_listed_as_such_and_never_described_as_consumer_groups():
    with KafkaResponder(SCRIPTED_GROUPS) as responder:
        listed, membership = _membership(responder)
    assert {g.group_id: g.protocol for g in listed}["jobs"] == "share"
    assert membership["jobs"].protocol == "share" and not membership["jobs"].known


def test_kip848_group_is_found_even_when_the_broker_lists_no_group_type():
    """ListGroups before v5 has no group type: the classic describe answers 'not found'
    and the adapter asks again with ConsumerGroupDescribe, never reporting it empty."""
    with KafkaResponder(SCRIPTED_GROUPS, list_group_types=False) as responder:
        listed, membership = _membership(responder)
    assert {g.group_id: g.protocol for g in listed}["billing"] == "classic"  # all the listing can say
    assert membership["billing"].protocol == "consumer" and membership["billing"].known
    assert len(membership["billing"].members) == 2


def test_membership_is_unknown_not_empty_when_the_broker_serves_no_consumer_group_describe():
    with KafkaResponder(SCRIPTED_GROUPS, serve_consumer_describe=False) as responder:
        _, membership = _membership(responder)
    assert not membership["billing"].known and membership["billing"].members == ()
    assert "IncompatibleBrokerVersion" in membership["billing"].error
    assert membership["legacy"].known  # the classic call still answered


OFFSET_FETCH, FIND_COORDINATOR = 9, 10
GROUP_AUTHORIZATION_FAILED, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS = 30, 16, 14


def _offset_groups(bad: ScriptedGroup, count: int = 200) -> list[ScriptedGroup]:
    return [ScriptedGroup(f"g-{n:03d}", "classic", committed={("orders", n % 3): n}) for n in range(count)] + [bad]


@pytest.mark.parametrize("version", [9, 7])
def test_a_group_the_broker_will_not_answer_for_is_reported_apart_in_the_same_request(version):
    """Apache Kafka answers a group the client may not describe with a group error inside
    the batched OffsetFetch: the other groups come from that answer, with no request per
    group and no coordinator forgotten (the next connection asks for none). Before v8
    (Kafka < 3.0) each group has a request of its own, at most 5 in flight at once."""
    bad = ScriptedGroup("secret", "classic", committed={("orders", 0): 5}, offset_errors=[GROUP_AUTHORIZATION_FAILED])
    groups = _offset_groups(bad)
    with KafkaResponder(groups, offset_fetch_max_version=version) as responder:
        settings = ConnectionSettings([responder.bootstrap], timeout_seconds=5)
        with KafkaAdapter(settings) as adapter:
            read = adapter.committed_offsets([g.group_id for g in groups])
        assert read.errors == {"secret": "GroupAuthorizationFailedError"}
        assert read.offsets == {g.group_id: g.committed for g in groups[:-1]}
        assert [key for key, _ in responder.requests].count(OFFSET_FETCH) == (1 if version >= 8 else len(groups))
        before = len(responder.requests)
        with KafkaAdapter(settings) as adapter:
            adapter.committed_offsets([g.group_id for g in groups])
        asked = [key for key, _ in responder.requests[before:]]
    assert FIND_COORDINATOR not in asked
    assert {v for key, v in responder.requests if key == OFFSET_FETCH} == {min(version, 8)}  # the client asks v8 at most


@pytest.mark.parametrize("left_out", [1, 2])
def test_a_group_the_offset_answer_leaves_out_is_asked_again_then_reported_as_not_read(left_out):
    """A batched OffsetFetch answer that names neither offsets nor an error for a group
    asked about: its coordinator is asked for anew and the group once more (as for a
    coordinator that moved); left out again, it is reported apart, never read as a group
    without commits (which would show no lag) nor left with the last poll's offsets. A
    group that did answer with no commits stays read, with none."""
    groups = _offset_groups(ScriptedGroup("skipped", "classic", committed={("orders", 0): 5},
                                          left_out_of_offsets=left_out), count=3)
    groups.append(ScriptedGroup("no-commits", "classic"))
    with KafkaResponder(groups) as responder:
        with KafkaAdapter(ConnectionSettings([responder.bootstrap], timeout_seconds=5)) as adapter:
            read = adapter.committed_offsets([g.group_id for g in groups])
        asked = [key for key, _ in responder.requests]
    assert asked.count(OFFSET_FETCH) == 2 and asked.count(FIND_COORDINATOR) == 2
    others = {"g-000": {("orders", 0): 0}, "g-001": {("orders", 1): 1}, "g-002": {("orders", 2): 2}, "no-commits": {}}
    if left_out == 1:
        assert read.errors == {} and read.offsets == {**others, "skipped": {("orders", 0): 5}}
    else:
        assert read.errors == {"skipped": UNANSWERED} and read.offsets == others


def test_offsets_and_members_of_many_groups_are_read_together_from_a_broker_before_kafka_3():
    """Before OffsetFetch v8 each group has a request of its own; with the describe
    requests beside them on the same connection, never more in flight than the client
    allows (it refuses the next send: the whole cycle read as unreachable)."""
    groups = [ScriptedGroup(f"g-{n:02d}", "classic", committed={("orders", n % 3): n},
                            members=[ScriptedMember(f"m-{n}", f"c-{n}", "/10.0.0.1", {"orders": [n % 3]})])
              for n in range(50)]
    with KafkaResponder(groups, offset_fetch_max_version=7) as responder:
        with KafkaAdapter(ConnectionSettings([responder.bootstrap], timeout_seconds=5)) as adapter:
            listed = adapter.list_groups()
            committed, membership = adapter.committed_offsets_and_membership([g.group_id for g in listed], listed)
    assert committed.errors == {} and committed.offsets == {g.group_id: g.committed for g in groups}
    assert all(membership[g.group_id].known and len(membership[g.group_id].members) == 1 for g in groups)


def test_a_group_whose_coordinator_moved_is_asked_again_after_finding_its_coordinator():
    moved = ScriptedGroup("moved", "classic", committed={("orders", 2): 9}, offset_errors=[0, NOT_COORDINATOR, 0])
    groups = _offset_groups(moved, count=3)
    with KafkaResponder(groups) as responder:
        with KafkaAdapter(ConnectionSettings([responder.bootstrap], timeout_seconds=5)) as adapter:
            adapter.committed_offsets([g.group_id for g in groups])  # every coordinator named once
            before = len(responder.requests)
            read = adapter.committed_offsets([g.group_id for g in groups])
            kept = {key[1] for key in adapter.admin._manager.cluster._coordinators}
        asked = [key for key, _ in responder.requests[before:]]
    assert read.errors == {} and read.offsets["moved"] == {("orders", 2): 9} and len(read.offsets) == 4
    assert asked == [OFFSET_FETCH, FIND_COORDINATOR, OFFSET_FETCH]
    assert kept == {g.group_id for g in groups}  # only the moved group's coordinator was asked for again


def test_a_coordinator_still_loading_a_group_is_reported_and_not_asked_again():
    loading = ScriptedGroup("loading", "classic", committed={("orders", 1): 3},
                            offset_errors=[COORDINATOR_LOAD_IN_PROGRESS])
    groups = _offset_groups(loading, count=3)
    with KafkaResponder(groups) as responder:
        with KafkaAdapter(ConnectionSettings([responder.bootstrap], timeout_seconds=5)) as adapter:
            adapter.committed_offsets(["g-000"])
            before = len(responder.requests)
            read = adapter.committed_offsets([g.group_id for g in groups])
        asked = [key for key, _ in responder.requests[before:]]
    assert read.errors == {"loading": "CoordinatorLoadInProgressError"} and len(read.offsets) == 3
    assert asked == [FIND_COORDINATOR, OFFSET_FETCH]  # the groups not named before; no second fetch


def test_tansu_groups_are_described_without_authorized_operations(kafka_settings, topic, unique):
    """kafka-python's describe_groups asks for authorized operations, which tansu answers
    with a value it cannot read ('15 is not a valid ACLOperation'); the adapter does not ask."""
    group = unique("g")
    commit_offsets(kafka_settings, group, {(topic, 0): 1})
    with KafkaAdapter(kafka_settings) as adapter:
        listed = [g for g in adapter.list_groups() if g.group_id == group]
        membership = adapter.group_membership(listed)
    assert membership[group].known and membership[group].members == ()  # assign() + commit(): no members


@pytest.mark.skipif(not os.environ.get("KAFKA_BOOTSTRAP"), reason="opt-in: set KAFKA_BOOTSTRAP to a real Apache Kafka")
def test_real_apache_kafka_describes_every_listed_group():
    """Opt-in, against any real Apache Kafka (KAFKA_BOOTSTRAP=host:port): every listed
    consumer group is described by the call its protocol needs, none left unknown."""
    settings = ConnectionSettings(os.environ["KAFKA_BOOTSTRAP"].split(","), timeout_seconds=10)
    with KafkaAdapter(settings) as adapter:
        listed = adapter.list_groups()
        membership = adapter.group_membership(listed)
    for group in listed:
        if group.protocol != "share":
            assert membership[group.group_id].known, (group, membership[group.group_id].error)


def test_msk_iam_signs_with_the_clusters_region_and_environment_credentials_without_botocore(monkeypatch):
    import json as json_module

    from monitor.kafka.adapter import MskIamMechanism

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "session-token")
    settings = ConnectionSettings(["b-1.demo.abc123.c2.kafka.eu-west-1.amazonaws.com:9098"],
                                  security_protocol="SASL_SSL", sasl_mechanism="AWS_MSK_IAM", aws_region="eu-west-1")
    assert settings.client_config()["sasl_mechanism"] == "AWS_MSK_IAM"
    mechanism = MskIamMechanism(host="b-1.demo.abc123.c2.kafka.eu-west-1.amazonaws.com", security_protocol="SASL_SSL")
    payload = json_module.loads(mechanism.auth_bytes())
    assert payload["action"] == "kafka-cluster:Connect"
    assert payload["x-amz-credential"].startswith("AKIDEXAMPLE/") and "/eu-west-1/kafka-cluster/aws4_request" in payload["x-amz-credential"]
    assert payload["x-amz-security-token"] == "session-token"
    assert len(payload["x-amz-signature"]) == 64 and "wJalrXUtnFEMI" not in json_module.dumps(payload)
    with pytest.raises(Exception, match="requires security_protocol SASL_SSL"):
        MskIamMechanism(host="b-1", security_protocol="SASL_PLAINTEXT")


def test_every_broker_is_asked_to_list_its_groups_at_once():
    """ListGroups goes to every broker (each lists the groups it coordinates), all in
    flight together: each responder broker answers only once every broker has been asked
    (or after waiting LIST_GROUPS_WAIT_SECONDS, which this test would then see)."""
    groups = [ScriptedGroup(f"g-{n}", "classic") for n in range(7)] + SCRIPTED_GROUPS
    with KafkaResponder(groups, brokers=3) as responder:
        listed, membership = _membership(responder)
    assert responder.listed_together is True
    assert sorted(g.group_id for g in listed) == sorted(g.group_id for g in groups)
    assert {g.group_id: g.protocol for g in listed}["jobs"] == "share"
    assert membership["legacy"].known and membership["billing"].known


def test_a_closed_adapter_frees_its_client_without_waiting_for_the_cyclic_collector(kafka_settings, topic, unique):
    """The client holds a cycle's cluster metadata (every group's coordinator, every
    partition): freed when the adapter closes, not at the collector's next full pass,
    which at 10,000 groups came only every few dozen cycles."""
    import gc
    import weakref

    group = unique("g")
    commit_offsets(kafka_settings, group, {(topic, 0): 1})
    gc.disable()
    try:
        adapter = KafkaAdapter(kafka_settings)
        adapter.connect()
        adapter.committed_offsets([group])
        metadata = weakref.ref(adapter.admin._manager.cluster)
        manager = weakref.ref(adapter.admin._manager)
        adapter.close()
        del adapter
        assert metadata() is None and manager() is None
    finally:
        gc.enable()


def test_forgetting_some_coordinators_leaves_the_copy_another_connection_is_loading_untouched():
    """Only the named groups are forgotten, into a new dict: a connection loading the old
    one outside the lock (another shard's thread) never sees it change size."""
    from monitor.kafka.adapter import _Coordinators

    kept = _Coordinators()
    key = ("k:9092",)
    kept._by_cluster[key] = (0.0, {(0, "a"): 1, (0, "b"): 2}, {})
    being_loaded = kept._by_cluster[key][1]
    kept.forget(key, None, ["a"])
    assert being_loaded == {(0, "a"): 1, (0, "b"): 2}
    assert kept._by_cluster[key][1] == {(0, "b"): 2}


def test_a_broker_answering_list_groups_with_an_error_fails_the_listing_naming_the_broker():
    from kafka import errors as kafka_errors

    with KafkaResponder(SCRIPTED_GROUPS, list_groups_error=COORDINATOR_LOAD_IN_PROGRESS) as responder:
        with KafkaAdapter(ConnectionSettings([responder.bootstrap], timeout_seconds=5)) as adapter:
            with pytest.raises(kafka_errors.CoordinatorLoadInProgressError, match="ListGroups failed on broker 0"):
                adapter.list_groups()
