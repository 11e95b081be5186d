"""What ``make demo`` runs, minus the wiring: progress output, probes, the environment of
the child processes, a supervisor that starts them and stops every one of them on
Ctrl-C, and the few database set-up steps (admin user, cluster, ingest token).

The demo command (``monitor/management/commands/demo.py``) strings these together.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TextIO

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

# Settings the demo tightens so its story shows within minutes rather than hours:
# a 2-minute window makes shipping's slow phase read as "falling behind", and
# analytics (which stops after 3 minutes) reads as STOPPED two minutes later.
# A day of events is plenty for a demo and keeps its SQLite database small.
DEMO_SETTINGS = {
    "MONITOR_STATUS_WINDOW_SECONDS": "120",
    "MONITOR_STOPPED_AFTER_SECONDS": "120",
    "MONITOR_EVENT_RETENTION_DAYS": "1",
    # The demo's producer goes quiet for 3 minutes: judge produce rates over 2.
    "MONITOR_PRODUCE_RATE_WINDOW_SECONDS": "120",
    # Alert emails of the demo go to the worker's log (var/log/worker.log), not to an SMTP server.
    "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
}


# -- progress output ---------------------------------------------------------------------

def format_step(index: int, total: int, text: str) -> str:
    return f"[{index}/{total}] {text} ..."


def format_outcome(ok: bool, seconds: float, detail: str = "") -> str:
    outcome = f"{'ok' if ok else 'FAILED'} ({seconds:.1f} s)"
    return f"{outcome}: {detail}" if detail else outcome


class Console:
    """Writes progress lines and echoed child output without tearing either.

    A step prints ``[3/9] starting broker ...`` and completes the line when done; if a
    child's line has to be echoed meanwhile, the step's line is repeated on completion.
    """

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._lock = threading.Lock()
        self._pending: str | None = None  # a step line still waiting for its outcome
        self._interrupted = False

    def line(self, text: str) -> None:
        with self._lock:
            self._break_pending()
            self.out.write(text + "\n")
            self.out.flush()

    def begin(self, text: str) -> None:
        with self._lock:
            self._break_pending()
            self._pending = text
            self._interrupted = False
            self.out.write(text)
            self.out.flush()

    def end(self, outcome: str) -> None:
        with self._lock:
            if self._pending is not None and self._interrupted:
                self.out.write(self._pending)
            self.out.write(" " + outcome + "\n")
            self.out.flush()
            self._pending = None
            self._interrupted = False

    def _break_pending(self) -> None:
        if self._pending is not None and not self._interrupted:
            self.out.write("\n")
            self._interrupted = True


@dataclass
class StepNote:
    """What a step wants to add after ``ok``, e.g. ``"3 migrations applied"``."""

    detail: str = ""


class Progress:
    """Numbered steps with timings: ``[3/9] starting broker on 127.0.0.1:9092 ... ok (0.4 s)``."""

    def __init__(self, total: int, console: Console, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.console = console
        self.clock = clock
        self.index = 0

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[StepNote]:
        self.index += 1
        note = StepNote()
        self.console.begin(format_step(self.index, self.total, text))
        started = self.clock()
        try:
            yield note
        except BaseException as exc:
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc) or type(exc).__name__
            self.console.end(format_outcome(False, self.clock() - started, reason))
            raise
        self.console.end(format_outcome(True, self.clock() - started, note.detail))


class StepFailed(Exception):
    """A step could not be done; the message says why and what to do."""


# -- probes ------------------------------------------------------------------------------

def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def choose_port(preferred: int, is_free: Callable[[int], bool], fallback: Callable[[], int]) -> int:
    """``preferred`` when it is free, else whatever ``fallback`` finds."""
    return preferred if is_free(preferred) else fallback()


def redacted_url(url: str) -> str:
    """``url`` fit to print: a password in it becomes ``***``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def redis_problem(url: str, timeout_seconds: float = 1.0) -> str | None:
    """None when Redis at ``url`` answers PING, else a short reason."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_seconds, socket_timeout=timeout_seconds)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def wait_for_http(url: str, timeout_seconds: float, alive: Callable[[], bool] = lambda: True) -> None:
    """Wait until ``url`` answers 200; StepFailed after the timeout or when ``alive`` turns false."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_seconds
    last = "no answer"
    while time.monotonic() < deadline:
        if not alive():
            raise StepFailed("the process exited while starting")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        time.sleep(0.25)
    raise StepFailed(f"{url} did not answer within {timeout_seconds:.0f} s ({last})")


# -- environment of the children ------------------------------------------------------

def child_environment(base: Mapping[str, str], *, redis_url: str | None,
                      extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every demo process gets.

    DEBUG is on for the demo only. Without a reachable Redis, REDIS_URL (and a Redis
    CELERY_BROKER_URL) are removed so the settings fall back to the embedded
    filesystem transport and a local-memory cache.
    """
    env = dict(base)
    env["DEBUG"] = "true"
    env["PYTHONUNBUFFERED"] = "1"
    env["DJANGO_SETTINGS_MODULE"] = "monitor.settings"
    if redis_url:
        env["REDIS_URL"] = redis_url
    else:
        env.pop("REDIS_URL", None)
        if env.get("CELERY_BROKER_URL", "").startswith(("redis://", "rediss://")):
            env.pop("CELERY_BROKER_URL")
    for name, value in DEMO_SETTINGS.items():
        env.setdefault(name, value)
    env.update(extra or {})
    return env


# -- which child output is worth showing ---------------------------------------------

# Log lines at WARNING and above, in the formats of Python logging, Celery and gunicorn.
# Tracebacks stay in the log file: the ERROR line above them says what failed, and a
# child that crashes has the end of its log printed by the demo.
_IMPORTANT = re.compile(r"\b(WARNING|ERROR|CRITICAL|FATAL)\b")


# Warnings that say nothing to someone watching the demo.
_NOISE = re.compile(
    r"It is blocking the event loop"  # kafka-python's slow-poll notice
    r"|No hostname was supplied\. Reverting to default 'localhost'"  # kombu, embedded transport
)


# The subject line of an alert email the demo prints instead of sending (console backend).
_ALERT_EMAIL = re.compile(r"\] Subject: \[kafka-monitor\]")


def is_important(line: str) -> bool:
    """Lines echoed to the terminal; everything goes to the log file anyway."""
    if _ALERT_EMAIL.search(line):
        return True
    return bool(_IMPORTANT.search(line)) and not _NOISE.search(line)


def is_important_simulator_line(line: str) -> bool:
    """The simulator's own messages (its summaries, storms, the hang) plus any problem."""
    return is_important(line) or " monitor.demo.simulator " in line


# -- supervision ---------------------------------------------------------------------

def die_with_parent(argv: list[str], setpriv: str | None) -> list[str]:
    """``argv`` wrapped so Linux sends the child SIGTERM when the demo itself dies, even by
    SIGKILL: no orphans in any case. ``setpriv`` (util-linux) sets the parent-death signal
    and execs the command; where it is missing the command runs as is."""
    if not setpriv:
        return list(argv)
    return [setpriv, "--pdeathsig", "TERM", "--", *argv]


@dataclass
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    echo: Callable[[str], bool] = is_important
    stop_timeout_seconds: float = 10.0
    cwd: str | None = None


@dataclass
class Child:
    spec: ChildSpec
    process: subprocess.Popen
    log_path: Path
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=200))
    output_closed: threading.Event = field(default_factory=threading.Event)
    _seen: threading.Condition = field(default_factory=threading.Condition)

    @property
    def name(self) -> str:
        return self.spec.name

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_for_output(self, pattern: str, timeout_seconds: float) -> None:
        """Wait until the child printed a line matching ``pattern``; StepFailed otherwise."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_seconds
        with self._seen:
            while True:
                if any(regex.search(line) for line in self.recent):
                    return
                if self.output_closed.is_set() or not self.alive():
                    raise StepFailed(f"{self.name} exited (code {self.process.poll()}); see {self.log_path}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StepFailed(f"{self.name} not ready within {timeout_seconds:.0f} s; see {self.log_path}")
                self._seen.wait(min(remaining, 0.5))

    def record(self, line: str) -> None:
        with self._seen:
            self.recent.append(line)
            self._seen.notify_all()


class Supervisor:
    """Starts children in their own process groups, tees their output into
    ``log_dir/NAME.log`` (echoing what matters) and stops them in reverse order."""

    def __init__(self, log_dir: Path, console: Console) -> None:
        self.log_dir = log_dir
        self.console = console
        self.children: list[Child] = []
        self.stopping = False

    def start(self, spec: ChildSpec) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.name}.log"
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed by the reader thread
        log_file.write(f"==== {spec.name} started {time.strftime('%Y-%m-%d %H:%M:%S')} ====\n".encode())
        log_file.flush()
        try:
            process = subprocess.Popen(
                die_with_parent(spec.argv, shutil.which("setpriv")), env=spec.env, cwd=spec.cwd,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stopped as a whole, not by the terminal
            )
        except OSError as exc:
            log_file.close()
            raise StepFailed(f"cannot start {spec.name} ({spec.argv[0]}): {exc}") from exc
        child = Child(spec=spec, process=process, log_path=log_path)
        self.children.append(child)
        threading.Thread(target=self._pump, args=(child, process.stdout, log_file),
                         name=f"log-{spec.name}", daemon=True).start()
        return child

    def _pump(self, child: Child, stream: IO[bytes], log_file: IO[bytes]) -> None:
        try:
            for raw in iter(stream.readline, b""):
                log_file.write(raw)
                log_file.flush()
                line = raw.decode(errors="replace").rstrip()
                child.record(line)
                if child.spec.echo(line) and not self.stopping:
                    self.console.line(f"  {child.name}| {line}")
        finally:
            child.output_closed.set()
            child.record("")
            log_file.close()

    def first_exited(self) -> Child | None:
        for child in self.children:
            if not child.alive():
                return child
        return None

    def stop(self, child: Child) -> float:
        """SIGTERM the child's process group, SIGKILL it after the timeout; seconds taken."""
        started = time.monotonic()
        group = child.process.pid
        if child.alive():
            _signal_group(group, signal.SIGTERM)
            try:
                child.process.wait(timeout=child.spec.stop_timeout_seconds)
            except subprocess.TimeoutExpired:
                _signal_group(group, signal.SIGKILL)
                child.process.wait(timeout=5)
        # Grandchildren (gunicorn's workers) must not outlive their parent either.
        if _group_exists(group):
            _signal_group(group, signal.SIGTERM)
            deadline = time.monotonic() + 3
            while _group_exists(group) and time.monotonic() < deadline:
                time.sleep(0.05)
            _signal_group(group, signal.SIGKILL)
        return time.monotonic() - started

    def stop_all(self, report: Callable[[str, float, int | None], None] | None = None) -> None:
        self.stopping = True
        for child in reversed(self.children):
            was_running = child.alive()
            seconds = self.stop(child)
            if report and was_running:
                report(child.name, seconds, child.process.returncode)
        self.children.clear()


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


def _group_exists(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def display_path(path: Path | str, base: Path) -> str:
    """``path`` relative to the project when it is inside it (shorter to read), else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(base.resolve()))
    except ValueError:
        return str(path)


def tail(path: Path, lines: int = 20) -> list[str]:
    try:
        with open(path, "rb") as handle:
            return [line.decode(errors="replace").rstrip() for line in deque(handle, maxlen=lines)]
    except OSError:
        return []


class StopRequest:
    """Ctrl-C, SIGTERM and SIGHUP ask the demo to stop. During start-up the signal also
    interrupts the step in progress; later it only sets the flag the main loop watches.
    A second signal while stopping is ignored so the clean-up always completes."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name = ""
        self.interrupt_steps = True
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, _frame: object) -> None:
        if self.event.is_set():
            return
        self.signal_name = signal.Signals(signum).name
        self.event.set()
        if self.interrupt_steps:
            raise KeyboardInterrupt


# -- database set-up -------------------------------------------------------------------

@dataclass(frozen=True)
class AdminOutcome:
    created: bool
    password: str | None  # shown once: generated, or None when the existing one was kept
    password_from_env: bool = False

    def describe(self) -> str:
        if self.created:
            return "created"
        if self.password_from_env:
            return "exists; password reset to DEMO_PASSWORD"
        return "exists; password kept"


def ensure_admin_user(username: str, password: str | None) -> AdminOutcome:
    """Create the superuser with ``password`` (or a generated one); an existing user keeps
    its password unless one is given."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user is None:
        chosen = password or secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username=username, email="", password=chosen)
        return AdminOutcome(created=True, password=chosen, password_from_env=bool(password))
    if password:
        user.set_password(password)
        user.is_active = user.is_staff = user.is_superuser = True
        user.save(update_fields=["password", "is_active", "is_staff", "is_superuser"])
        return AdminOutcome(created=False, password=password, password_from_env=True)
    return AdminOutcome(created=False, password=None)


def pending_migrations() -> int:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))


def issue_ingest_token(name: str) -> str:
    """A fresh ingest token for the simulator (rotated on every start; only its hash is stored)."""
    from monitor.choices import TokenScope
    from monitor.models import ApiToken

    _, secret = ApiToken.issue(name, [TokenScope.INGEST])
    return secret


def forget_cluster_history(cluster_id: int) -> int:
    """Clear what was recorded about a cluster's previous broker; returns the groups forgotten.

    The demo's broker keeps nothing between runs (in-memory storage): its offsets start at 0
    again, which, next to the previous run's samples, would read as every group rewinding.
    The cluster row itself (and whatever was edited on it in the admin) stays.
    """
    from django.db import transaction

    from monitor.choices import ClusterStatus
    from monitor.models import Cluster, ConsumerGroup, GroupEvent, LagFrame, LagRollup, PollRun, Topic

    with transaction.atomic():
        GroupEvent.objects.filter(cluster_id=cluster_id).delete()
        _, deleted = ConsumerGroup.objects.filter(cluster_id=cluster_id).delete()
        LagFrame.objects.filter(cluster_id=cluster_id).delete()
        LagRollup.objects.filter(cluster_id=cluster_id).delete()
        PollRun.objects.filter(cluster_id=cluster_id).delete()
        Topic.objects.filter(cluster_id=cluster_id).delete()
        Cluster.objects.filter(pk=cluster_id).update(
            status=ClusterStatus.UNKNOWN, last_poll_at=None, last_success_at=None, last_error="", next_poll_at=None,
        )
    return deleted.get(ConsumerGroup._meta.label, 0)
