"""``manage.py demo`` end to end: every process starts, the web server answers and the admin
can log in, Ctrl-C stops all of it with no process left behind, and a second run reuses
the set-up."""
from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.services import free_port

PROJECT_DIR = Path(__file__).resolve().parent.parent
SERVICES = ("broker", "worker", "beat", "web", "simulator")


def processes_with_marker(marker: str) -> list[int]:
    """Live processes whose environment carries ``marker`` (every demo child inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text().split(")")[-1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


class RunningDemo:
    def __init__(self, tmp_path: Path, extra_env: dict[str, str], *args: str) -> None:
        self.marker = f"demo-test-{uuid.uuid4().hex}"
        self.web_port = free_port()
        self.broker_port = free_port()
        env = {
            **os.environ,
            "DEBUG": "true",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
            "DEMO_TEST_MARKER": self.marker,
            **extra_env,
        }
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env.pop("SECRET_KEY", None)
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "demo", "--port", str(self.web_port), "--broker-port",
             str(self.broker_port), "--rate", "3", "--var-dir", str(tmp_path / "var"), *args],
            cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 150) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never printed; output:\n{self.output}")
            time.sleep(0.2)

    def finish(self, timeout: float = 90) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in processes_with_marker(self.marker):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def redis_url(settings):
    return settings.REDIS_URL


def log_in(base_url: str, password: str) -> tuple[int, str, http.cookiejar.CookieJar]:
    jar = http.cookiejar.CookieJar()

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    page = opener.open(f"{base_url}/login/", timeout=10).read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode({"username": "admin", "password": password, "csrfmiddlewaretoken": csrf})
    request = urllib.request.Request(f"{base_url}/login/", data=body.encode(),
                                     headers={"Referer": f"{base_url}/login/"})
    try:
        response = opener.open(request, timeout=10)
        return response.status, "", jar
    except urllib.error.HTTPError as exc:  # the 302 of a successful login, unfollowed
        return exc.code, exc.headers.get("Location", ""), jar


def test_the_demo_runs_everything_and_ctrl_c_stops_all_of_it(tmp_path, redis_url):
    demo = RunningDemo(tmp_path, {"REDIS_URL": redis_url, "DEMO_PASSWORD": "demo password 123"})
    try:
        demo.wait_for("Press Ctrl-C to stop everything.")
        base_url = f"http://127.0.0.1:{demo.web_port}"
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=10) as response:
            assert response.status == 200
        status, location, jar = log_in(base_url, "demo password 123")
        assert (status, location) == (302, "/")
        assert any(cookie.name == "sessionid" for cookie in jar)
        assert len(processes_with_marker(demo.marker)) >= 1 + len(SERVICES)

        os.killpg(demo.process.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        assert demo.finish() == 0
    finally:
        demo.kill()

    steps = [line for line in demo.lines if re.match(r"^\[\d/9\] .* \.\.\. ok \(\d+\.\d s\)", line)]
    assert [line[:5] for line in steps] == [f"[{n}/9]" for n in range(1, 10)]
    assert f"[4/9] starting broker on 127.0.0.1:{demo.broker_port} ... ok" in demo.output
    assert "Redis answers" in demo.output
    assert "password    the value of DEMO_PASSWORD" in demo.output
    assert "demo password 123" not in demo.output  # a chosen password is never echoed
    for service in SERVICES:
        assert f"stopped {service} (" in demo.output
        assert (tmp_path / "var" / "log" / f"{service}.log").stat().st_size > 0
    assert "all stopped." in demo.output
    assert processes_with_marker(demo.marker) == []


def run_demo(tmp_path: Path, redis_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "demo", "--var-dir", str(tmp_path / "var"), *args],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=180,
        env={**os.environ, "DEBUG": "true", "REDIS_URL": redis_url,
             "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}"},
    )


def test_a_second_run_reuses_the_set_up_and_moves_off_a_busy_broker_port(tmp_path, redis_url):
    first = run_demo(tmp_path, redis_url, "--port", str(free_port()), "--broker-port", str(free_port()),
                     "--duration", "1")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "[3/9] creating the admin user \"admin\" ... ok" in first.stdout
    password = re.search(r"password    (\S+)   \(shown once", first.stdout).group(1)

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        second = run_demo(tmp_path, redis_url, "--port", str(free_port()), "--broker-port", str(busy_port),
                          "--duration", "1")
    assert second.returncode == 0, second.stdout + second.stderr
    assert re.search(r"migrating the database \(.*\) \.\.\. ok \(\d+\.\d s\): up to date", second.stdout)
    assert "exists; password kept" in second.stdout
    assert f"port {busy_port} is busy" in second.stdout
    assert "cluster updated" in second.stdout  # the demo cluster now points at the new port
    assert password not in second.stdout


def test_a_busy_web_port_stops_the_demo_before_it_starts_anything(tmp_path, redis_url):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "demo", "--port", str(busy_port),
             "--var-dir", str(tmp_path / "var")],
            cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60,
            env={**os.environ, "DEBUG": "true", "REDIS_URL": redis_url,
                 "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}"},
        )
    assert result.returncode == 1
    assert f"[1/9] checking port {busy_port}" in result.stdout
    assert "is in use (is a demo already running?)" in result.stdout
    assert not (tmp_path / "demo.sqlite3").exists()


def test_bad_arguments_exit_2_naming_the_option(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "demo", "--port", "0"], cwd=PROJECT_DIR, capture_output=True, text=True,
        timeout=60, env={**os.environ, "DEBUG": "true", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"},
    )
    assert result.returncode == 2
    assert "--port" in result.stderr


def test_demo_alert_rules_are_created_once_and_rules_edited_later_are_kept(db):
    from monitor.management.commands.demo import apply_demo_alert_rules
    from monitor.models import AlertRule, Channel

    assert apply_demo_alert_rules() == "10 alert rules created"
    assert Channel.objects.get(name="demo-oncall-email").recipients == ["oncall@example.com"]
    rule = AlertRule.objects.get(name="shipping falls behind")
    assert (rule.metric, rule.op, rule.threshold, rule.for_seconds) == ("lag", ">", 50, 30)
    AlertRule.objects.filter(pk=rule.pk).update(threshold=500)

    assert apply_demo_alert_rules() == "10 alert rules kept"
    assert AlertRule.objects.get(pk=rule.pk).threshold == 500
