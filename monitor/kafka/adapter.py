"""The only module that imports kafka-python. Everything it returns is plain data.

The poller talks to clusters through :class:`KafkaAdapter`; the demo's traffic simulator,
the header tap and the tests use the small producer/consumer helpers at the bottom.
Every network call is bounded by a timeout and counted, so a poll can report how many
requests it made.
"""
from __future__ import annotations

import contextvars
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kafka_errors
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic, OffsetSpec
from kafka.net.sasl import register_sasl_mechanism
from kafka.net.sasl.msk import AwsMskIamClient, SaslMechanismAwsMskIam
from kafka.net.sasl.oauth import AbstractTokenProvider
from kafka.protocol.admin import DescribeGroupsRequest
from kafka.protocol.api_message import ApiMessage
from kafka.protocol.consumer import FetchRequest, IsolationLevel
from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment
from kafka.record import MemoryRecords
from kafka.record.default_records import DefaultRecordBatch
from kafka.structs import OffsetAndMetadata

from monitor import telemetry
from monitor.kafka import messages as _kafka_messages
from monitor.kafka.oauth import ClientCredentialsTokens

log = logging.getLogger(__name__)

TopicPartitionKey = tuple[str, int]


_UNAVAILABLE_ERRORS = tuple(
    getattr(kafka_errors, name)
    for name in ("KafkaTimeoutError", "NoBrokersAvailable", "KafkaConnectionError", "NodeNotReadyError", "RequestTimedOutError")
    if hasattr(kafka_errors, name)
)


_MOVED_ERRORS = frozenset({"NotCoordinatorError", "CoordinatorNotAvailableError"})
"""The group's coordinator is elsewhere now (a coordinator still loading it stays where it is)."""


def _coordinator_moved(error: str) -> bool:
    """Whether a group's error (its name, or "name: message") says its coordinator moved."""
    return error.split(":", 1)[0] in _MOVED_ERRORS


_DESCRIBE_REQUESTS_BESIDE = 2
"""DescribeGroups and ConsumerGroupDescribe: what the membership read may have in flight
on a coordinator's connection while the offsets are read."""
COORDINATOR_TTL_SECONDS = 600.0
"""How long a cluster's group coordinators, once named, are used without asking again."""


class _Coordinators:
    """The group coordinators each cluster named, kept between the cycles of this process:
    a new connection would otherwise ask for every group again (a FindCoordinator of all
    of a cluster's groups, each cycle). Node ids are the brokers' own. A cluster's entries
    are used for COORDINATOR_TTL_SECONDS, and dropped at once when an answer says a group
    went to the wrong broker or could not be read (the adapter then asks again)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_cluster: dict[tuple[str, ...], tuple[float, dict[Any, Any], dict[Any, Any]]] = {}

    def load(self, key: tuple[str, ...], metadata: Any) -> None:
        """Into a new client's cluster metadata: the coordinators named within the TTL."""
        with self._lock:
            found = self._by_cluster.get(key)
            if found is not None and time.monotonic() - found[0] > COORDINATOR_TTL_SECONDS:
                del self._by_cluster[key]
                found = None
        if found is not None:
            # Only brokers the cluster lists now: one that left is asked about again.
            live = set(metadata._brokers)
            metadata._coordinator_brokers.update({node: broker for node, broker in found[2].items() if node in live})
            metadata._coordinators.update({key: node for key, node in found[1].items() if node in live})

    def save(self, key: tuple[str, ...], metadata: Any) -> None:
        """What the client knows now (the named ones and those it asked for); entries
        keep the time they were first named."""
        coordinators, brokers = dict(metadata._coordinators), dict(metadata._coordinator_brokers)
        if not coordinators:
            return
        with self._lock:
            found = self._by_cluster.get(key)
            named_at = found[0] if found is not None else time.monotonic()
            self._by_cluster[key] = (named_at, coordinators, brokers)

    def forget(self, key: tuple[str, ...], metadata: Any | None, group_ids: Iterable[str] | None = None) -> None:
        """Every coordinator of the cluster, or only those of ``group_ids``."""
        if group_ids is None:
            with self._lock:
                self._by_cluster.pop(key, None)
            if metadata is not None:
                metadata._coordinators.clear()
            return
        wanted = set(group_ids)
        with self._lock:  # a new dict: load() reads the one it found outside the lock
            found = self._by_cluster.get(key)
            if found is not None:
                self._by_cluster[key] = (found[0], {entry: node for entry, node in found[1].items()
                                                    if entry[1] not in wanted}, found[2])
        if metadata is not None:
            for entry in [entry for entry in metadata._coordinators if entry[1] in wanted]:
                del metadata._coordinators[entry]

    def clear(self) -> None:
        with self._lock:
            self._by_cluster.clear()


_COORDINATORS = _Coordinators()


def forget_every_coordinator() -> None:
    """Every cluster's coordinators are asked for again (tests start from nothing)."""
    _COORDINATORS.clear()


class KafkaUnavailable(Exception):
    """The cluster cannot be reached or did not answer in time."""


@dataclass(frozen=True)
class ConnectionSettings:
    bootstrap_servers: list[str]
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""
    timeout_seconds: float = 10.0
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    oauth_token_url: str = ""
    oauth_client_id: str = ""
    oauth_client_secret: str = ""
    oauth_scope: str = ""
    aws_region: str = ""
    sasl_kerberos_service_name: str = "kafka"

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL") and bool(self.sasl_mechanism)

    def client_config(self) -> dict[str, Any]:
        timeout_ms = int(self.timeout_seconds * 1000)
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": timeout_ms,
            "reconnect_backoff_max_ms": 1000,
            "client_id": "kafka-monitor",
        }
        if self.sasl_mechanism:
            config["sasl_mechanism"] = self.sasl_mechanism
            if self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
                config["sasl_plain_username"] = self.sasl_username
                config["sasl_plain_password"] = self.sasl_password
            elif self.sasl_mechanism == "OAUTHBEARER":
                config["sasl_oauth_token_provider"] = oauth_token_provider(self)
            elif self.sasl_mechanism == "AWS_MSK_IAM":
                remember_msk_region(self.bootstrap_servers, self.aws_region)
            elif self.sasl_mechanism == "GSSAPI":
                config["sasl_kerberos_service_name"] = self.sasl_kerberos_service_name or "kafka"
        if self.ssl_cafile:
            config["ssl_cafile"] = self.ssl_cafile
        if self.ssl_certfile:
            config["ssl_certfile"] = self.ssl_certfile
        if self.ssl_keyfile:
            config["ssl_keyfile"] = self.ssl_keyfile
        return config

    def __repr__(self) -> str:  # never print the password
        return f"ConnectionSettings(bootstrap_servers={self.bootstrap_servers!r}, security_protocol={self.security_protocol!r})"


# -- cloud and enterprise SASL: OAUTHBEARER (OIDC) and AWS MSK IAM --------------------------

class OidcTokenProvider(AbstractTokenProvider):
    """kafka-python's token-provider interface over :class:`ClientCredentialsTokens`."""

    def __init__(self, tokens: ClientCredentialsTokens) -> None:
        super().__init__()
        self.tokens = tokens

    def token(self) -> str:
        return self.tokens.token()


_TOKEN_PROVIDERS: dict[tuple[str, str, str, str], OidcTokenProvider] = {}
_PROVIDERS_LOCK = threading.Lock()


def oauth_token_provider(settings: ConnectionSettings) -> OidcTokenProvider:
    """One provider per (endpoint, client, secret, scope) for the life of the process, so a
    token is reused across poll cycles and refreshed only before it expires."""
    key = (settings.oauth_token_url, settings.oauth_client_id, settings.oauth_client_secret, settings.oauth_scope)
    with _PROVIDERS_LOCK:
        provider = _TOKEN_PROVIDERS.get(key)
        if provider is None:
            provider = _TOKEN_PROVIDERS[key] = OidcTokenProvider(ClientCredentialsTokens(
                settings.oauth_token_url, settings.oauth_client_id, settings.oauth_client_secret,
                settings.oauth_scope, timeout_seconds=settings.timeout_seconds))
        return provider


_MSK_REGIONS: dict[str, str] = {}
_MSK_HOST_REGION = re.compile(r"\.kafka(?:-serverless)?\.([a-z]{2}(?:-[a-z]+)+-\d)\.amazonaws\.com$")


def remember_msk_region(bootstrap_servers: Iterable[str], region: str) -> None:
    for server in bootstrap_servers:
        host = server.rsplit(":", 1)[0]
        if region:
            _MSK_REGIONS[host] = region


def msk_region(host: str) -> str:
    """The cluster's region: configured for this host, else read from an MSK broker host
    name (``b-1.name.id.c2.kafka.eu-west-1.amazonaws.com``), else AWS_REGION."""
    if host in _MSK_REGIONS:
        return _MSK_REGIONS[host]
    match = _MSK_HOST_REGION.search(host)
    if match:
        return match.group(1)
    if len(set(_MSK_REGIONS.values())) == 1:
        return next(iter(_MSK_REGIONS.values()))  # a broker found via metadata, one configured region
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""


def aws_credentials() -> tuple[str, str, str | None]:
    """Access key, secret key and session token: the standard environment variables,
    else botocore's chain (instance profile, SSO ...) when botocore is installed."""
    access, secret = os.environ.get("AWS_ACCESS_KEY_ID", ""), os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if access and secret:
        return access, secret, os.environ.get("AWS_SESSION_TOKEN") or None
    try:
        from botocore.session import Session  # type: ignore[import-not-found]  # optional, not pinned
    except ImportError:
        raise kafka_errors.KafkaConfigurationError(
            "AWS_MSK_IAM needs AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(and AWS_SESSION_TOKEN for temporary credentials), or install botocore") from None
    credentials = Session().get_credentials()
    if credentials is None:
        raise kafka_errors.KafkaConfigurationError("AWS_MSK_IAM: no AWS credentials found")
    frozen = credentials.get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, frozen.token


class MskIamMechanism(SaslMechanismAwsMskIam):
    """AWS_MSK_IAM with the region from the cluster's settings and credentials from the
    environment: kafka-python's SigV4 signing (standard library), without requiring
    botocore. Registered in place of kafka-python's own mechanism."""

    def __init__(self, **config: Any) -> None:
        if config.get("security_protocol", "") != "SASL_SSL":
            raise kafka_errors.KafkaConfigurationError("AWS_MSK_IAM requires security_protocol SASL_SSL")
        self.host = config["host"]
        self._auth = None
        self._is_done = False
        self._is_authenticated = False

    def _build_client(self) -> AwsMskIamClient:
        region = msk_region(self.host)
        if not region:
            raise kafka_errors.KafkaConfigurationError("AWS_MSK_IAM needs the cluster's aws_region")
        access, secret, token = aws_credentials()
        return AwsMskIamClient(host=self.host, access_key=access, secret_key=secret, region=region, token=token)


register_sasl_mechanism("AWS_MSK_IAM", MskIamMechanism, overwrite=True)


@dataclass(frozen=True)
class TopicRetention:
    """A topic's retention settings; None when unlimited (-1) or not told."""

    retention_ms: int | None
    retention_bytes: int | None


def _positive(value: object) -> int | None:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _config_values(entries: object) -> dict[str, object]:
    """``{config name: value}`` from a DescribeConfigs answer in any of the shapes the
    client returns (a dict of dicts with ``value``, or a list of entries)."""
    values: dict[str, object] = {}
    if isinstance(entries, dict):
        for key, entry in entries.items():
            values[str(key)] = entry.get("value") if isinstance(entry, dict) else entry
    elif isinstance(entries, (list, tuple)):
        for entry in entries:
            if isinstance(entry, dict):
                name = entry.get("name") or entry.get("config_name")
                if name:
                    values[str(name)] = entry.get("value") if "value" in entry else entry.get("config_value")
    return values


@dataclass(frozen=True)
class GroupListing:
    group_id: str
    state: str
    protocol_type: str
    group_type: str = ""
    """ListGroups v5+ (KIP-848): ``classic``, ``consumer`` or ``share``; empty from older brokers."""

    @property
    def protocol(self) -> str:
        """``classic``, ``consumer`` (KIP-848), ``share`` (KIP-932) or ``unknown``."""
        kind = self.group_type.lower()
        if kind in ("classic", "consumer", "share"):
            return kind
        if self.protocol_type.lower() == "share":
            return "share"
        # Before KIP-848 every group with a protocol type ran the classic protocol; a group
        # that only commits offsets (assign() + commit()) has none and is not telling.
        return "classic" if self.protocol_type else "unknown"


@dataclass(frozen=True)
class LogOffsets:
    log_start_offset: int | None
    log_end_offset: int


@dataclass
class TopicMetadata:
    """Partition leaders per topic; topics the cluster does not know are in ``errors``."""

    leaders: dict[str, dict[int, int]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def partition_counts(self) -> dict[str, int]:
        return {topic: len(partitions) for topic, partitions in self.leaders.items()}


@dataclass
class CommittedOffsets:
    """Committed offsets per group; groups whose fetch failed are in ``errors``."""

    offsets: dict[str, dict[TopicPartitionKey, int]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


UNANSWERED = "no answer for the group (neither offsets nor an error)"
"""The error of a group that was asked for but neither answered nor refused."""


def _unanswered(result: CommittedOffsets, asked: list[str]) -> list[str]:
    """The groups asked for that the answer names neither with offsets nor with an error."""
    return [g for g in dict.fromkeys(asked) if g not in result.offsets and g not in result.errors]


def _unanswered_reported(result: CommittedOffsets, asked: list[str]) -> CommittedOffsets:
    """A group asked for that the answer leaves out, without an error of its own, is
    reported as not read: never taken as read with no commits, nor left with the last
    poll's offsets."""
    for group_id in _unanswered(result, asked):
        result.errors[group_id] = UNANSWERED
    return result


PartitionOffset = tuple[str, int, int]
"""(topic, partition, offset)."""

FETCH_MAX_WAIT_MS = 500
"""How long a leader may wait for data. Kafka answers at once when any asked record is
readable (min_bytes 1), so this is spent only when none is (e.g. all behind open
transactions); a Kafka-protocol broker under load was seen to answer part of the
partitions when a 50 ms wait ran out."""


@dataclass(frozen=True)
class RecordTimestamp:
    """The record a consumer at ``requested_offset`` reads next, and when it was written."""

    requested_offset: int
    offset: int
    """The record actually found: the next one when the requested offset was compacted
    away, or held an aborted record or a transaction marker."""
    timestamp_ms: int
    log_append_time: bool
    """True: the broker's clock when it appended the record (LogAppendTime); False: the
    producer's clock (CreateTime)."""
    exact: bool = True
    """False when the record's batch was larger than the byte budget: the timestamp is
    then that of the batch's first record (its header is all that was read)."""
    backwards_ms: int = 0
    """How far a later record read in the same answer goes back in time (> 0: producer
    clocks disagree)."""


@dataclass
class RecordTimestamps:
    """Answers of one :meth:`KafkaAdapter.record_timestamps` call."""

    found: dict[PartitionOffset, RecordTimestamp] = field(default_factory=dict)
    missing: dict[PartitionOffset, str] = field(default_factory=dict)
    """Why no timestamp was read (no leader, error code, nothing within the bytes read)."""
    bytes: int = 0
    """Record bytes received."""


def timestamps_in_records(data: bytes, offsets: Iterable[int], aborted_transactions: Iterable[Any]
                          ) -> dict[int, RecordTimestamp]:
    """For each wanted offset, the first record at or after it that a read-committed
    consumer would see, among the record batches in ``data`` (a Fetch answer).

    Skips control batches and the batches of aborted transactions (``aborted_transactions``
    as the broker lists them: producer id and first offset), the way kafka-python's
    fetcher does. A batch cut off by the byte budget still has its header: its
    timestamps are used without its records (see :attr:`RecordTimestamp.exact`).
    """
    pending = sorted(set(offsets))
    found: dict[int, RecordTimestamp] = {}
    if not pending or not data:
        return found
    aborted_queue = sorted(((t.first_offset, t.producer_id) for t in aborted_transactions), reverse=True)
    aborted_producers: set[int] = set()
    records = MemoryRecords(data)
    batches = []
    while (batch := records.next_batch()) is not None:
        batches.append(batch)
    aborted_by_marker = _aborted_by_marker(batches)
    read: list[RecordTimestamp] = []  # answers so far: later records may go back in time
    for position, batch in enumerate(batches):
        if batch.magic == 2:
            while aborted_queue and aborted_queue[-1][0] <= batch.last_offset:
                aborted_producers.add(aborted_queue.pop()[1])
            if batch.is_control_batch:
                if batch.is_transactional:
                    aborted_producers.discard(batch.producer_id)
                continue
            if batch.is_transactional and (batch.producer_id in aborted_producers or position in aborted_by_marker):
                continue
        for record in batch:
            timestamp = record.timestamp
            if timestamp is None or timestamp < 0:
                continue  # message format v0 has no timestamps
            for index, answer in enumerate(read):
                if not answer.log_append_time and answer.timestamp_ms - timestamp > answer.backwards_ms:
                    read[index] = found[answer.requested_offset] = replace(
                        answer, backwards_ms=answer.timestamp_ms - timestamp)
            while pending and pending[0] <= record.offset:
                answer = RecordTimestamp(
                    requested_offset=pending.pop(0), offset=record.offset, timestamp_ms=timestamp,
                    log_append_time=record.timestamp_type == 1,
                )
                found[answer.requested_offset] = answer
                read.append(answer)
    rest = memoryview(data)[records.valid_bytes():]
    if pending and len(rest) >= DefaultRecordBatch.HEADER_STRUCT.size and rest[MemoryRecords.MAGIC_OFFSET] == 2:
        header = DefaultRecordBatch(rest[:DefaultRecordBatch.HEADER_STRUCT.size])
        aborted = header.is_transactional and header.producer_id in aborted_producers
        if not header.is_control_batch and not aborted and header.first_timestamp >= 0:
            append_time = header.timestamp_type == 1
            while pending and pending[0] <= header.last_offset:
                requested = pending.pop(0)
                found[requested] = RecordTimestamp(
                    requested_offset=requested, offset=max(requested, header.base_offset),
                    timestamp_ms=header.max_timestamp if append_time else header.first_timestamp,
                    log_append_time=append_time, exact=append_time or requested == header.base_offset,
                )
    return found


def _aborted_by_marker(batches: list[Any]) -> set[int]:
    """Positions of transactional batches whose transaction's marker, later in the same
    read, says abort. Kafka also lists aborted transactions in the Fetch answer; some
    Kafka-protocol brokers do not, and the marker says the same."""
    aborted: set[int] = set()
    open_batches: dict[int, list[int]] = {}  # producer id -> positions since its last marker
    for position, batch in enumerate(batches):
        if batch.magic != 2 or not batch.is_transactional:
            continue
        if not batch.is_control_batch:
            open_batches.setdefault(batch.producer_id, []).append(position)
            continue
        marker = next(iter(batch), None)
        positions = open_batches.pop(batch.producer_id, [])
        if marker is not None and getattr(marker, "abort", False):
            aborted.update(positions)
    return aborted


def _describe_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


def _error_name(error_code: int) -> str:
    return kafka_errors.for_code(error_code).__name__


class KafkaAdapter:
    """A connection to one cluster for one poll cycle. Use as a context manager."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.requests = 0
        self._admin: KafkaAdminClient | None = None

    # -- lifecycle ----------------------------------------------------------
    def __enter__(self) -> "KafkaAdapter":
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self) -> None:
        timeout_ms = int(self.settings.timeout_seconds * 1000)
        with telemetry.span("kafka.connect", **{"messaging.system": "kafka"}):
            try:
                admin = KafkaAdminClient(bootstrap_timeout_ms=timeout_ms, **self.settings.client_config())
            except kafka_errors.KafkaError as exc:
                raise KafkaUnavailable(
                    f"cannot reach {', '.join(self.settings.bootstrap_servers)}: {_describe_error(exc)}"
                ) from exc
            except OSError as exc:
                raise KafkaUnavailable(f"cannot reach {', '.join(self.settings.bootstrap_servers)}: {exc}") from exc
        self._admin = admin
        self._count_requests(admin)
        _COORDINATORS.load(self._cluster_key, admin._manager.cluster)

    @property
    def _cluster_key(self) -> tuple[str, ...]:
        return tuple(sorted(self.settings.bootstrap_servers))

    def forget_coordinators(self, group_ids: Iterable[str] | None = None) -> None:
        """Ask the cluster again for every group's coordinator, or those of ``group_ids``
        (this client and the next)."""
        _COORDINATORS.forget(self._cluster_key, self._admin._manager.cluster if self._admin is not None else None,
                             group_ids)

    def _count_requests(self, admin: KafkaAdminClient) -> None:
        manager = admin._manager  # kafka-python 3 routes every request through this object
        original_send = manager.send
        adapter = self

        def counting_send(*args: Any, **kwargs: Any) -> Any:
            adapter.requests += 1
            return original_send(*args, **kwargs)

        manager.send = counting_send

    def close(self) -> None:
        if self._admin is not None:
            try:
                _COORDINATORS.save(self._cluster_key, self._admin._manager.cluster)
                self._admin.close()
            except Exception:  # noqa: BLE001 - closing must never mask the real outcome
                log.debug("closing admin client failed", exc_info=True)
            finally:
                # The request counter wraps the manager's own send, a reference cycle:
                # without it the client is freed now, not at the collector's next full pass.
                manager = getattr(self._admin, "_manager", None)
                if manager is not None:
                    manager.__dict__.pop("send", None)
                self._admin = None

    @property
    def admin(self) -> KafkaAdminClient:
        if self._admin is None:
            raise RuntimeError("KafkaAdapter used outside its context")
        return self._admin

    def _call(self, name: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        with telemetry.span(f"kafka.{name}", **{"messaging.system": "kafka"}):
            try:
                return func(*args, **kwargs)
            except _UNAVAILABLE_ERRORS as exc:
                self.forget_coordinators()  # a broker went away: who coordinates what may have changed
                raise KafkaUnavailable(f"{name} failed: {_describe_error(exc)}") from exc

    # -- reads ---------------------------------------------------------------
    def list_groups(self) -> list[GroupListing]:
        """Every consumer group of the cluster: one ListGroups request per broker, all in
        flight together (kafka-python's list_groups awaits each broker before asking the
        next: one round trip per broker), answers read straight into listings."""
        admin = self.admin

        async def list_all() -> list[Any]:
            in_flight = [(broker.node_id, admin._manager.send(admin._list_groups_request(), node_id=broker.node_id))
                         for broker in admin._manager.cluster.brokers()]
            responses = [(node, await future) for node, future in in_flight]
            for node, response in responses:
                if response.error_code:
                    raise kafka_errors.for_code(response.error_code)(f"ListGroups failed on broker {node}")
            return [response for _, response in responses]

        return [
            GroupListing(
                group_id=group.group_id,
                state=str(getattr(group, "group_state", None) or ""),
                protocol_type=str(getattr(group, "protocol_type", None) or ""),
                group_type=str(getattr(group, "group_type", None) or ""),
            )
            for response in self._call("list_groups", admin._manager.run, list_all)
            for group in response.groups
        ]

    def committed_offsets(self, group_ids: Iterable[str]) -> CommittedOffsets:
        """Committed offsets of many groups, batched per coordinator.

        A group the coordinator answers with an error (not authorized, say) is reported
        apart and the others are read from the same answer. Groups whose coordinator
        moved are asked again once, after asking who coordinates them now (only theirs
        are forgotten). Only when a request fails as a whole does this fall back to
        kafka-python's reads (which raise on the first group-level error) and then to one
        request per group.
        """
        group_ids = list(group_ids)
        result = CommittedOffsets()
        if not group_ids:
            return result
        answered = self._batched_committed_offsets(group_ids)
        if answered is not None:
            result.offsets, result.errors = answered
            # Groups whose coordinator moved, and those the answer left out (a coordinator
            # that no longer holds them, or none found): asked once more, coordinators anew.
            moved = [g for g, error in result.errors.items() if _coordinator_moved(error)] \
                + _unanswered(result, group_ids)
            if moved:
                self.forget_coordinators(moved)  # asked for again below, and by the next cycle
                try:
                    again = self._batched_committed_offsets(moved)
                except KafkaUnavailable as exc:  # what the first answer read stands
                    log.info("offsets of %d group(s) whose coordinator moved not read again: %s", len(moved), exc)
                    again = None
                if again is not None:
                    for group_id in moved:
                        if group_id in again[0] or group_id in again[1]:
                            result.errors.pop(group_id, None)
                    result.offsets.update(again[0])
                    result.errors.update(again[1])
            return _unanswered_reported(result, group_ids)
        self.forget_coordinators()  # perhaps a coordinator moved: the path below asks again
        try:
            raw = self._call("list_group_offsets", self.admin.list_group_offsets, {g: None for g in group_ids})
        except KafkaUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - fall back group by group
            log.info("batched offset fetch failed (%s); falling back per group", _describe_error(exc))
            raw = {}
            for group_id in group_ids:
                try:
                    raw.update(self._call("list_group_offsets", self.admin.list_group_offsets, {group_id: None}))
                except KafkaUnavailable:
                    raise
                except Exception as group_exc:  # noqa: BLE001
                    result.errors[group_id] = _describe_error(group_exc)
        for group_id, partitions in raw.items():
            result.offsets[group_id] = {
                (tp.topic, tp.partition): meta.offset
                for tp, meta in partitions.items()
                if meta.offset is not None and meta.offset >= 0
            }
        return _unanswered_reported(result, group_ids)

    def committed_offsets_and_membership(self, group_ids: Iterable[str], listings: Iterable[GroupListing]
                                         ) -> tuple[CommittedOffsets, dict[str, "GroupMembership"]]:
        """:meth:`committed_offsets` and :meth:`group_membership` together: the groups'
        coordinators are looked up once, then the DescribeGroups requests go out on a
        second thread while the OffsetFetch answers are read on this one, so the brokers
        answer both at once instead of one after the other. Failures are each method's own."""
        group_ids, listings = list(group_ids), list(listings)
        wanted = {g.group_id for g in listings} | set(group_ids)
        if wanted:
            admin = self.admin
            self._call("find_coordinator", admin._manager.run, admin._find_coordinator_ids, sorted(wanted))
        context = contextvars.copy_context()  # the caller's trace span stays the parent
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-describe") as pool:
            membership = pool.submit(context.run, self.group_membership, listings)
            committed = self.committed_offsets(group_ids)
            return committed, membership.result()

    def _batched_committed_offsets(self, group_ids: list[str]
                                   ) -> tuple[dict[str, dict[TopicPartitionKey, int]], dict[str, str]] | None:
        """The same requests as ``list_group_offsets``, their answers read straight into
        plain dicts (kafka-python builds two objects per partition first: tens of
        thousands per cycle), with each group that answered an error (its own, or one of
        its partitions') in the second dict instead. None when a request failed as a
        whole: the caller then takes the path that reports each bad group apart."""
        admin = self.admin

        async def fetch() -> list[tuple[str | None, Any]]:
            by_coordinator: dict[int, list[str]] = {}
            for group_id, coordinator in (await admin._find_coordinator_ids(group_ids)).items():
                by_coordinator.setdefault(coordinator, []).append(group_id)
            # Every coordinator's request goes out before any answer is awaited: one round
            # trip however many brokers coordinate the groups. Brokers before OffsetFetch v8
            # (Kafka 3.0) take one request per group: fewer in flight on one connection than
            # the client allows (the describe requests may go out beside them), the rest as
            # answers come back.
            queues = [(coordinator, list(admin._list_group_offsets_requests({g: None for g in ids})))
                      for coordinator, ids in by_coordinator.items()]
            allowed = int(admin.config.get("max_in_flight_requests_per_connection", 5))
            window = max(1, allowed - _DESCRIBE_REQUESTS_BESIDE)
            answers: list[tuple[str | None, Any]] = []
            while any(requests for _, requests in queues):
                in_flight = [(group_id, admin._manager.send(request, node_id=coordinator))
                             for coordinator, requests in queues for group_id, request in requests[:window]]
                queues = [(coordinator, requests[window:]) for coordinator, requests in queues]
                answers.extend([(group_id, await future) for group_id, future in in_flight])
            return answers

        try:
            responses = self._call("list_group_offsets", admin._manager.run, fetch)
        except KafkaUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - the caller's path reports it
            log.info("batched offset fetch failed (%s); reading the groups another way", _describe_error(exc))
            return None
        offsets: dict[str, dict[TopicPartitionKey, int]] = {}
        errors: dict[str, str] = {}
        for group_id, response in responses:
            batched = response.API_VERSION >= 8
            # Before v8 one request per group, its error code the group's own.
            for group in response.groups if batched else [response]:
                name = group.group_id if batched else group_id
                if group.error_code:
                    errors[name] = _error_name(group.error_code)
                    continue
                committed: dict[TopicPartitionKey, int] = {}
                failed = 0
                for topic in group.topics:
                    topic_name = topic.name
                    for partition in topic.partitions:
                        if partition.error_code:
                            failed = failed or partition.error_code
                            continue
                        offset = partition.committed_offset
                        if offset is not None and offset >= 0:
                            committed[(topic_name, partition.partition_index)] = offset
                if failed:
                    errors[name] = _error_name(failed)  # a group is read whole or not at all
                else:
                    offsets[name] = committed
        return offsets, errors

    def topic_metadata(self, topics: Iterable[str]) -> TopicMetadata:
        """Partitions and their leaders for the given topics: one Metadata request."""
        wanted = sorted(set(topics))
        result = TopicMetadata()
        if not wanted:
            return result
        raw = self._call("describe_topics", self.admin.describe_topics, wanted)
        for topic in raw:
            name = topic["topic"] if "topic" in topic else topic["name"]
            error_code = topic.get("error_code", 0)
            if error_code:
                result.errors[name] = _error_name(error_code)
                continue
            result.leaders[name] = {
                part["partition_index"]: part.get("leader_id", -1) for part in topic.get("partitions") or []
            }
        for name in wanted:
            if name not in result.leaders and name not in result.errors:
                result.errors[name] = "topic not in cluster metadata"
        return result

    def log_offsets(
        self, partitions: Iterable[TopicPartitionKey], leaders: dict[TopicPartitionKey, int] | None = None,
    ) -> tuple[dict[TopicPartitionKey, LogOffsets], dict[TopicPartitionKey, str]]:
        """Log-start and log-end offsets of many partitions, batched per leader broker.

        With ``leaders`` (from :meth:`topic_metadata`) the log-end and log-start
        ListOffsets requests of every leader are sent together, so the whole lookup
        costs one round trip and no further Metadata request. Without them, kafka-python
        looks the leaders up itself (one Metadata and one ListOffsets request per spec).
        A partition that errors (e.g. deleted topic) is returned in the error map
        instead of failing the batch.
        """
        wanted = sorted(set(partitions))
        if not wanted:
            return {}, {}
        errors: dict[TopicPartitionKey, str] = {}
        if leaders is not None:
            return self._pipelined_log_offsets(wanted, leaders, errors), errors
        ends = self._list_offsets(wanted, OffsetSpec.LATEST, errors)
        starts = self._list_offsets([tp for tp in wanted if tp in ends], OffsetSpec.EARLIEST, errors)
        result = {
            tp: LogOffsets(log_start_offset=starts.get(tp), log_end_offset=end)
            for tp, end in ends.items()
        }
        return result, errors

    def _pipelined_log_offsets(self, wanted: list[TopicPartitionKey], leaders: dict[TopicPartitionKey, int],
                               errors: dict[TopicPartitionKey, str]) -> dict[TopicPartitionKey, LogOffsets]:
        by_leader: dict[int, list[TopicPartition]] = {}
        for tp in wanted:
            leader = leaders.get(tp)
            if leader is None:
                errors[tp] = "partition not in cluster metadata"
            elif leader < 0:
                errors[tp] = "partition has no leader"
            else:
                by_leader.setdefault(leader, []).append(TopicPartition(*tp))
        if not by_leader:
            return {}
        admin = self.admin
        isolation = IsolationLevel.READ_UNCOMMITTED.value

        async def send_all() -> list[tuple[Any, Any]]:
            # Both specs for every leader go out before any answer is awaited.
            in_flight = []
            for leader, tps in by_leader.items():
                for spec in (OffsetSpec.LATEST, OffsetSpec.EARLIEST):
                    request = admin._list_partition_offsets_request({tp: spec for tp in tps}, isolation)
                    in_flight.append((spec, admin._manager.send(request, node_id=leader)))
            return [(spec, await future) for spec, future in in_flight]

        responses = self._call("list_offsets", admin._manager.run, send_all)
        ends: dict[TopicPartitionKey, int] = {}
        starts: dict[TopicPartitionKey, int] = {}
        for spec, response in responses:
            target = ends if spec == OffsetSpec.LATEST else starts
            for topic in response.topics:
                for part in topic.partitions:
                    key = (topic.name, part.partition_index)
                    if part.error_code:
                        errors[key] = _error_name(part.error_code)
                    else:
                        target[key] = part.offset
        return {
            tp: LogOffsets(log_start_offset=starts.get(tp), log_end_offset=end)
            for tp, end in ends.items() if tp not in errors
        }

    def _list_offsets(self, partitions: list[TopicPartitionKey], spec: Any,
                      errors: dict[TopicPartitionKey, str]) -> dict[TopicPartitionKey, int]:
        specs = {TopicPartition(t, p): spec for t, p in partitions}
        try:
            raw = self._call("list_offsets", self.admin.list_partition_offsets, specs)
            return {(tp.topic, tp.partition): ot.offset for tp, ot in raw.items()}
        except KafkaUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - isolate the bad partitions topic by topic
            log.info("batched ListOffsets failed (%s); retrying per topic", _describe_error(exc))
        out: dict[TopicPartitionKey, int] = {}
        by_topic: dict[str, list[TopicPartition]] = {}
        for tp in specs:
            by_topic.setdefault(tp.topic, []).append(tp)
        for topic, tps in by_topic.items():
            try:
                raw = self._call("list_offsets", self.admin.list_partition_offsets, {tp: spec for tp in tps})
                out.update({(tp.topic, tp.partition): ot.offset for tp, ot in raw.items()})
            except KafkaUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001
                for tp in tps:
                    errors[(tp.topic, tp.partition)] = _describe_error(exc)
        return out

    def round_trip_floor(self, group_ids: list[str], leaders: dict[TopicPartitionKey, int],
                         earliest: bool = False) -> float:
        """Benchmark helper: seconds for one OffsetFetch of all ``group_ids`` followed by one
        ListOffsets of all partitions in ``leaders``, the least any lag poll must do
        (single-broker clusters: one coordinator, one leader). With ``earliest``, the
        ListOffsets of the log starts goes out together with that of the log ends (a poll
        reads both). Answers are decoded by kafka-python, as any client must."""
        admin = self.admin
        coordinators = self._call("find_coordinator", admin._manager.run, admin._find_coordinator_ids, group_ids)
        coordinator = next(iter(coordinators.values()))
        leader = next(iter(leaders.values()))
        (_, fetch_request), = admin._list_group_offsets_requests({g: None for g in group_ids})
        specs = (OffsetSpec.LATEST, OffsetSpec.EARLIEST) if earliest else (OffsetSpec.LATEST,)
        offsets_requests = [admin._list_partition_offsets_request(
            {TopicPartition(*tp): spec for tp in leaders}, IsolationLevel.READ_UNCOMMITTED.value) for spec in specs]

        async def two_round_trips() -> float:
            started = time.perf_counter()
            await admin._manager.send(fetch_request, node_id=coordinator)
            in_flight = [admin._manager.send(request, node_id=leader) for request in offsets_requests]
            for future in in_flight:
                await future
            return time.perf_counter() - started

        return self._call("round_trip_floor", admin._manager.run, two_round_trips)

    # -- record timestamps (time lag) -----------------------------------------
    def record_timestamps(
        self, wanted: Iterable[PartitionOffset], leaders: dict[TopicPartitionKey, int], *,
        partition_max_bytes: int, max_bytes: int,
    ) -> RecordTimestamps:
        """The timestamp of the record at each wanted (topic, partition, offset): one
        Fetch request per partition leader, all in flight together.

        A partition appears once per request, at its lowest wanted offset; the other
        wanted offsets of that partition are answered when the bytes read reach them.
        ``partition_max_bytes`` bounds each partition and ``max_bytes`` the whole
        read, split between the leaders (Kafka honours both, except that the first
        batch of an answer comes whole even when larger, KIP-74; a broker that sends more
        is still counted in ``RecordTimestamps.bytes``). Read-committed isolation:
        control batches and the records of aborted transactions are skipped, as a
        consumer skips them; a committed offset that no longer exists (compaction)
        is answered by the next record. See :func:`timestamps_in_records`.
        """
        by_partition: dict[TopicPartitionKey, list[int]] = {}
        for topic, partition, offset in wanted:
            by_partition.setdefault((topic, partition), []).append(offset)
        result = RecordTimestamps()
        by_leader: dict[int, dict[str, list[Any]]] = {}
        for key, offsets in sorted(by_partition.items()):
            leader = leaders.get(key, -1)
            if leader < 0:
                for offset in offsets:
                    result.missing[(*key, offset)] = "partition has no leader"
                continue
            by_leader.setdefault(leader, {}).setdefault(key[0], []).append(FetchRequest.FetchTopic.FetchPartition(
                partition=key[1], fetch_offset=min(offsets), partition_max_bytes=partition_max_bytes,
                current_leader_epoch=-1, log_start_offset=-1,
            ))
        if not by_leader:
            return result
        per_leader_bytes = max(1, max_bytes // len(by_leader))
        admin = self.admin
        isolation = IsolationLevel.READ_COMMITTED.value
        requests = {
            leader: FetchRequest(
                replica_id=-1, max_wait_ms=FETCH_MAX_WAIT_MS, min_bytes=1,
                max_bytes=min(per_leader_bytes, partition_max_bytes * sum(len(p) for p in topics.values())),
                isolation_level=isolation, session_id=0, session_epoch=-1,
                topics=[FetchRequest.FetchTopic(topic=topic, partitions=parts) for topic, parts in topics.items()],
                forgotten_topics_data=[], rack_id="",
                # v13+ name topics by id; v4 is the first with read_committed isolation.
                min_version=FetchRequest.min_version_for_isolation_level(isolation), max_version=12,
            )
            for leader, topics in by_leader.items()
        }

        async def send_all() -> list[Any]:
            in_flight = [admin._manager.send(request, node_id=leader) for leader, request in requests.items()]
            return [await future for future in in_flight]

        responses = self._call("fetch", admin._manager.run, send_all)
        answered: set[TopicPartitionKey] = set()
        for response in responses:
            if response.error_code:
                continue  # every partition of that leader stays unanswered, below
            for topic in response.responses:
                for part in topic.partitions:
                    key = (topic.topic, part.partition_index)
                    if key not in by_partition:
                        continue
                    offsets = by_partition[key]
                    answered.add(key)
                    if part.error_code:
                        for offset in offsets:
                            result.missing[(*key, offset)] = _error_name(part.error_code)
                        continue
                    data = bytes(part.records or b"")
                    result.bytes += len(data)
                    found = timestamps_in_records(data, offsets, part.aborted_transactions or [])
                    for offset in offsets:
                        if offset in found:
                            result.found[(*key, offset)] = found[offset]
                        else:
                            result.missing[(*key, offset)] = "record not within the bytes read"
        for key, offsets in by_partition.items():
            if key not in answered:
                for offset in offsets:
                    result.missing.setdefault((*key, offset), "no answer from the partition leader")
        return result

    def group_members(self, group_ids: Iterable[str]) -> dict[str, int]:
        """Number of active members per group; optional detail, empty on any failure
        (some brokers answer DescribeGroups with values kafka-python cannot parse)."""
        group_ids = list(group_ids)
        if not group_ids:
            return {}
        try:
            raw = self._call("describe_groups", self.admin.describe_groups, group_ids)
        except Exception as exc:  # noqa: BLE001
            log.debug("describe_groups failed: %s", _describe_error(exc))
            return {}
        members: dict[str, int] = {}
        for group_id, info in raw.items():
            if isinstance(info, dict):
                members[group_id] = len(info.get("members") or [])
        return members

    def group_membership(self, listings: Iterable[GroupListing]) -> dict[str, "GroupMembership"]:
        """Members, hosts and assigned partitions per group (see :func:`read_group_membership`)."""
        return read_group_membership(self, listings)

    def topic_retention(self, topics: Iterable[str]) -> dict[str, TopicRetention]:
        """``retention.ms`` and ``retention.bytes`` per topic (DescribeConfigs, one request
        for all topics); topics the broker does not answer for are left out, and any
        failure leaves them all out (the forecast then falls back to the log-start rate)."""
        names = sorted(set(topics))
        if not names:
            return {}
        resources = [ConfigResource(ConfigResourceType.TOPIC, name, configs=None) for name in names]
        try:
            raw = self._call("describe_configs", self.admin.describe_configs, resources, config_filter="all")
        except Exception as exc:  # noqa: BLE001 - optional detail
            log.debug("describe_configs failed: %s", _describe_error(exc))
            return {}
        found: dict[str, TopicRetention] = {}
        for resource_type, by_name in (raw or {}).items() if isinstance(raw, dict) else ():
            if not isinstance(by_name, dict):
                continue
            for name, entries in by_name.items():
                values = _config_values(entries)
                found[str(name)] = TopicRetention(_positive(values.get("retention.ms")),
                                                  _positive(values.get("retention.bytes")))
        return found

    def topic_partition_counts(self, topics: Iterable[str] | None = None) -> dict[str, int]:
        """Partition count per topic from cluster metadata (internal topics excluded)."""
        raw = self._call("describe_topics", self.admin.describe_topics, list(topics) if topics else None)
        counts: dict[str, int] = {}
        for topic in raw:
            if topic.get("error_code", 0) == 0 and not topic.get("is_internal"):
                counts[topic["topic"] if "topic" in topic else topic["name"]] = len(topic.get("partitions") or [])
        return counts


# -- group membership: DescribeGroups (classic) and ConsumerGroupDescribe (KIP-848) ----

class ConsumerGroupDescribeRequest(ApiMessage, load_json=_kafka_messages):  # type: ignore[call-arg]
    """API key 69 (KIP-848): kafka-python 3.0.12 knows the key but ships no message
    class, so this one is built from Apache Kafka's published schema (in
    :mod:`monitor.kafka.messages`)."""


class ConsumerGroupDescribeResponse(ApiMessage, load_json=_kafka_messages):  # type: ignore[call-arg]
    """Registered with kafka-python's response registry when defined, so answers to
    :class:`ConsumerGroupDescribeRequest` decode like any other."""


PROTOCOLS = ("classic", "consumer", "share", "unknown")


@dataclass(frozen=True)
class GroupMember:
    member_id: str
    client_id: str
    host: str
    partitions: tuple[TopicPartitionKey, ...] | None
    """None when the broker did not say (a classic group between rebalances, or a broker
    that sends no assignment): unknown, not "nothing assigned"."""
    instance_id: str | None = None


@dataclass(frozen=True)
class GroupMembership:
    """Who is in a group and what each member owns, as the coordinator says.

    ``known`` is False when the broker did not tell (no answer, an answer this client
    cannot read, share groups): then ``members`` is empty and means nothing."""

    group_id: str
    protocol: str
    state: str = ""
    members: tuple[GroupMember, ...] = ()
    known: bool = False
    error: str = ""

    def owners(self) -> dict[TopicPartitionKey, str]:
        """Member id per assigned partition (of the members whose assignment is known)."""
        return {tp: member.member_id for member in self.members for tp in member.partitions or ()}


def _host(client_host: str | None) -> str:
    # Kafka reports InetAddress.toString(): "/10.2.3.4" or "name/10.2.3.4".
    host = client_host or ""
    return host[1:] if host.startswith("/") else host


def _classic_partitions(protocol_type: str, assignment: bytes | None) -> tuple[TopicPartitionKey, ...] | None:
    """Partitions in a classic member's assignment; None when there is none to read (only
    sent for Stable groups) or its format is not the ``consumer`` protocol's."""
    if protocol_type != "consumer" or not assignment:
        return None
    decoded = ConsumerProtocolAssignment.decode(bytes(assignment))
    return tuple(sorted((topic, partition) for topic, partitions in decoded.assigned_partitions
                        for partition in partitions))


def _classic_memberships(response: Any, protocols: dict[str, str]) -> dict[str, GroupMembership]:
    result: dict[str, GroupMembership] = {}
    for group in response.groups:
        protocol = protocols.get(group.group_id, "classic")
        if group.error_code:
            result[group.group_id] = GroupMembership(group.group_id, protocol, error=_error_name(group.error_code))
            continue
        members = []
        for member in group.members:
            try:
                partitions = _classic_partitions(group.protocol_type, member.member_assignment)
            except Exception:  # noqa: BLE001 - a member we cannot read still counts as present
                partitions = None
            members.append(GroupMember(
                member_id=member.member_id, client_id=member.client_id or "", host=_host(member.client_host),
                partitions=partitions, instance_id=getattr(member, "group_instance_id", None),
            ))
        result[group.group_id] = GroupMembership(
            group.group_id, protocol, state=group.group_state or "", members=tuple(members), known=True)
    return result


def _consumer_memberships(response: Any) -> dict[str, GroupMembership]:
    result: dict[str, GroupMembership] = {}
    for group in response.groups:
        if group.error_code:
            detail = _error_name(group.error_code) + (f": {group.error_message}" if group.error_message else "")
            result[group.group_id] = GroupMembership(group.group_id, "consumer", error=detail)
            continue
        members = tuple(
            GroupMember(
                member_id=member.member_id, client_id=member.client_id or "", host=_host(member.client_host),
                partitions=tuple(sorted((tp.topic_name, p) for tp in member.assignment.topic_partitions
                                        for p in tp.partitions)),
                instance_id=member.instance_id,
            )
            for member in group.members
        )
        result[group.group_id] = GroupMembership(
            group.group_id, "consumer", state=group.group_state or "", members=members, known=True)
    return result


def read_group_membership(adapter: "KafkaAdapter", listings: Iterable[GroupListing]) -> dict[str, GroupMembership]:
    """Members and assignments of the listed groups: one round trip per coordinator.

    Classic groups are read with DescribeGroups, KIP-848 groups with
    ConsumerGroupDescribe; both go out before either answer is awaited. Authorized
    operations are not requested (some brokers answer values kafka-python cannot read).
    A group a classic describe does not find, on a broker that serves
    ConsumerGroupDescribe, is asked again that way (brokers that list no group type).
    Share groups are listed as such: their members are not read here. Failures leave
    the group's membership unknown, never empty."""
    listings = list(listings)
    result = {g.group_id: GroupMembership(g.group_id, g.protocol) for g in listings}
    wanted = [g for g in listings if g.protocol != "share"]
    if not wanted:
        return result
    admin = adapter.admin
    protocols = {g.group_id: g.protocol for g in wanted}

    def supports_consumer_describe() -> bool:
        try:
            admin._manager.broker_version_data.api_version(ConsumerGroupDescribeRequest)
            return True
        except kafka_errors.KafkaError:
            return False

    async def describe() -> list[tuple[str, list[str], Any]]:
        coordinators = await admin._find_coordinator_ids([g.group_id for g in wanted])
        by_call: dict[tuple[int, str], list[str]] = {}
        for group in wanted:
            call = "consumer" if group.protocol == "consumer" else "classic"
            by_call.setdefault((coordinators[group.group_id], call), []).append(group.group_id)
        in_flight = []
        for (coordinator, call), ids in by_call.items():
            request = (ConsumerGroupDescribeRequest(group_ids=ids, include_authorized_operations=False)
                       if call == "consumer" else
                       DescribeGroupsRequest(groups=ids, include_authorized_operations=False))
            in_flight.append((call, ids, admin._manager.send(request, node_id=coordinator)))
        answers = []
        for call, ids, future in in_flight:
            try:
                answers.append((call, ids, await future))
            except _UNAVAILABLE_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - these groups stay unknown
                answers.append((call, ids, exc))
        return answers

    def read(answers: list[tuple[str, list[str], Any]]) -> None:
        for call, ids, answer in answers:
            if isinstance(answer, Exception):
                for group_id in ids:
                    result[group_id] = GroupMembership(group_id, protocols[group_id], error=_describe_error(answer))
                continue
            try:
                found = _consumer_memberships(answer) if call == "consumer" else _classic_memberships(answer, protocols)
            except Exception as exc:  # noqa: BLE001 - an answer we cannot read: unknown, not empty
                found = {g: GroupMembership(g, protocols[g], error=_describe_error(exc)) for g in ids}
            result.update({g: m for g, m in found.items() if g in protocols})

    try:
        read(adapter._call("describe_groups", admin._manager.run, describe))
        moved = [g for g, m in result.items() if _coordinator_moved(m.error)]
        if moved:
            adapter.forget_coordinators(moved)  # the next cycle asks who coordinates them
        retry = [g for g in wanted if g.protocol != "consumer" and result[g.group_id].error == "GroupIdNotFoundError"]
        if retry and supports_consumer_describe():
            consumer_listings = [GroupListing(g.group_id, g.state, g.protocol_type, "consumer") for g in retry]
            protocols.update({g.group_id: "consumer" for g in retry})
            wanted = consumer_listings
            read(adapter._call("describe_groups", admin._manager.run, describe))
    except KafkaUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - membership is optional detail; lag must not fail for it
        log.info("describing groups failed: %s", _describe_error(exc))
        for group_id, membership in result.items():
            if not membership.known and not membership.error:
                result[group_id] = GroupMembership(group_id, membership.protocol, error=_describe_error(exc))
    return result


# -- producer / consumer helpers (demo simulator, header tap, tests) ------------------

def create_topics(settings: ConnectionSettings, partitions_by_topic: dict[str, int],
                  configs: dict[str, dict[str, str]] | None = None) -> None:
    """Create topics that do not exist yet (with ``configs`` per topic, e.g.
    ``retention.ms``); grow partition counts that are too small."""
    admin = KafkaAdminClient(bootstrap_timeout_ms=int(settings.timeout_seconds * 1000), **settings.client_config())
    try:
        existing = {t["topic"] if "topic" in t else t["name"]: len(t.get("partitions") or [])
                    for t in admin.describe_topics()}
        new = [NewTopic(name, count, 1, topic_configs=(configs or {}).get(name, {}))
               for name, count in partitions_by_topic.items() if name not in existing]
        if new:
            try:
                admin.create_topics(new)
            except kafka_errors.TopicAlreadyExistsError:
                pass
        grow = {name: NewPartitions(count) for name, count in partitions_by_topic.items()
                if name in existing and existing[name] < count}
        if grow:
            admin.create_partitions(grow)
    finally:
        admin.close()


class Producer:
    """A small wrapper producing keyed messages with headers.

    ``batch_size=1``: some Kafka-protocol brokers report a wrong log-end offset after
    multi-record batches; one record per batch keeps the demo and tests exact.
    """

    def __init__(self, settings: ConnectionSettings, transactional_id: str | None = None) -> None:
        extra: dict[str, Any] = {"transactional_id": transactional_id, "acks": "all"} if transactional_id else {"acks": 1}
        self._producer = KafkaProducer(batch_size=1, linger_ms=0, **extra, **settings.client_config())
        if transactional_id:
            self._producer.init_transactions()

    def send(self, topic: str, value: bytes, key: str | None = None,
             headers: dict[str, str] | None = None, partition: int | None = None,
             timestamp_ms: int | None = None) -> tuple[int, int]:
        """Send one message and wait for its offset. ``timestamp_ms``: its CreateTime
        (default: now, by this machine's clock)."""
        future = self._producer.send(
            topic,
            value=value,
            key=key.encode() if key is not None else None,
            headers=[(k, v.encode()) for k, v in (headers or {}).items()],
            partition=partition,
            timestamp_ms=timestamp_ms,
        )
        metadata = future.get(timeout=10)
        return metadata.partition, metadata.offset

    def send_many(self, topic: str, partition: int, count: int, value: bytes = b"event",
                  timestamp_ms: int | None = None) -> None:
        """Send ``count`` messages to one partition without waiting for each, then wait
        for all of them (one record per batch still: see the class)."""
        futures = [self._producer.send(topic, value=value, partition=partition, timestamp_ms=timestamp_ms)
                   for _ in range(count)]
        self._producer.flush(timeout=10)
        for future in futures:
            future.get(timeout=10)

    def begin_transaction(self) -> None:
        self._producer.begin_transaction()

    def commit_transaction(self) -> None:
        self._producer.commit_transaction()

    def abort_transaction(self) -> None:
        self._producer.abort_transaction()

    def close(self) -> None:
        self._producer.close(timeout=5)


@dataclass(frozen=True)
class ConsumedMessage:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    timestamp_ms: int
    headers: dict[str, str]


class AssignedConsumer:
    """A consumer with a group id that reads assigned partitions and commits explicitly.

    Uses ``assign()`` rather than ``subscribe()``: no group rebalance, so starting is
    instant and the committed offsets are exactly what the caller says.
    """

    def __init__(self, settings: ConnectionSettings, group_id: str, partitions: Iterable[TopicPartitionKey]) -> None:
        self._consumer = KafkaConsumer(
            group_id=group_id, enable_auto_commit=False, auto_offset_reset="earliest",
            consumer_timeout_ms=1000, **settings.client_config(),
        )
        self._partitions = [TopicPartition(t, p) for t, p in partitions]
        self._consumer.assign(self._partitions)

    def poll(self, max_records: int = 100, timeout_seconds: float = 1.0) -> list[ConsumedMessage]:
        batches = self._consumer.poll(timeout_ms=int(timeout_seconds * 1000), max_records=max_records)
        messages = []
        for records in batches.values():
            for record in records:
                messages.append(ConsumedMessage(
                    topic=record.topic, partition=record.partition, offset=record.offset,
                    key=record.key.decode(errors="replace") if record.key is not None else None,
                    value=record.value, timestamp_ms=record.timestamp,
                    headers={k: (v.decode(errors="replace") if v is not None else "") for k, v in (record.headers or [])},
                ))
        return messages

    def commit(self, offsets: dict[TopicPartitionKey, int]) -> None:
        self._consumer.commit({TopicPartition(t, p): OffsetAndMetadata(o, None, -1) for (t, p), o in offsets.items()})

    def seek(self, topic: str, partition: int, offset: int) -> None:
        self._consumer.seek(TopicPartition(topic, partition), offset)

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class SubscribedConsumer:
    """A consumer that joins its group with ``subscribe()`` (demo): the coordinator knows
    it as a member and assigns it partitions, so DescribeGroups has someone to name.
    Offsets are committed automatically; joining takes a rebalance (seconds)."""

    def __init__(self, settings: ConnectionSettings, group_id: str, topics: Iterable[str], client_id: str) -> None:
        config = {**settings.client_config(), "client_id": client_id}
        self._consumer = KafkaConsumer(*topics, group_id=group_id, enable_auto_commit=True,
                                       auto_offset_reset="latest", **config)

    def poll(self, timeout_seconds: float = 1.0) -> int:
        """Read what is there; returns how many messages."""
        batches = self._consumer.poll(timeout_ms=int(timeout_seconds * 1000), max_records=500)
        return sum(len(records) for records in batches.values())

    def close(self) -> None:
        self._consumer.close()


def commit_offsets(settings: ConnectionSettings, group_id: str, offsets: dict[TopicPartitionKey, int]) -> None:
    """Set a group's committed offsets directly (tests, demo)."""
    consumer = AssignedConsumer(settings, group_id, offsets.keys())
    try:
        consumer.commit(offsets)
    finally:
        consumer.close()


def commit_offsets_of_many_groups(settings: ConnectionSettings,
                                  offsets_by_group: dict[str, dict[TopicPartitionKey, int]]) -> None:
    """Set the committed offsets of many groups at once (benchmarks seeding thousands of
    groups): one admin connection, every OffsetCommit in flight together, as a consumer
    outside any group generation commits (generation -1, no member id)."""
    from kafka.protocol.consumer import OffsetCommitRequest

    admin = KafkaAdminClient(bootstrap_timeout_ms=int(settings.timeout_seconds * 1000), **settings.client_config())
    topic_type, partition_type = (OffsetCommitRequest.OffsetCommitRequestTopic,
                                  OffsetCommitRequest.OffsetCommitRequestTopic.OffsetCommitRequestPartition)

    def request(group_id: str, offsets: dict[TopicPartitionKey, int]) -> Any:
        by_topic: dict[str, list[Any]] = {}
        for (topic, partition), offset in sorted(offsets.items()):
            by_topic.setdefault(topic, []).append(partition_type(
                partition_index=partition, committed_offset=offset, committed_leader_epoch=-1,
                commit_timestamp=-1, committed_metadata=""))
        return OffsetCommitRequest(
            group_id=group_id, generation_id_or_member_epoch=-1, member_id="", group_instance_id=None,
            retention_time_ms=-1, topics=[topic_type(name=t, partitions=p) for t, p in by_topic.items()],
            max_version=7,  # v8+ name topics by id
        )

    async def commit_all() -> list[Any]:
        coordinators = await admin._find_coordinator_ids(list(offsets_by_group))
        groups, responses = list(offsets_by_group.items()), []
        for start in range(0, len(groups), 4):  # within the client's in-flight limit per connection
            in_flight = [admin._manager.send(request(group, offsets), node_id=coordinators[group])
                         for group, offsets in groups[start:start + 4]]
            responses.extend([await future for future in in_flight])
        return responses

    try:
        for response in admin._manager.run(commit_all):
            for topic in response.topics:
                for part in topic.partitions:
                    if part.error_code:
                        raise kafka_errors.for_code(part.error_code)(f"{topic.name}/{part.partition_index}")
    finally:
        admin.close()


def delete_groups(settings: ConnectionSettings, group_ids: list[str]) -> None:
    """Delete consumer groups and their committed offsets (tests, demo)."""
    admin = KafkaAdminClient(bootstrap_timeout_ms=int(settings.timeout_seconds * 1000), **settings.client_config())
    try:
        admin.delete_groups(group_ids)
    finally:
        admin.close()


def wait_until_reachable(settings: ConnectionSettings, timeout_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with KafkaAdapter(settings) as adapter:
                adapter.list_groups()
                return
        except KafkaUnavailable as exc:
            last_error = exc
            time.sleep(0.5)
    raise KafkaUnavailable(f"broker not reachable after {timeout_seconds:.0f}s: {last_error}")


def iter_messages(consumer: AssignedConsumer, stop_after_seconds: float) -> Iterator[ConsumedMessage]:
    deadline = time.monotonic() + stop_after_seconds
    while time.monotonic() < deadline:
        yield from consumer.poll()
