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


POSTGRES = "postgres://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"


def check_deploy(**env: str) -> subprocess.CompletedProcess:
    """`manage.py check --deploy` with production settings, changed by ``env``."""
    production = {"SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "monitor.example.com",
                  "DATABASE_URL": POSTGRES, "REDIS_URL": REDIS, "CELERY_BROKER_URL": ""}
    return run_manage("check", "--deploy", "--fail-level", "WARNING", **{**production, **env})


def reported_ids(result: subprocess.CompletedProcess) -> set[str]:
    return {word.strip("():") for word in (result.stdout + result.stderr).split() if word.startswith("(monitor.W")}


def test_check_deploy_is_clean_with_production_settings():
    result = check_deploy()
    assert result.returncode == 0, result.stderr + result.stdout


def test_check_deploy_warns_that_production_runs_on_sqlite():
    result = check_deploy(DATABASE_URL="")
    assert result.returncode != 0
    assert "DEBUG is off and the database is SQLite" in result.stderr
    assert reported_ids(result) == {"monitor.W001"}


def test_check_deploy_warns_that_production_uses_the_filesystem_broker():
    result = check_deploy(CELERY_BROKER_URL="filesystem://")
    assert result.returncode != 0
    assert "the Celery broker is the filesystem:// transport" in result.stderr
    assert reported_ids(result) == {"monitor.W002"}


def test_check_deploy_warns_that_production_caches_in_local_memory():
    result = check_deploy(REDIS_URL="", CELERY_BROKER_URL=REDIS)
    assert result.returncode != 0
    assert "the cache is local memory" in result.stderr
    assert reported_ids(result) == {"monitor.W003"}


def test_the_embedded_defaults_raise_no_deployment_warning_with_debug_on():
    result = check_deploy(DEBUG="true", DATABASE_URL="", REDIS_URL="")
    assert reported_ids(result) == set(), result.stderr


def test_production_refuses_to_start_without_a_secret_key_in_one_line():
    result = run_manage("check", SECRET_KEY="", DATABASE_URL=POSTGRES)
    assert result.returncode != 0
    assert result.stderr.strip() == "Configuration error: SECRET_KEY must be set when DEBUG is off"


def test_the_celery_worker_also_refuses_a_missing_secret_key_in_one_line():
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DEBUG", "SECRET_KEY", "DJANGO_"))}
    result = subprocess.run([sys.executable, "-m", "celery", "-A", "monitor", "report"], cwd=REPO,
                            env={**clean, "SECRET_KEY": "", "DATABASE_URL": POSTGRES},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip() == "Configuration error: SECRET_KEY must be set when DEBUG is off"


def test_a_bad_detector_setting_stops_the_process_at_start_up_naming_the_variable():
    result = run_manage("check", DEBUG="true", MONITOR_STORM_FACTOR="ten")
    assert result.returncode != 0
    assert result.stderr.strip() == "Configuration error: MONITOR_STORM_FACTOR='ten' is not an integer"


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


# Where the environment may be read, and why: everything else goes through settings.
ENVIRONMENT_READERS = {
    "monitor/settings.py": "reads every setting, once, at start-up",
    "monitor/envconf.py": "the helpers settings.py reads with",
    "monitor/celery.py": "DJANGO_SETTINGS_MODULE default",
    "monitor/wsgi.py": "DJANGO_SETTINGS_MODULE default",
    "manage.py": "DJANGO_SETTINGS_MODULE default",
    "monitor/alerts/config.py": "${ENV_VAR} references inside the alerting YAML file",
    "monitor/lag/clusters.py": "${NAME} references in a cluster's stored secrets, read when used (rotation)",
    "monitor/kafka/adapter.py": "AWS's standard credential variables for MSK IAM (rotated session tokens)",
    "monitor/management/commands/demo.py": "passes the environment on to the processes it starts",
    "monitor/demo/simulator.py": "a stand-alone client program with its own --api/--token defaults",
}


def test_only_the_settings_read_the_environment():
    readers = set()
    for path in [REPO / "manage.py", *(REPO / "monitor").rglob("*.py"), *(REPO / "dashboards").rglob("*.py")]:
        text = path.read_text()
        if "os.environ" in text or "os.getenv" in text or "getenv(" in text:
            readers.add(str(path.relative_to(REPO)))
    assert readers <= set(ENVIRONMENT_READERS), sorted(readers - set(ENVIRONMENT_READERS))


def test_a_trace_url_template_without_the_placeholder_stops_the_process_naming_the_variable():
    result = run_manage("check", DEBUG="true", MONITOR_TRACE_URL_TEMPLATE="https://jaeger.example/trace/")
    assert result.returncode != 0
    assert "MONITOR_TRACE_URL_TEMPLATE must be an http(s) URL containing {trace_id}" in result.stderr


def test_a_poll_queue_routes_the_poll_tasks_there_and_nothing_else():
    code = ("from monitor.celery import app; r = app.amqp.router; "
            "print([r.route({}, t)['queue'].name for t in "
            "('monitor.poll_cluster', 'monitor.poll_cluster_shard', 'monitor.prune_lag')])")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "DJANGO_"))}
    for queue, expected in (("poll", "['poll', 'poll', 'celery']"), ("", "['celery', 'celery', 'celery']")):
        result = subprocess.run([sys.executable, "-c", "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = "
                                 f"'monitor.settings'; django.setup(); {code}"], cwd=REPO,
                                env={**clean, "DEBUG": "true", "MONITOR_POLL_QUEUE": queue},
                                capture_output=True, text=True, timeout=120)
        assert (result.returncode, result.stdout.strip()) == (0, expected), result.stderr


def test_a_poll_queue_name_that_is_no_queue_name_stops_the_process_naming_the_variable():
    result = run_manage("check", DEBUG="true", MONITOR_POLL_QUEUE="poll queue;rm")
    assert result.returncode != 0
    assert result.stderr.strip().startswith("Configuration error: MONITOR_POLL_QUEUE must be a queue name")
