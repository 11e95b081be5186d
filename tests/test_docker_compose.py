"""docker-compose.yml is a valid Compose file (checked by `docker-compose config`, no engine needed)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_compose_file_is_valid():
    docker_compose = shutil.which("docker-compose")
    assert docker_compose, "docker-compose is missing: `make test` installs the Debian package docker-compose"
    result = subprocess.run(
        [docker_compose, "-f", "docker-compose.yml", "config", "-q"], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "SECRET_KEY": "compose-check", "POSTGRES_PASSWORD": "compose-check"}, timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_gunicorn_trusts_forwarded_headers_only_from_the_proxy():
    for name in ("docker-compose.yml", "Dockerfile", "deploy/systemd/kafka-monitor-web.service"):
        text = (REPO / name).read_text()
        assert "--forwarded-allow-ips=*" not in text and '"--forwarded-allow-ips", "*"' not in text, name
        assert "forwarded-allow-ips *" not in text, name
    assert "--forwarded-allow-ips=${FORWARDED_ALLOW_IPS:-127.0.0.1,::1}" in (REPO / "docker-compose.yml").read_text()


def test_django_does_not_believe_x_forwarded_proto_by_itself(rf):
    from django.conf import settings

    assert getattr(settings, "SECURE_PROXY_SSL_HEADER", None) is None
    request = rf.get("/", HTTP_X_FORWARDED_PROTO="https")
    assert not request.is_secure()


def _resolved_compose() -> dict:
    """The Compose file as docker-compose resolves it (anchors merged, variables filled)."""
    import yaml

    result = subprocess.run(
        [shutil.which("docker-compose") or "docker-compose", "-f", "docker-compose.yml", "config"], cwd=REPO,
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "SECRET_KEY": "compose-check", "POSTGRES_PASSWORD": "compose-check"},
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_polls_go_to_processes_of_their_own_and_the_worker_keeps_the_rest():
    services = _resolved_compose()["services"]
    poller, worker = services["poller"]["command"], services["worker"]["command"]
    queue = services["poller"]["environment"]["MONITOR_POLL_QUEUE"]
    assert queue and all(s["environment"]["MONITOR_POLL_QUEUE"] == queue
                         for s in (services["beat"], services["worker"], services["web"]))
    assert "--pool=prefork" in poller and poller[poller.index("-Q") + 1] == queue
    assert "-Q" not in worker and "--pool=threads" in worker  # the default queue: alerts, delivery, upkeep
    # The health check pings the node the poller names itself.
    node = poller[poller.index("-n") + 1]
    assert node == "poller@%h" and "--destination poller@$$HOSTNAME " in " ".join(services["poller"]["healthcheck"]["test"])
