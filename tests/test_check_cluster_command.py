"""``manage.py check_cluster NAME`` against real brokers: tansu in plaintext, and tansu
behind a TLS and an mTLS proxy (tests/tls.py: tansu speaks no TLS itself); the OIDC
token endpoint is a real local HTTP server."""
from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from monitor.kafka.adapter import ConnectionSettings, commit_offsets, create_topics
from monitor.lag.poll import poll_cluster
from monitor.models import Cluster, ConsumerGroup
from tests import services
from tests.tls import TlsProxy, make_certificates


def check(name: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("check_cluster", name, stdout=out)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue()


def outcome(output: str, step: str) -> str:
    line = next(line for line in output.splitlines() if line.split("] ", 1)[-1].startswith(step + " "))
    return line


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certs"))


def _broker_behind_proxy(certificates, mutual: bool):
    proxy_port = services.free_port()
    broker = services.start_broker(advertised=f"localhost:{proxy_port}")
    proxy = TlsProxy(proxy_port, ("127.0.0.1", broker.port), certificates, mutual=mutual)
    return broker, proxy


@pytest.fixture(scope="module")
def tls_broker(certificates):
    broker, proxy = _broker_behind_proxy(certificates, mutual=False)
    yield proxy
    proxy.close()
    broker.stop()


@pytest.fixture(scope="module")
def mtls_broker(certificates):
    broker, proxy = _broker_behind_proxy(certificates, mutual=True)
    yield proxy
    proxy.close()
    broker.stop()


def test_a_plaintext_cluster_passes_every_step_it_uses(cluster):
    code, output = check(cluster.name)
    assert code == 0, output
    for step in ("DNS", "TCP", "metadata", "offsets"):
        assert outcome(output, step).startswith("[ok  ]"), output
    assert outcome(output, "TLS").startswith("[skip]") and outcome(output, "SASL").startswith("[skip]")
    assert output.strip().endswith("every step passed")


def test_a_host_that_does_not_resolve_fails_at_dns_and_skips_the_rest(db):
    Cluster.objects.create(name="nowhere", bootstrap_servers="kafka.invalid:9092")
    code, output = check("nowhere")
    assert code == 1
    assert outcome(output, "DNS").startswith("[FAIL]") and "cannot resolve kafka.invalid" in output
    assert all(outcome(output, step).startswith("[skip]") for step in ("TCP", "TLS", "SASL", "metadata", "offsets"))
    assert "nowhere: DNS failed" in output


def test_a_closed_port_fails_at_tcp(db):
    Cluster.objects.create(name="closed", bootstrap_servers=f"127.0.0.1:{services.free_port()}")
    code, output = check("closed")
    assert code == 1 and outcome(output, "TCP").startswith("[FAIL]")
    assert "no bootstrap server accepts connections" in output


def test_tls_with_the_right_ca_passes_and_with_another_ca_fails_at_tls(db, tls_broker, certificates):
    Cluster.objects.create(name="tls", bootstrap_servers=f"localhost:{tls_broker.port}", security_protocol="SSL",
                           ssl_cafile=str(certificates.ca))
    code, output = check("tls")
    assert code == 0, output
    assert outcome(output, "TLS").startswith("[ok  ]") and "certificate of localhost" in output

    Cluster.objects.filter(name="tls").update(ssl_cafile=str(certificates.other_ca))
    code, output = check("tls")
    assert code == 1
    assert outcome(output, "TLS").startswith("[FAIL]") and "certificate is not trusted" in output


def test_mtls_without_a_client_certificate_fails_at_tls_and_with_one_polls(db, mtls_broker, certificates, unique):
    Cluster.objects.create(name="mtls", bootstrap_servers=f"localhost:{mtls_broker.port}", security_protocol="SSL",
                           ssl_cafile=str(certificates.ca))
    code, output = check("mtls")
    assert code == 1
    assert outcome(output, "TLS").startswith("[FAIL]"), output

    Cluster.objects.filter(name="mtls").update(ssl_certfile=str(certificates.client_cert),
                                               ssl_keyfile=str(certificates.client_key))
    code, output = check("mtls")
    assert code == 0, output
    assert "client certificate accepted" in outcome(output, "TLS")

    # The poller connects the same way: a group committed through the mTLS proxy is polled.
    settings = ConnectionSettings([f"localhost:{mtls_broker.port}"], security_protocol="SSL",
                                  ssl_cafile=str(certificates.ca), ssl_certfile=str(certificates.client_cert),
                                  ssl_keyfile=str(certificates.client_key), timeout_seconds=10)
    topic, group = unique("tls-topic"), unique("tls-group")
    create_topics(settings, {topic: 1})
    commit_offsets(settings, group, {(topic, 0): 0})
    outcome_ = poll_cluster(Cluster.objects.get(name="mtls").id)
    assert outcome_ is not None and outcome_.ok, outcome_
    assert ConsumerGroup.objects.filter(cluster__name="mtls", name=group).exists()


class _RefusingTokenEndpoint(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"error": "invalid_client"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_oauthbearer_with_a_refused_client_fails_at_sasl_naming_the_endpoint_not_the_secret(cluster):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingTokenEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/oauth2/token"
        Cluster.objects.filter(pk=cluster.pk).update(
            security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER", oauth_token_url=url,
            oauth_client_id="kafka-monitor", oauth_client_secret="s3cret-value")
        code, output = check(cluster.name)
    finally:
        server.shutdown()
    assert code == 1
    assert outcome(output, "SASL").startswith("[FAIL]")
    assert f"token endpoint {url} answered HTTP 401" in output
    assert "s3cret-value" not in output


def test_an_unknown_cluster_is_exit_2(db):
    with pytest.raises(CommandError, match="no cluster named 'ghost'") as raised:
        call_command("check_cluster", "ghost")
    assert raised.value.returncode == 2
