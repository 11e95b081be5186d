"""Self-tracing: spans of our own web requests reach an OTLP/HTTP endpoint when configured."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from monitor.telemetry import TraceIdFilter, span

REPO = Path(__file__).resolve().parent.parent

SCRIPT = """
import django, os
django.setup()
from opentelemetry import trace
from django.test import Client
from monitor import telemetry
telemetry.configure("kafka-monitor-test")
import logging
with telemetry.span("kafka.list_groups", cluster="prod") as current:
    record = logging.LogRecord("monitor", logging.INFO, "poll.py", 1, "polled", None, None)
    telemetry.TraceIdFilter().filter(record)
    print("LOG_TRACE_ID", record.trace_id, format(current.get_span_context().trace_id, "032x"))
response = Client().get("/healthz")
assert response.status_code == 200, response.status_code
trace.get_tracer_provider().force_flush()
"""


class _Collector(BaseHTTPRequestHandler):
    received: list[ExportTraceServiceRequest] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        _Collector.received.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_web_requests_and_kafka_calls_are_exported_when_an_otlp_endpoint_is_set():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings",
                   OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{server.server_port}")
        result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        log_line = next(line for line in result.stdout.splitlines() if line.startswith("LOG_TRACE_ID"))
        _, logged, actual = log_line.split()
        assert logged == actual and len(logged) == 32 and logged != "0" * 32
    finally:
        server.shutdown()
    spans = [
        (resource_spans.resource, item)
        for request in _Collector.received
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for item in scope_spans.spans
    ]
    names = {item.name for _, item in spans}
    assert "kafka.list_groups" in names
    assert any("healthz" in name or name.startswith("GET") for name in names), names
    services = {attr.value.string_value for resource, _ in spans for attr in resource.attributes
                if attr.key == "service.name"}
    assert services == {"kafka-monitor-test"}


def test_log_records_outside_a_span_say_there_is_no_trace():
    record = logging.LogRecord("monitor", logging.INFO, __file__, 1, "polled", None, None)
    TraceIdFilter().filter(record)
    assert record.trace_id == "-"  # no span: nothing to correlate


def test_spans_cost_nothing_and_fail_nothing_when_tracing_is_off():
    with span("kafka.list_groups", cluster="prod") as current:
        assert not current.get_span_context().is_valid
