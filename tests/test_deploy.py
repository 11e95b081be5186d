"""deploy/: the systemd units are a working example (systemd parses them and every
ExecStart command exists), and the Prometheus liveness rules watch metrics /metrics exports."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
UNITS = sorted([*(REPO / "deploy" / "systemd").glob("*.service"), *(REPO / "deploy" / "systemd").glob("*.target")])


def installed_units(tmp_path: Path) -> Path:
    """The units as installed: /opt/kafka-monitor is this checkout with this virtualenv."""
    root, units = tmp_path / "opt", tmp_path / "units"
    root.mkdir()
    units.mkdir()
    (root / ".venv").symlink_to(sys.prefix)
    (root / "manage.py").symlink_to(REPO / "manage.py")
    env = tmp_path / "env"
    env.write_text((REPO / "deploy" / "systemd" / "kafka-monitor.env.example").read_text())
    for unit in UNITS:
        text = unit.read_text().replace("/opt/kafka-monitor", str(root)).replace("/etc/kafka-monitor/env", str(env))
        (units / unit.name).write_text(text)
    return units


def test_the_example_has_a_target_migrate_web_worker_poller_and_exactly_one_beat():
    names = {unit.name for unit in UNITS}
    assert names == {"kafka-monitor.target", "kafka-monitor-migrate.service", "kafka-monitor-web.service",
                     "kafka-monitor-worker.service", "kafka-monitor-poller.service", "kafka-monitor-beat.service"}
    text = {unit.name: unit.read_text() for unit in UNITS}
    assert "--pool=threads" in text["kafka-monitor-worker.service"] and " -Q " not in text["kafka-monitor-worker.service"]
    assert "collectstatic --noinput" in text["kafka-monitor-migrate.service"]
    # The poller takes the queue the env file routes the poll tasks to, in processes.
    env = dict(line.split("=", 1) for line in (REPO / "deploy" / "systemd" / "kafka-monitor.env.example").read_text()
               .splitlines() if line and not line.startswith("#"))
    assert f"--pool=prefork --concurrency=2 -Q {env['MONITOR_POLL_QUEUE']} " in text["kafka-monitor-poller.service"]
    assert all(f"kafka-monitor-{name}.service" in text["kafka-monitor.target"]
               for name in ("migrate", "web", "worker", "poller", "beat"))
    for name in ("web", "worker", "poller", "beat"):
        assert "Restart=always" in text[f"kafka-monitor-{name}.service"]
        assert "Requires=kafka-monitor-migrate.service" in text[f"kafka-monitor-{name}.service"]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze (Debian: systemd)")
def test_systemd_parses_every_unit_and_finds_every_command(tmp_path):
    units = installed_units(tmp_path)
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *sorted(p.name for p in units.iterdir())],
                            cwd=units, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_every_exec_start_command_exists_and_gunicorn_accepts_its_flags(tmp_path):
    """Runs where systemd-analyze is missing too: the programs exist, gunicorn loads the app."""
    units = installed_units(tmp_path)
    commands = [line.split("=", 1)[1].split() for unit in units.iterdir()
                for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
    assert len(commands) == 6
    for command in commands:
        assert os.access(command[0], os.X_OK), command[0]
    [gunicorn] = [c for c in commands if c[0].endswith("/gunicorn")]
    env = {**os.environ, **dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines()
                                if line and not line.startswith("#"))}
    result = subprocess.run([*gunicorn, "--check-config"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_liveness_rules_watch_only_metrics_the_monitor_exports(client, db, settings):
    from monitor import liveness

    settings.MONITOR_METRICS_PUBLIC = True
    liveness.beat(liveness.SCHEDULER)
    liveness.beat(liveness.WORKER)
    exported = {line.split()[2] for line in client.get("/metrics").content.decode().splitlines()
                if line.startswith("# TYPE ")}
    document = yaml.safe_load((REPO / "deploy" / "prometheus" / "liveness-rules.yml").read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    watched = {name for rule in rules for name in re.findall(r"\bkafka_monitor_[a-z_]+", rule["expr"])}
    assert watched and watched <= exported, watched - exported
    assert {"KafkaMonitorDown", "KafkaMonitorSchedulerStopped", "KafkaMonitorWorkerStopped"} <= {
        rule["alert"] for rule in rules}
    assert all({"alert", "expr", "labels", "annotations"} <= set(rule) for rule in rules)
