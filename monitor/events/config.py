"""Settings of the events area as typed values, built from Django settings.

Every value is read from the environment once, at start-up, by ``monitor/settings.py``
(``MONITOR_LOST_AFTER_SECONDS=600`` ...), which validates it and fails naming the variable.
This module only groups those settings for the code that uses them; it never reads the
environment itself, so a test changes a value with ``override_settings``.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class IngestLimits:
    max_events: int
    max_bytes: int
    max_attributes_bytes: int
    max_links_per_span: int = 128  # OpenTelemetry SDKs keep 128 links per span by default

    @classmethod
    def from_settings(cls) -> "IngestLimits":
        return cls(
            max_events=settings.MONITOR_INGEST_MAX_EVENTS,
            max_bytes=settings.MONITOR_INGEST_MAX_BYTES,
            max_attributes_bytes=settings.MONITOR_INGEST_MAX_ATTRIBUTES_BYTES,
            max_links_per_span=settings.MONITOR_OTLP_MAX_LINKS_PER_SPAN,
        )


@dataclass(frozen=True)
class DetectorConfig:
    """Windows and thresholds of the detectors (seconds unless named otherwise).

    The defaults here are those of ``monitor/settings.py``; tests build a config directly.
    """

    lookback_seconds: int = 3600          # events loaded per run
    lost_after_seconds: int = 300         # a published event not consumed by then is lost
    schema_lookback_seconds: int = 86400  # "never reported handling" looks this far back
    storm_max_events: int = 1000          # a trace with more events is a storm
    storm_max_fanout: int = 100           # one event causing more published events is a storm
    storm_factor: int = 10                # ... or this many times the usual size of its kind
    storm_min_events: int = 50            # never call a trace smaller than this a storm
    max_events: int = 200_000             # safety cap on rows loaded per run (~1 KiB each)
    examples: int = 5                     # examples kept per finding

    @classmethod
    def from_settings(cls) -> "DetectorConfig":
        return cls(
            lookback_seconds=settings.MONITOR_DETECTOR_LOOKBACK_SECONDS,
            lost_after_seconds=settings.MONITOR_LOST_AFTER_SECONDS,
            schema_lookback_seconds=settings.MONITOR_SCHEMA_LOOKBACK_SECONDS,
            storm_max_events=settings.MONITOR_STORM_MAX_EVENTS,
            storm_max_fanout=settings.MONITOR_STORM_MAX_FANOUT,
            storm_factor=settings.MONITOR_STORM_FACTOR,
            storm_min_events=settings.MONITOR_STORM_MIN_EVENTS,
            max_events=settings.MONITOR_DETECTOR_MAX_EVENTS,
            examples=settings.MONITOR_FINDING_EXAMPLES,
        )


@dataclass(frozen=True)
class TapConfig:
    max_messages: int = 5000     # per cluster and run
    max_seconds: int = 10        # time budget per run

    @classmethod
    def from_settings(cls) -> "TapConfig":
        return cls(
            max_messages=settings.MONITOR_TAP_MAX_MESSAGES,
            max_seconds=settings.MONITOR_TAP_SECONDS,
        )


def event_retention_days() -> int:
    return int(settings.MONITOR_EVENT_RETENTION_DAYS)
