"""Self-observability: OpenTelemetry traces of our own web requests, tasks, Kafka calls,
Redis and database work. Off and costless unless OTEL_EXPORTER_OTLP_ENDPOINT is set."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from opentelemetry import trace

_configured = False
tracer = trace.get_tracer("kafka-monitor")


class TraceIdFilter(logging.Filter):
    """Adds the current trace id (or '-') to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.trace_id = f"{context.trace_id:032x}" if context.is_valid else "-"
        return True


def configure(service_name: str) -> None:
    """Install the OTLP exporter and instrumentations once, when an endpoint is configured."""
    global _configured
    from django.conf import settings

    if _configured or not settings.OTEL_EXPORTER_OTLP_ENDPOINT:
        return
    _configured = True
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.dbapi import trace_integration
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    endpoint = settings.OTEL_EXPORTER_OTLP_ENDPOINT.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument()
    CeleryInstrumentor().instrument()
    RedisInstrumentor().instrument()
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" in engine:
        import psycopg

        trace_integration(psycopg, "connect", "postgresql")  # type: ignore[arg-type]
    else:
        import sqlite3

        trace_integration(sqlite3, "connect", "sqlite")  # type: ignore[arg-type]


@contextlib.contextmanager
def span(name: str, **attributes: object) -> Iterator[trace.Span]:
    """A span around our own work (e.g. one Kafka admin call); a no-op when tracing is off."""
    with tracer.start_as_current_span(name) as current:
        for key, value in attributes.items():
            current.set_attribute(key, value)  # type: ignore[arg-type]
        yield current
