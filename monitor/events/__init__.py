"""Event metadata and traces.

ingest (validate, normalise) and store (idempotent bulk writes) behind POST /api/v1/events;
otlp (OTLP spans -> events) behind POST /v1/traces; tap (message headers -> events);
detectors (pure failure-mode detection) and runner (load, detect, upsert findings);
alert_metrics (findings as alert-rule metrics); retention; traceparent (W3C rules).
"""
