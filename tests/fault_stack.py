"""The whole monitor as plain processes, for the fault suite (tests/test_faults.py).

Everything is the test's own, on free ports, so stopping it never touches the shared
services: a PostgreSQL cluster (``initdb`` + ``pg_ctl``, as the ``postgres`` user when the
tests run as root), a Redis (broker and cache), a tansu broker, gunicorn, one Celery worker
(``--pool=threads``) and beat. The stack is configured only through the environment, as
in production, with the intervals shortened so a fault plays out in seconds: heartbeat
1 s (so /readyz notices a dead beat after 3 s instead of 15 s), sweep 1 s (30 s), claim
lease 6 s (60 s), send timeout 2 s per network step (10 s), evaluation 1 s (15 s). The
behaviour is the same; only the waits are shorter.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psycopg

from tests import services
from tests.services import free_port, wait_for_port

REPO = Path(__file__).resolve().parent.parent
SHORT_INTERVALS = {
    "MONITOR_HEARTBEAT_INTERVAL_SECONDS": "1",
    "MONITOR_SWEEP_INTERVAL_SECONDS": "1",
    "MONITOR_DELIVERY_LEASE_SECONDS": "12",
    "MONITOR_NOTIFY_TIMEOUT_SECONDS": "4",
    "MONITOR_EVALUATE_INTERVAL_SECONDS": "1",
    "MONITOR_DELIVERY_BACKOFF_SECONDS": "1",
}


def wait_until(condition: Callable[[], object], timeout: float, what: str, every: float = 0.1) -> object:
    """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - a service still coming up
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


class OwnPostgres:
    """A PostgreSQL cluster of the test's own, started and stopped at will."""

    def __init__(self) -> None:
        versions = sorted(os.listdir("/usr/lib/postgresql"))
        self.bin = Path("/usr/lib/postgresql") / versions[-1] / "bin"
        self.root = Path(tempfile.mkdtemp(prefix="monitor-faults-pg-"))
        self.data, self.log = self.root / "data", self.root / "postgres.log"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.root, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, *argv: str) -> None:
        subprocess.run([*self.as_user, *argv], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "monitor") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def remove(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


class OwnRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", self.port, 15, "Redis")

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(15)
            self.process = None


class Process:
    """One of the monitor's processes, with its output in a log file the test can read,
    supervised as the systemd units do (``Restart=always``, ``RestartSec=2``): when it exits
    on its own it is started again and counted in ``restarts``. (A Celery worker exits
    with "Unrecoverable error" when Redis goes away at the wrong moment, a known
    kombu/redis-py failure; production relies on the supervisor for it, so does this.)"""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.log = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self._lock = threading.Lock()
        self._wanted = False
        threading.Thread(target=self._supervise, daemon=True).start()

    def _supervise(self) -> None:
        while True:
            time.sleep(2)  # RestartSec=2
            with self._lock:
                if self._wanted and self.process is not None and self.process.poll() is not None:
                    self.restarts += 1
                    self._spawn()

    def _spawn(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def start(self) -> None:
        with self._lock:
            self._wanted = True
            self._spawn()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        with self._lock:
            self._wanted = False
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no acknowledgement, nothing written."""
        self.stop(signal.SIGKILL)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Stack:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.postgres = OwnPostgres()
        self.redis = OwnRedis()
        self.kafka_port = free_port()
        self.kafka: services.Broker | None = None
        self.web_port = free_port()
        self.postgres.start()
        self.redis.start()
        self.start_kafka()
        with psycopg.connect(self.postgres.url("postgres"), autocommit=True) as connection:
            connection.execute("CREATE DATABASE monitor")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "DJANGO_", "CELERY_"))},
            "DJANGO_SETTINGS_MODULE": "monitor.settings", "PYTHONPATH": str(REPO),
            "DATABASE_URL": self.postgres.url(), "REDIS_URL": f"redis://127.0.0.1:{self.redis.port}/0",
            "SECRET_KEY": "fault-suite-only-secret-key-0123456789-abcdefghijklmnop", "DEBUG": "false",
            "SECURE_SSL_REDIRECT": "false", "SESSION_COOKIE_SECURE": "false", "CSRF_COOKIE_SECURE": "false",
            "ALLOWED_HOSTS": "127.0.0.1", "MONITOR_METRICS_PUBLIC": "true", "MONITOR_ALLOW_PRIVATE_WEBHOOKS": "true",
            "MONITOR_BASE_URL": f"http://127.0.0.1:{self.web_port}", "LOG_LEVEL": "INFO",
            **SHORT_INTERVALS,
        }
        self.manage("migrate", "--noinput", "-v", "0")
        bin_dir = Path(sys.executable).parent
        self.web = Process("web", [str(bin_dir / "gunicorn"), "monitor.wsgi:application", "--bind",
                                   f"127.0.0.1:{self.web_port}", "--workers", "2", "--timeout", "60"], self.env, log_dir)
        self.worker = self.celery("worker", "worker", "--pool=threads", "--concurrency=4", "--loglevel=INFO")
        self.beat = self.celery("beat", "beat", "--loglevel=INFO", "--schedule", str(log_dir / "beat-schedule"))
        for process in (self.web, self.worker, self.beat):
            process.start()
        wait_for_port("127.0.0.1", self.web_port, 60, "gunicorn")

    def start_kafka(self) -> None:
        self.kafka = services.start_broker(self.kafka_port, log_path=self.log_dir / "tansu.log")

    def stop_kafka(self) -> None:
        assert self.kafka is not None
        self.kafka.stop()
        self.kafka = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def celery(self, name: str, *args: str) -> Process:
        return Process(name, [str(Path(sys.executable).parent / "celery"), "-A", "monitor", *args], self.env,
                       self.log_dir)

    def manage(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=self.env, input=stdin,
                                capture_output=True, text=True, timeout=180)
        if result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result.stdout

    def sql(self, query: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.postgres.url(), autocommit=True, connect_timeout=5) as connection:
            return connection.execute(query, params).fetchall()

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        return self.request("GET", path, headers=headers)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.web_port}{path}", data=body, method=method,
                                         headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers.items()), exc.read()

    def close(self) -> None:
        for process in (self.beat, self.worker, self.web):
            process.stop()
        if self.kafka:
            self.kafka.stop()
        self.redis.stop()
        self.postgres.remove()
