"""The events area reads its limits and thresholds from Django settings, never from the environment."""
from __future__ import annotations

from django.test import override_settings

from monitor.events.config import DetectorConfig, IngestLimits, TapConfig, event_retention_days


def test_detector_thresholds_come_from_settings():
    with override_settings(MONITOR_LOST_AFTER_SECONDS=42, MONITOR_STORM_FACTOR=3, MONITOR_FINDING_EXAMPLES=2):
        config = DetectorConfig.from_settings()
    assert (config.lost_after_seconds, config.storm_factor, config.examples) == (42, 3, 2)


def test_the_defaults_of_the_settings_are_those_of_the_detector_config():
    assert DetectorConfig.from_settings() == DetectorConfig()
    assert TapConfig.from_settings() == TapConfig()


def test_an_environment_variable_changed_after_start_up_changes_nothing(monkeypatch):
    before = (IngestLimits.from_settings(), DetectorConfig.from_settings(), event_retention_days())
    monkeypatch.setenv("MONITOR_LOST_AFTER_SECONDS", "1")
    monkeypatch.setenv("MONITOR_INGEST_MAX_EVENTS", "1")
    monkeypatch.setenv("MONITOR_EVENT_RETENTION_DAYS", "1")
    assert (IngestLimits.from_settings(), DetectorConfig.from_settings(), event_retention_days()) == before
