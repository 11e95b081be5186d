"""API routes of the events area (included at the root by monitor/api/urls.py):
POST /api/v1/events (the contract's event reports) and POST /v1/traces (OTLP/HTTP)."""
from django.urls import path

from monitor.api import events, otlp

urlpatterns = [
    path("api/v1/events", events.ingest_events, name="api-events"),
    path("v1/traces", otlp.export_traces, name="otlp-traces"),
]
