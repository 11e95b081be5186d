"""deploy/prometheus and deploy/grafana against a real Prometheus (Debian package
``prometheus``, installed by ``make test``): it scrapes the running app's /metrics with
a bearer token and evaluates the shipped alert rules; promtool checks the rules, their
unit tests and the exposition format; the Grafana dashboard names only metrics that
/metrics exports."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from django.utils import timezone

from monitor.api.metrics import collect, liveness_families, render
from monitor.choices import ClusterStatus, GroupStatus
from monitor.models import ApiToken, Cluster
from tests.lag_rows import lag_snapshot
from tests.services import free_port, wait_for_port

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "kafka-monitor.json"


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], input=stdin, capture_output=True, text=True, timeout=120)


def exported_metric_names() -> set[str]:
    text = render([*collect(), *liveness_families()])
    return set(re.findall(r"^# TYPE (\S+) ", text, re.M))


def metric_names_in(expression: str) -> set[str]:
    return {name for name in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expression) if name.startswith("kafka_")}


def test_the_alert_rules_pass_promtool_check_and_their_unit_tests():
    checked = promtool("check", "rules", str(PROMETHEUS_DIR / "rules.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(["promtool", "test", "rules", "rules.test.yml"], cwd=PROMETHEUS_DIR,
                            capture_output=True, text=True, timeout=120)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_scrape_config_is_valid(tmp_path):
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    token_file = tmp_path / "token"
    token_file.write_text("secret\n")
    config["scrape_configs"][0]["authorization"]["credentials_file"] = str(token_file)
    rule_files = sorted(PROMETHEUS_DIR.glob("*rules.yml"))  # rules.yml, and liveness-rules.yml
    for rule_file in rule_files:
        shutil.copy(rule_file, tmp_path / rule_file.name)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    checked = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(rule_files)} rule files found" in checked.stdout + checked.stderr


@pytest.mark.django_db
def test_metrics_pass_promtool_check_metrics():
    cluster = Cluster.objects.create(name="prod", bootstrap_servers="127.0.0.1:9", status=ClusterStatus.OK,
                                     last_success_at=timezone.now(), poll_interval_seconds=3600)
    lag_snapshot(cluster, "billing", timezone.now(), {"orders": {0: 5, 1: None}}, time_lag={"orders": 12.0})
    result = promtool("check", "metrics", stdin=render([*collect(), *liveness_families()]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", result.stdout + result.stderr


@pytest.mark.django_db
def test_the_dashboard_and_the_rules_name_only_metrics_that_metrics_exports():
    exported = exported_metric_names()
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    expressions += [variable["definition"] for variable in dashboard["templating"]["list"] if "definition" in variable]
    rules = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())
    expressions += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    named = set().union(*(metric_names_in(e) for e in expressions))
    assert named and named <= exported, named - exported
    # The issue's panels: lag and time lag per group/topic, statuses, poll duration and errors.
    assert {"kafka_consumergroup_lag", "kafka_consumergroup_lag_seconds", "kafka_consumergroup_status",
            "kafka_monitor_poll_duration_seconds", "kafka_monitor_poll_errors_total"} <= named


# -- a real Prometheus scraping the running app ------------------------------------------------

def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except urllib.error.HTTPError as error:
        if error.code == 503:
            return False
        raise


def _wait_for(what: str, probe, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s (last: {last!r})")


@pytest.fixture
def prometheus(tmp_path, live_server) -> Iterator[tuple[str, str]]:
    """Prometheus scraping live_server's /metrics every second with a read token (job
    ``kafka-monitor``) and with a wrong one (job ``wrong-token``), evaluating rules.yml."""
    _, token = ApiToken.issue("prometheus", ["read"])
    (tmp_path / "token").write_text(token + "\n")
    (tmp_path / "wrong").write_text("km_not-a-token\n")
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    target = urllib.parse.urlsplit(live_server.url).netloc
    job = config["scrape_configs"][0]
    job["authorization"]["credentials_file"] = str(tmp_path / "token")
    job["static_configs"] = [{"targets": [target]}]
    job["scrape_interval"] = "1s"
    wrong = {**job, "job_name": "wrong-token", "authorization": {"type": "Bearer",
                                                                 "credentials_file": str(tmp_path / "wrong")}}
    config["scrape_configs"].append(wrong)
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    shutil.copy(PROMETHEUS_DIR / "rules.yml", tmp_path / "rules.yml")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))
    try:
        wait_for_port("127.0.0.1", port, 60, "prometheus")
        # It listens before its storage is open and answers 503 until then (slow on a busy machine).
        _wait_for("prometheus ready", lambda: _ready(f"http://127.0.0.1:{port}/-/ready"), timeout=120.0)
        yield f"http://127.0.0.1:{port}", target
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_prometheus_scrapes_metrics_with_the_token_and_fires_the_shipped_rules(transactional_db, prometheus):
    base, target = prometheus
    cluster = Cluster.objects.create(name="prod", bootstrap_servers="127.0.0.1:9", status=ClusterStatus.OK,
                                     last_success_at=timezone.now(), poll_interval_seconds=3600)
    lag_snapshot(cluster, "billing", timezone.now(), {"orders": {0: 1500, 1: 7}}, status=GroupStatus.STALLED,
                 time_lag={"orders": 42.5})

    def targets() -> dict[str, dict]:
        active = _get_json(f"{base}/api/v1/targets")["data"]["activeTargets"]
        return {t["labels"]["job"]: t for t in active if t.get("lastScrape", "").startswith("2")
                and t["health"] != "unknown"}

    scraped = _wait_for("both jobs scraped", lambda: (lambda t: t if len(t) == 2 else None)(targets()))
    assert scraped["kafka-monitor"]["health"] == "up", scraped["kafka-monitor"]["lastError"]
    assert scraped["wrong-token"]["health"] == "down" and "401" in scraped["wrong-token"]["lastError"]

    def query(expression: str) -> list[dict]:
        return _get_json(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expression}))["data"]["result"]

    lag = _wait_for("lag series", lambda: query('kafka_consumergroup_lag{job="kafka-monitor"}'))
    assert {(r["metric"]["group"], r["metric"]["topic"], r["metric"]["partition"], r["value"][1]) for r in lag} == {
        ("billing", "orders", "0", "1500"), ("billing", "orders", "1", "7")}
    seconds = query('kafka_consumergroup_lag_seconds{job="kafka-monitor", partition="0"}')
    assert seconds[0]["value"][1] == "42.5"

    def firing() -> set[str]:
        alerts = _get_json(f"{base}/api/v1/alerts")["data"]["alerts"]
        return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing" and a["labels"].get("group") == "billing"}

    assert "KafkaConsumerGroupStalled" in _wait_for("the stalled alert firing", firing)
    rules = _get_json(f"{base}/api/v1/rules")["data"]["groups"][0]["rules"]
    assert all(rule["health"] == "ok" for rule in rules), [(r["name"], r.get("lastError")) for r in rules]
    assert target in scraped["kafka-monitor"]["scrapeUrl"]
