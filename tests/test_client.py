"""monitor/client.py, the helper services copy, against the real server."""
import datetime as dt
import http.server
import threading
import time
import urllib.error
import urllib.request

import pytest

from monitor import client as event_client
from monitor.events import store
from monitor.events import traceparent as tp


@pytest.fixture(autouse=True)
def _fresh_registry_cache():
    store.forget_registry_cache()
    yield


@pytest.fixture
def token(transactional_db):
    from monitor.models import ApiToken

    return ApiToken.issue("client-test", ["ingest"])[1]


class FlakyProxy:
    """A real HTTP server in front of the monitor that answers 503 to the first
    ``failures`` requests, then forwards (as a restarting server or load balancer would)."""

    def __init__(self, upstream, failures):
        self.upstream, self.failures, self.requests = upstream, failures, 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                proxy.requests += 1
                if proxy.requests <= proxy.failures:
                    self.send_response(503)
                    self.end_headers()
                    return
                request = urllib.request.Request(proxy.upstream + self.path, data=body, method="POST", headers={
                    name: self.headers[name] for name in ("Content-Type", "Content-Encoding", "Authorization")
                    if self.headers[name]})
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        status, payload = response.status, response.read()
                except urllib.error.HTTPError as exc:
                    status, payload = exc.code, exc.read()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_long_outage_keeps_the_queue_and_everything_arrives_once_the_server_is_back(live_server, token):
    """More failures than the retry budget (the database away for a while): the batch goes
    back in front of the queue instead of being dropped, and is delivered later."""
    from monitor.models import Event

    proxy = FlakyProxy(live_server.url, failures=9)
    try:
        reporter = event_client.EventReporter(proxy.url, token, "orders", flush_interval=0.05, backoff_base=0.01,
                                              backoff_max=0.05, max_retries=2)
        for i in range(10):
            reporter.published(f"evt-{i}", "OrderPlaced")
        assert reporter.flush(timeout=30)
        reporter.published("evt-10", "OrderPlaced")
        assert reporter.close(timeout=20)
    finally:
        proxy.close()
    assert proxy.requests >= 10
    assert (reporter.stats["sent"], reporter.stats["dropped"]) == (11, 0)
    assert Event.objects.count() == 11


def test_reports_reach_the_server_in_batches(live_server, token):
    from monitor.models import Event

    reporter = event_client.EventReporter(live_server.url, token, "orders", batch_size=50, flush_interval=0.2)
    for i in range(120):
        reporter.published(f"evt-{i}", "OrderPlaced", topic="orders", partition=0, offset=i, key=f"order-{i % 7}",
                           schema_version=2, traceparent=event_client.new_traceparent())
    reporter.processed("evt-0", "OrderPlaced", topic="orders", consumer_group="billing", service="billing",
                       timestamp=dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc))
    assert reporter.close(timeout=20)
    assert reporter.stats["sent"] == 121 and reporter.stats["dropped"] == 0
    assert Event.objects.count() == 121
    processed = Event.objects.get(stage="processed")
    assert (processed.service, processed.consumer_group, processed.timestamp.year) == ("billing", "billing", 2024)


def test_failed_sends_are_retried_with_backoff_and_stored_once(live_server, token):
    from monitor.models import Event

    proxy = FlakyProxy(live_server.url, failures=2)
    try:
        reporter = event_client.EventReporter(proxy.url, token, "orders", flush_interval=0.1, backoff_base=0.05)
        for i in range(10):
            reporter.published(f"evt-{i}", "OrderPlaced")
        assert reporter.close(timeout=20)
    finally:
        proxy.close()
    assert reporter.stats["retries"] == 2
    assert reporter.stats["sent"] == 10
    assert Event.objects.count() == 10


def test_batch_larger_than_the_server_accepts_is_split(live_server, token, settings):
    from monitor.models import Event

    settings.MONITOR_INGEST_MAX_EVENTS = 10
    reporter = event_client.EventReporter(live_server.url, token, "orders", batch_size=35, flush_interval=0.1)
    for i in range(35):
        reporter.published(f"evt-{i}", "OrderPlaced")
    assert reporter.close(timeout=20)
    assert reporter.stats["sent"] == 35
    assert Event.objects.count() == 35


def test_rejected_reports_are_not_retried(live_server, token):
    from monitor.models import Event

    reporter = event_client.EventReporter(live_server.url, token, "orders", flush_interval=0.1)
    reporter.published("evt-1", "OrderPlaced", topic="not a topic")
    assert reporter.close(timeout=20)
    assert (reporter.stats["rejected"], reporter.stats["retries"]) == (1, 0)
    assert not Event.objects.exists()


def test_reporting_never_blocks_when_the_server_is_down_and_the_queue_is_bounded():
    from tests.services import free_port

    reporter = event_client.EventReporter(f"http://127.0.0.1:{free_port()}", "kmon_x", "orders",
                                          max_queue=100, flush_interval=60, backoff_base=60)
    # Bounds far below the reporter's own waits (60 s), so only blocking on them can fail them.
    started = time.monotonic()
    for i in range(1000):
        reporter.published(f"evt-{i}", "OrderPlaced")
    assert time.monotonic() - started < 30
    assert reporter.stats["dropped"] >= 900 - reporter.batch_size
    started = time.monotonic()
    reporter.close(timeout=0.5)
    assert time.monotonic() - started < 30
    assert "kmon_x" not in repr(reporter)


def test_bad_stage_is_a_programming_error():
    reporter = event_client.EventReporter("http://127.0.0.1:9", "t", "orders", flush_interval=60)
    with pytest.raises(ValueError, match="stage must be one of"):
        reporter.report("e", "T", "delivered")
    reporter.close(timeout=0.1)


def test_traceparent_helpers_follow_the_w3c_rules():
    root = event_client.new_traceparent()
    child = event_client.child_traceparent(root)
    assert tp.parse(root).trace_id == tp.parse(child).trace_id
    assert tp.parse(root).parent_id != tp.parse(child).parent_id
    assert tp.parse(event_client.child_traceparent("garbage")).version == "00"


def test_the_client_knows_exactly_the_stages_the_server_accepts():
    """The client is copied into services without this package: its stage list is a copy,
    kept equal to the server's by this test."""
    from monitor.choices import Stage
    from monitor.client import STAGES

    assert set(STAGES) == set(Stage.values)
