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
