"""Settings come only from the environment, fail loudly on bad values, and are safe by default."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from monitor.envconf import env_bool, env_int, parse_bootstrap_clusters

REPO = Path(__file__).resolve().parent.parent


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DEBUG", "SECRET_KEY", "MONITOR_", "DJANGO_", "SECURE_", "SESSION_", "CSRF_"))}
    clean.update(env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=clean,
                          capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_with_production_settings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING",
                        SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="monitor.example.com",
                        DATABASE_URL="postgres://postgres@127.0.0.1:5432/test")
    assert result.returncode == 0, result.stderr + result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = run_manage("check", SECRET_KEY="", DATABASE_URL="postgres://postgres@127.0.0.1:5432/test")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_a_misspelled_boolean_stops_the_process_naming_the_variable():
    result = run_manage("check", DEBUG="yes please")
    assert result.returncode != 0
    assert "DEBUG='yes please' is not a boolean" in result.stderr


def test_secrets_can_come_from_files(tmp_path, monkeypatch):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    monkeypatch.setenv("SOME_SECRET_FILE", str(secret_file))
    from monitor.envconf import env_str

    assert env_str("SOME_SECRET") == "from-a-file"


@pytest.mark.parametrize("raw, expected", [("true", True), ("FALSE", False), ("1", True), ("off", False)])
def test_booleans_accept_only_true_false_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("FLAG", raw)
    assert env_bool("FLAG", not expected) is expected


def test_integers_below_their_minimum_are_refused(monkeypatch):
    monkeypatch.setenv("POLL_TIMEOUT", "0")
    with pytest.raises(ImproperlyConfigured, match="POLL_TIMEOUT=0 must be at least 1"):
        env_int("POLL_TIMEOUT", 10, minimum=1)


def test_bootstrap_clusters_are_parsed_and_bad_entries_named():
    assert parse_bootstrap_clusters("prod=k1:9092,k2:9092;staging=s1:9092") == {
        "prod": ["k1:9092", "k2:9092"], "staging": ["s1:9092"],
    }
    with pytest.raises(ImproperlyConfigured, match="'prod=k1' is not host:port|'k1' is not host:port"):
        parse_bootstrap_clusters("prod=k1")
