"""``check_cluster``: try a cluster's connection step by step and say which step failed.

Steps, in order: DNS (every bootstrap host resolves), TCP (a bootstrap server accepts a
connection), TLS (handshake with the configured CA and client certificate, then one
ApiVersions round trip, since TLS 1.3 reports a refused client certificate only then),
SASL (the mechanism's own prerequisites: an OIDC token, AWS credentials, the gssapi
package, then the broker's verdict), metadata (brokers and topics) and offsets
(committed offsets of a few groups, log-end offsets of a partition). A step after a
failed one is skipped. Every message names hosts and causes, never a secret.
"""
from __future__ import annotations

import importlib.util
import logging
import socket
import ssl
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from monitor.kafka.adapter import ConnectionSettings, KafkaAdapter, KafkaUnavailable, aws_credentials, msk_region
from monitor.kafka.oauth import ClientCredentialsTokens, TokenError

STEPS = ("DNS", "TCP", "TLS", "SASL", "metadata", "offsets")
OK, FAILED, SKIPPED = "ok", "failed", "skipped"


@dataclass(frozen=True)
class StepResult:
    step: str
    outcome: str
    detail: str

    def line(self) -> str:
        mark = {OK: "ok  ", FAILED: "FAIL", SKIPPED: "skip"}[self.outcome]
        return f"[{mark}] {self.step:<8} {self.detail}"


@dataclass
class CheckReport:
    cluster: str
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.outcome != FAILED for s in self.steps)

    @property
    def failed_step(self) -> StepResult | None:
        return next((s for s in self.steps if s.outcome == FAILED), None)

    def lines(self) -> list[str]:
        return [s.line() for s in self.steps]


class StepFailed(Exception):
    pass


def _host_port(server: str) -> tuple[str, int]:
    host, _, port = server.rpartition(":")
    return host.strip("[]"), int(port)


def _dns(settings: ConnectionSettings) -> str:
    found, failed = [], []
    for server in settings.bootstrap_servers:
        host, port = _host_port(server)
        try:
            addresses = sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
            found.append(f"{host} -> {', '.join(addresses[:3])}")
        except OSError as exc:
            failed.append(f"cannot resolve {host}: {exc.strerror or exc}")
    if failed:
        raise StepFailed("; ".join(failed))
    return "; ".join(found)


def _tcp(settings: ConnectionSettings) -> str:
    reached, failed = [], []
    for server in settings.bootstrap_servers:
        host, port = _host_port(server)
        try:
            with socket.create_connection((host, port), timeout=settings.timeout_seconds):
                reached.append(server)
        except OSError as exc:
            failed.append(f"{server}: {exc.strerror or exc}")
    if not reached:
        raise StepFailed("no bootstrap server accepts connections: " + "; ".join(failed))
    return f"connected to {', '.join(reached)}" + (f" (not to {'; '.join(failed)})" if failed else "")


def _api_versions_request() -> bytes:
    client_id = b"kafka-monitor-check"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def _tls(settings: ConnectionSettings) -> str:
    if not settings.uses_tls:
        return ""
    context = ssl.create_default_context(cafile=settings.ssl_cafile or None)
    if settings.ssl_certfile:
        try:
            context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile or None)
        except (OSError, ssl.SSLError) as exc:
            raise StepFailed(f"cannot load the client certificate {settings.ssl_certfile}: {exc}") from None
    host, port = _host_port(settings.bootstrap_servers[0])
    try:
        with socket.create_connection((host, port), timeout=settings.timeout_seconds) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                certificate = tls.getpeercert() or {}
                version = tls.version()
                tls.sendall(_api_versions_request())
                if len(tls.recv(4)) < 4:
                    raise StepFailed(f"{host}:{port} closed the connection after the handshake "
                                     "(a client certificate it does not accept?)")
    except ssl.SSLCertVerificationError as exc:
        raise StepFailed(f"{host}:{port}: the broker's certificate is not trusted: {exc.verify_message}"
                         + ("" if settings.ssl_cafile else " (set ssl_cafile to your CA bundle)")) from None
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        hint = " (the broker wants a client certificate: set ssl_certfile and ssl_keyfile)" \
            if "CERTIFICATE_REQUIRED" in str(reason).upper() and not settings.ssl_certfile else ""
        raise StepFailed(f"{host}:{port}: TLS handshake failed: {reason}{hint}") from None
    except OSError as exc:
        raise StepFailed(f"{host}:{port}: {exc.strerror or exc}") from None
    subject: dict[str, str] = {}
    for entry in certificate.get("subject", ()):
        for pair in entry:
            if isinstance(pair, tuple) and len(pair) == 2:
                subject[str(pair[0])] = str(pair[1])
    return (f"{version} with {host}:{port}, certificate of {subject.get('commonName', '?')} "
            f"valid until {certificate.get('notAfter', '?')}" + (", client certificate accepted" if settings.ssl_certfile else ""))


def _sasl_prerequisites(settings: ConnectionSettings) -> str:
    mechanism = settings.sasl_mechanism
    if mechanism == "OAUTHBEARER":
        if not settings.oauth_token_url:
            raise StepFailed("OAUTHBEARER needs oauth_token_url")
        try:
            ClientCredentialsTokens(settings.oauth_token_url, settings.oauth_client_id, settings.oauth_client_secret,
                                    settings.oauth_scope, timeout_seconds=settings.timeout_seconds).token()
        except TokenError as exc:
            raise StepFailed(f"OAUTHBEARER: {exc}") from None
        return f"OAUTHBEARER token from {settings.oauth_token_url}"
    if mechanism == "AWS_MSK_IAM":
        if settings.security_protocol != "SASL_SSL":
            raise StepFailed("AWS_MSK_IAM needs security_protocol SASL_SSL")
        region = settings.aws_region or msk_region(_host_port(settings.bootstrap_servers[0])[0])
        if not region:
            raise StepFailed("AWS_MSK_IAM needs aws_region")
        try:
            access_key, _, _ = aws_credentials()
        except Exception as exc:  # noqa: BLE001 - a configuration error, shown as such
            raise StepFailed(str(exc)) from None
        return f"AWS_MSK_IAM in {region} as {access_key[:4]}…"
    if mechanism == "GSSAPI":
        if importlib.util.find_spec("gssapi") is None:
            raise StepFailed("GSSAPI needs the Python package gssapi (pip install gssapi; it builds against "
                             "the system's Kerberos libraries) and a ticket (kinit or KRB5_CLIENT_KTNAME)")
        return f"GSSAPI for service {settings.sasl_kerberos_service_name or 'kafka'}"
    if not settings.sasl_username:
        raise StepFailed(f"{mechanism} needs sasl_username and sasl_password")
    return f"{mechanism} as {settings.sasl_username}"


class _KafkaLog(logging.Handler):
    """What kafka-python logs while connecting: its bootstrap retries hide the cause."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def auth_failure(self) -> str:
        return next((m for m in self.messages
                     if any(word in m.lower() for word in ("sasl", "authenticat", "token", "kerberos", "gssapi"))), "")


@contextmanager
def _kafka_log() -> Iterator[_KafkaLog]:
    handler = _KafkaLog()
    logger = logging.getLogger("kafka")
    previous = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def check_connection(name: str, settings: ConnectionSettings) -> CheckReport:
    report = CheckReport(cluster=name)
    failed = False

    def run(step: str, action: Callable[[], str], skip_reason: str = "") -> bool:
        nonlocal failed
        if failed:
            report.steps.append(StepResult(step, SKIPPED, "an earlier step failed"))
            return False
        if skip_reason:
            report.steps.append(StepResult(step, SKIPPED, skip_reason))
            return True
        try:
            report.steps.append(StepResult(step, OK, action()))
            return True
        except StepFailed as exc:
            report.steps.append(StepResult(step, FAILED, str(exc)))
            failed = True
            return False

    run("DNS", lambda: _dns(settings))
    run("TCP", lambda: _tcp(settings))
    run("TLS", lambda: _tls(settings), "" if settings.uses_tls else f"{settings.security_protocol}: no TLS")
    run("SASL", lambda: _sasl_prerequisites(settings), "" if settings.uses_sasl else "no SASL configured")
    adapter = KafkaAdapter(settings)
    with _kafka_log() as kafka_log:
        def metadata() -> str:
            try:
                adapter.connect()
                counts = adapter.topic_partition_counts()
            except KafkaUnavailable as exc:
                auth = kafka_log.auth_failure()
                if auth and settings.uses_sasl:
                    # The SASL step passed its own checks; the broker refused: say so there.
                    report.steps[-1] = StepResult("SASL", FAILED, f"the broker refused {settings.sasl_mechanism}: {auth}")
                    raise StepFailed("not reached: SASL failed") from None
                raise StepFailed(str(exc)) from None
            brokers = len(adapter.admin._manager.cluster.brokers())
            return f"{brokers} broker(s), {len(counts)} topic(s), {sum(counts.values())} partition(s)"

        def offsets() -> str:
            try:
                groups = [g for g in adapter.list_groups() if g.protocol != "share"][:5]
                committed = adapter.committed_offsets([g.group_id for g in groups])
                counts = adapter.topic_partition_counts()
                topic = next(iter(sorted(counts)), None)
                log_offsets, errors = adapter.log_offsets([(topic, 0)]) if topic else ({}, {})
            except KafkaUnavailable as exc:
                raise StepFailed(str(exc)) from None
            if errors:
                raise StepFailed(f"log offsets of {topic}/0: {next(iter(errors.values()))}")
            if committed.errors:
                group, error = next(iter(committed.errors.items()))
                raise StepFailed(f"committed offsets of group {group}: {error}")
            end = f", log end of {topic}/0 is {log_offsets[(topic, 0)].log_end_offset}" if topic in {t for t, _ in log_offsets} else ""
            return f"committed offsets of {len(committed.offsets)} group(s){end}"

        try:
            run("metadata", metadata)
            run("offsets", offsets)
        finally:
            adapter.close()
    return report
