"""Webhook targets on internal addresses are refused when saved and when sent to; the
receivers' answers never reach a page or a stored error."""
from __future__ import annotations

import http.server
import threading

import pytest
from django.test import override_settings

from monitor.alerts.config import webhook_url_problem
from monitor.notify.base import NotifierError
from monitor.notify.http import HttpNotifier, post_json
from monitor.notify.targets import address_problem, url_target_problem


@pytest.fixture
def receiver():
    """A real HTTP receiver on 127.0.0.1 answering 400 with a body that must never be shown."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b"internal admin console: secret=hunter2"
            self.send_response(400)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.5.4", "169.254.169.254",
                                     "::1", "fe80::1", "0.0.0.0", "::ffff:127.0.0.1", "fd00::1"])
@override_settings(MONITOR_ALLOW_PRIVATE_WEBHOOKS=False)
def test_internal_addresses_are_refused(address):
    assert address_problem(address) is not None


@override_settings(MONITOR_ALLOW_PRIVATE_WEBHOOKS=False)
def test_public_addresses_are_allowed():
    assert address_problem("93.184.216.34") is None
    assert address_problem("2606:2800:220:1:248:1893:25c8:1946") is None


@override_settings(MONITOR_ALLOW_PRIVATE_WEBHOOKS=False)
@pytest.mark.parametrize("url", ["http://localhost:8080/hook", "http://127.0.0.1/x", "https://[::1]/x",
                                 "http://169.254.169.254/latest/meta-data/", "http://10.0.0.8/hook"])
def test_saving_a_channel_that_resolves_inward_is_refused_naming_why(url):
    problem = webhook_url_problem(url)
    assert problem is not None and "internal address" in problem
    assert "MONITOR_ALLOW_PRIVATE_WEBHOOKS" in problem


def test_the_setting_allows_internal_receivers():
    with override_settings(MONITOR_ALLOW_PRIVATE_WEBHOOKS=True):
        assert url_target_problem("http://127.0.0.1:9/hook") is None


@override_settings(MONITOR_ALLOW_PRIVATE_WEBHOOKS=False)
def test_a_send_to_an_internal_receiver_is_refused_on_the_connected_address(receiver):
    with pytest.raises(NotifierError) as raised:
        post_json(receiver, {"text": "hi"}, timeout_seconds=5)
    assert raised.value.permanent
    assert "internal address 127.0.0.1" in raised.value.message


def test_a_receivers_answer_body_never_becomes_the_error(receiver):
    class Plain(HttpNotifier):
        def url(self) -> str:
            return receiver

    response = post_json(receiver, {"text": "hi"}, timeout_seconds=5)
    assert response.status == 400
    with pytest.raises(NotifierError) as raised:
        Plain.__new__(Plain).classify(response)
    assert raised.value.message == "HTTP 400"
    assert "hunter2" not in raised.value.message
