"""A small Kafka-protocol responder for the group calls tansu does not serve.

Test double, and why: tansu answers neither ConsumerGroupDescribe (KIP-848) nor
DescribeGroups with members and assignments, it never answers an OffsetFetch with a
group's error (Apache Kafka does: a group the client may not describe, a coordinator
that moved), and no Apache Kafka broker can run here.
This responder listens on a real socket and answers ApiVersions, Metadata,
FindCoordinator, ListGroups, OffsetFetch, DescribeGroups and ConsumerGroupDescribe with responses
built and encoded by the same protocol classes the adapter decodes with (kafka-python's,
and the adapter's own ConsumerGroupDescribe classes built from Apache Kafka's schemas).
So the client, the framing, the version negotiation and the decoding are all real; only
the group state is scripted. Any other request closes the connection.
"""
from __future__ import annotations

import socket
import struct
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from kafka.protocol.admin import (
    DescribeGroupsRequest, DescribeGroupsResponse, ListGroupsRequest, ListGroupsResponse,
)
from kafka.protocol.broker_version_data import BROKER_API_VERSIONS
from kafka.protocol.consumer.group import OffsetFetchRequest, OffsetFetchResponse
from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment
from kafka.protocol.metadata import (
    ApiVersionsRequest, ApiVersionsResponse, FindCoordinatorRequest, FindCoordinatorResponse, MetadataRequest,
    MetadataResponse,
)

from monitor.kafka.adapter import ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse

GROUP_ID_NOT_FOUND = 69


@dataclass
class ScriptedMember:
    member_id: str
    client_id: str
    client_host: str
    partitions: dict[str, list[int]]
    assignment_sent: bool = True
    """False: DescribeGroups carries no assignment bytes (as for a group mid-rebalance)."""


@dataclass
class ScriptedGroup:
    group_id: str
    group_type: str  # classic | consumer | share
    state: str = "Stable"
    protocol_type: str = "consumer"
    members: list[ScriptedMember] = field(default_factory=list)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    offset_errors: list[int] = field(default_factory=list)
    """The error codes of its next OffsetFetch answers, one per request (the last one
    stays); none: its committed offsets."""
    left_out_of_offsets: int = 0
    """How many of the next batched OffsetFetch answers (v8+) leave the group out, with no error."""


class KafkaResponder:
    """Serve scripted groups on 127.0.0.1, as ``brokers`` brokers (nodes 0..n-1, each on a
    port of its own; the n-th group listed is coordinated by node n % brokers). Use as a
    context manager."""

    LIST_GROUPS_WAIT_SECONDS = 30.0

    def __init__(self, groups: list[ScriptedGroup], *, serve_consumer_describe: bool = True,
                 list_group_types: bool = True, brokers: int = 1, offset_fetch_max_version: int = 9,
                 list_groups_error: int = 0, topics: dict[str, int] | None = None) -> None:
        self.groups = {g.group_id: g for g in groups}
        self.coordinator = {g.group_id: n % brokers for n, g in enumerate(groups)}
        self.serve_consumer_describe = serve_consumer_describe
        self.list_group_types = list_group_types
        self.offset_fetch_max_version = offset_fetch_max_version
        """Below 8: a broker before Kafka 3.0, one OffsetFetch per group."""
        self.list_groups_error = list_groups_error
        """The error code every ListGroups is answered with (0: the groups)."""
        self.topics = dict(topics or {})
        """Topics Metadata names, with their partition counts (each led by node 0)."""
        self.requests: list[tuple[int, int]] = []
        self._servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(brokers)]
        self.ports = [server.getsockname()[1] for server in self._servers]
        self.port = self.ports[0]
        self._listing = threading.Barrier(brokers)
        self.listed_together: bool | None = None
        """With several brokers: whether every broker had been asked to ListGroups before
        any answered (each waits up to LIST_GROUPS_WAIT_SECONDS for the others)."""
        self._closed = False
        self._threads = [threading.Thread(target=self._accept, args=(server, node), daemon=True)
                         for node, server in enumerate(self._servers)]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> "KafkaResponder":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        for server in self._servers:
            server.close()

    # -- network ---------------------------------------------------------------
    def _accept(self, server: socket.socket, node: int) -> None:
        while not self._closed:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, node), daemon=True).start()

    def _serve(self, conn: socket.socket, node: int) -> None:
        with conn:
            while True:
                size_bytes = _read_exactly(conn, 4)
                if size_bytes is None:
                    return
                frame = _read_exactly(conn, struct.unpack(">i", size_bytes)[0])
                if frame is None:
                    return
                api_key, api_version = struct.unpack(">hh", frame[:4])
                self.requests.append((api_key, api_version))
                reply = self._answer(api_key, api_version, frame, node)
                if reply is None:
                    return
                conn.sendall(reply)

    # -- answers ---------------------------------------------------------------
    def _answer(self, api_key: int, version: int, frame: bytes, node: int = 0) -> bytes | None:
        handlers = {
            ApiVersionsRequest.API_KEY: (ApiVersionsRequest, self._api_versions),
            MetadataRequest.API_KEY: (MetadataRequest, self._metadata),
            FindCoordinatorRequest.API_KEY: (FindCoordinatorRequest, self._find_coordinator),
            ListGroupsRequest.API_KEY: (ListGroupsRequest, self._list_groups),
            OffsetFetchRequest.API_KEY: (OffsetFetchRequest, self._offset_fetch),
            DescribeGroupsRequest.API_KEY: (DescribeGroupsRequest, self._describe_groups),
            ConsumerGroupDescribeRequest.API_KEY: (ConsumerGroupDescribeRequest, self._consumer_group_describe),
        }
        if api_key not in handlers:
            return None
        request_class, handler = handlers[api_key]
        if api_key == ApiVersionsRequest.API_KEY and version > ApiVersionsRequest.max_version:
            version = 0
        request = request_class.decode(frame, version=version, header=True)
        response = self._list_groups(request, version, node) if api_key == ListGroupsRequest.API_KEY \
            else handler(request, version)
        response.API_VERSION = version
        response.with_header(correlation_id=request.header.correlation_id)
        return response.encode(header=True, framed=True)

    def _api_versions(self, request: Any, version: int) -> Any:
        supported = dict(BROKER_API_VERSIONS[(4, 0)])
        if not self.serve_consumer_describe:
            supported.pop(ConsumerGroupDescribeRequest.API_KEY, None)
        if not self.list_group_types:
            supported[ListGroupsRequest.API_KEY] = (0, 4)
        supported[OffsetFetchRequest.API_KEY] = (1, self.offset_fetch_max_version)
        keys = [ApiVersionsResponse.ApiVersion(api_key=k, min_version=lo, max_version=hi)
                for k, (lo, hi) in sorted(supported.items())]
        return ApiVersionsResponse(error_code=0, api_keys=keys, throttle_time_ms=0)

    def _metadata(self, request: Any, version: int) -> Any:
        brokers = [MetadataResponse.MetadataResponseBroker(node_id=node, host="127.0.0.1", port=port, rack=None)
                   for node, port in enumerate(self.ports)]
        Topic = MetadataResponse.MetadataResponseTopic
        Partition = Topic.MetadataResponsePartition
        topics = [Topic(error_code=0, name=name, topic_id=uuid.uuid4(), is_internal=False, partitions=[
            Partition(error_code=0, partition_index=p, leader_id=0, leader_epoch=0, replica_nodes=[0], isr_nodes=[0],
                      offline_replicas=[]) for p in range(count)]) for name, count in sorted(self.topics.items())]
        return MetadataResponse(throttle_time_ms=0, brokers=brokers, cluster_id="responder", controller_id=0,
                                topics=topics, error_code=0)

    def _find_coordinator(self, request: Any, version: int) -> Any:
        keys = request.coordinator_keys if version >= 4 else [request.key]
        if version >= 4:
            return FindCoordinatorResponse(throttle_time_ms=0, coordinators=[
                FindCoordinatorResponse.Coordinator(
                    key=k, node_id=self.coordinator.get(k, 0), host="127.0.0.1",
                    port=self.ports[self.coordinator.get(k, 0)], error_code=0, error_message=None) for k in keys])
        node = self.coordinator.get(request.key, 0)
        return FindCoordinatorResponse(throttle_time_ms=0, error_code=0, error_message=None, node_id=node,
                                       host="127.0.0.1", port=self.ports[node])

    def _list_groups(self, request: Any, version: int, node: int = 0) -> Any:
        if len(self.ports) > 1:
            try:
                self._listing.wait(self.LIST_GROUPS_WAIT_SECONDS)
                self.listed_together = self.listed_together is not False
            except threading.BrokenBarrierError:
                self.listed_together = False
        if self.list_groups_error:
            return ListGroupsResponse(throttle_time_ms=0, error_code=self.list_groups_error, groups=[])
        listed = [ListGroupsResponse.ListedGroup(
            group_id=g.group_id, protocol_type="share" if g.group_type == "share" else g.protocol_type,
            group_state=g.state, group_type=g.group_type) for g in self.groups.values()
            if self.coordinator[g.group_id] == node]
        return ListGroupsResponse(throttle_time_ms=0, error_code=0, groups=listed)

    def _offset_fetch(self, request: Any, version: int) -> Any:
        if version < 2 or version > 9:
            raise ValueError(f"OffsetFetch v{version}: only v2-9 (topics by name) are answered")
        if version < 8:  # one group a request, its error the answer's own
            error, committed = self._offsets_of(request.group_id)
            Topic = OffsetFetchResponse.OffsetFetchResponseTopic
            Partition = Topic.OffsetFetchResponsePartition
            return OffsetFetchResponse(throttle_time_ms=0, error_code=error, topics=[
                Topic(name=topic, partitions=[Partition(partition_index=p, committed_offset=o, committed_leader_epoch=-1,
                                                        metadata="", error_code=0) for p, o in parts])
                for topic, parts in committed.items()])
        Group = OffsetFetchResponse.OffsetFetchResponseGroup
        Topics = Group.OffsetFetchResponseTopics
        Partitions = Topics.OffsetFetchResponsePartitions
        answered = []
        for asked in request.groups:
            scripted = self.groups.get(asked.group_id)
            if scripted is not None and scripted.left_out_of_offsets > 0:
                scripted.left_out_of_offsets -= 1
                continue
            error, committed = self._offsets_of(asked.group_id)
            answered.append(Group(group_id=asked.group_id, error_code=error, topics=[
                Topics(name=topic, partitions=[Partitions(partition_index=p, committed_offset=o,
                                                          committed_leader_epoch=-1, metadata="", error_code=0)
                                               for p, o in parts])
                for topic, parts in committed.items()]))
        return OffsetFetchResponse(throttle_time_ms=0, groups=answered)

    def _offsets_of(self, group_id: str) -> tuple[int, dict[str, list[tuple[int, int]]]]:
        """The group's next error code (0: none) and, without one, its committed offsets by topic."""
        group = self.groups.get(group_id)
        error = 0
        if group is not None and group.offset_errors:
            error = group.offset_errors.pop(0) if len(group.offset_errors) > 1 else group.offset_errors[0]
        by_topic: dict[str, list[tuple[int, int]]] = {}
        if group is not None and not error:
            for (topic, partition), offset in sorted(group.committed.items()):
                by_topic.setdefault(topic, []).append((partition, offset))
        return error, by_topic

    def _describe_groups(self, request: Any, version: int) -> Any:
        described = []
        Group = DescribeGroupsResponse.DescribedGroup
        for group_id in request.groups:
            group = self.groups.get(group_id)
            if group is None or group.group_type != "classic":
                # What Apache Kafka 4 answers for a KIP-848 group: not a classic group.
                described.append(Group(error_code=GROUP_ID_NOT_FOUND, error_message=None, group_id=group_id,
                                       group_state="Dead", protocol_type="", protocol_data="", members=[]))
                continue
            members = [Group.DescribedGroupMember(
                member_id=m.member_id, group_instance_id=None, client_id=m.client_id, client_host=m.client_host,
                member_metadata=b"",
                member_assignment=ConsumerProtocolAssignment(
                    version=0, assigned_partitions=sorted(m.partitions.items()), user_data=None).encode()
                if m.assignment_sent else b"",
            ) for m in group.members]
            described.append(Group(error_code=0, error_message=None, group_id=group_id, group_state=group.state,
                                   protocol_type=group.protocol_type, protocol_data="range", members=members))
        return DescribeGroupsResponse(throttle_time_ms=0, groups=described)

    def _consumer_group_describe(self, request: Any, version: int) -> Any:
        Group = ConsumerGroupDescribeResponse.DescribedGroup
        Assignment = Group.Member.Assignment
        described = []
        for group_id in request.group_ids:
            group = self.groups.get(group_id)
            if group is None or group.group_type != "consumer":
                described.append(Group(error_code=GROUP_ID_NOT_FOUND, error_message=f"Group {group_id} not found.",
                                       group_id=group_id, group_state="", group_epoch=-1, assignment_epoch=-1,
                                       assignor_name="", members=[]))
                continue
            members = []
            for m in group.members:
                assignment = Assignment(topic_partitions=[
                    Assignment.TopicPartitions(topic_id=uuid.uuid5(uuid.NAMESPACE_DNS, topic), topic_name=topic,
                                               partitions=parts)
                    for topic, parts in sorted(m.partitions.items())])
                members.append(Group.Member(
                    member_id=m.member_id, instance_id=None, rack_id=None, member_epoch=5, client_id=m.client_id,
                    client_host=m.client_host, subscribed_topic_names=sorted(m.partitions),
                    subscribed_topic_regex=None, assignment=assignment, target_assignment=assignment))
            described.append(Group(error_code=0, error_message=None, group_id=group_id, group_state=group.state,
                                   group_epoch=5, assignment_epoch=5, assignor_name="uniform", members=members))
        return ConsumerGroupDescribeResponse(throttle_time_ms=0, groups=described)


def _read_exactly(conn: socket.socket, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        try:
            chunk = conn.recv(remaining)
        except OSError:
            return None
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
