"""Settings of the events area, read once from Django settings or the environment.

Every value can be set as a Django setting of the same name or an environment variable
(``MONITOR_LOST_AFTER_SECONDS=600``); bad values fail loudly, naming the variable.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from monitor.envconf import env_int


def _int(name: str, default: int, minimum: int) -> int:
    value = getattr(settings, name, None)
    if value is None:
        return env_int(name, default, minimum=minimum)
    return int(value)


@dataclass(frozen=True)
class IngestLimits:
    max_events: int
    max_bytes: int
    max_attributes_bytes: int

    @classmethod
    def from_settings(cls) -> "IngestLimits":
        return cls(
            max_events=_int("MONITOR_INGEST_MAX_EVENTS", 1000, 1),
            max_bytes=_int("MONITOR_INGEST_MAX_BYTES", 5 * 1024 * 1024, 1024),
            max_attributes_bytes=_int("MONITOR_INGEST_MAX_ATTRIBUTES_BYTES", 8192, 2),
        )


@dataclass(frozen=True)
class DetectorConfig:
    """Windows and thresholds of the detectors (seconds unless named otherwise)."""

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
        defaults = cls()
        return cls(
            lookback_seconds=_int("MONITOR_DETECTOR_LOOKBACK_SECONDS", defaults.lookback_seconds, 60),
            lost_after_seconds=_int("MONITOR_LOST_AFTER_SECONDS", defaults.lost_after_seconds, 1),
            schema_lookback_seconds=_int("MONITOR_SCHEMA_LOOKBACK_SECONDS", defaults.schema_lookback_seconds, 60),
            storm_max_events=_int("MONITOR_STORM_MAX_EVENTS", defaults.storm_max_events, 2),
            storm_max_fanout=_int("MONITOR_STORM_MAX_FANOUT", defaults.storm_max_fanout, 2),
            storm_factor=_int("MONITOR_STORM_FACTOR", defaults.storm_factor, 2),
            storm_min_events=_int("MONITOR_STORM_MIN_EVENTS", defaults.storm_min_events, 2),
            max_events=_int("MONITOR_DETECTOR_MAX_EVENTS", defaults.max_events, 1000),
            examples=_int("MONITOR_FINDING_EXAMPLES", defaults.examples, 1),
        )


@dataclass(frozen=True)
class TapConfig:
    max_messages: int = 5000     # per cluster and run
    max_seconds: int = 10        # time budget per run

    @classmethod
    def from_settings(cls) -> "TapConfig":
        return cls(
            max_messages=_int("MONITOR_TAP_MAX_MESSAGES", cls.max_messages, 1),
            max_seconds=_int("MONITOR_TAP_SECONDS", cls.max_seconds, 1),
        )


def event_retention_days() -> int:
    return _int("MONITOR_EVENT_RETENTION_DAYS", 7, 1)
