"""The world the end-to-end pages show: the real web server (gunicorn, production settings)
on the test database, the demo's traffic on the real broker, real poll cycles, detector runs
and alert evaluations. Built once per run of the e2e package by the ``world`` fixture
(tests/e2e/conftest.py); its data is committed, because the web server is another process.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

from tests import services

PROJECT_DIR = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = PROJECT_DIR / "test-artifacts"

CLUSTER = "local"
# Topic and group prefix. The broker lives for one pytest session and only this package
# uses this namespace; a readable one keeps the README screenshots readable.
NAMESPACE = "shop"
SERVICES = ("orders", "payments", "inventory", "shipping", "analytics")
TOPICS = tuple(f"{NAMESPACE}.{name}" for name in
               ("orders.events", "payments.events", "inventory.events", "shipping.events"))
GROUPS = tuple(f"{NAMESPACE}.{service}" for service in SERVICES)  # each service consumes as its own group
STOPPED_GROUP = f"{NAMESPACE}.analytics"
LAG_RULE = "analytics stopped reading orders"
FAILURE_RULE = "payments keeps failing"
STOPPED_RULE = "analytics stalled or stopped"
STORM_RULE = "cascade storm"
DRIFT_RULE = "schema drift"
USERNAME = "oncall"
PASSWORD = "e2e-correct-horse-battery-staple"

TRACE_PAGE = re.compile(r"/traces/[0-9a-f]{32}/")  # for page.wait_for_url
TRAFFIC_SECONDS = 12.0
POLL_EVERY_SECONDS = 2.5


# -- the web server ------------------------------------------------------------------------

@dataclass
class WebServer:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown (TERM waits for keep-alives)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def database_url(settings_dict: dict) -> str:
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"postgres://{credentials}{host}{port}/{quote(settings_dict['NAME'], safe='')}"


def start_web_server(database: str, redis_url: str, log_path: Path, timeout: float = 120) -> WebServer:
    """gunicorn with the production settings module, on a free port, until /healthz answers."""
    port = services.free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "monitor.settings",
        "DATABASE_URL": database,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "SECRET_KEY": "e2e-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
        "DEBUG": "false",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "ALLOWED_HOSTS": "127.0.0.1",
        "MONITOR_BASE_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    # As deployed: hashed, compressed static files (monitor/staticfiles.py) need collectstatic.
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
                   cwd=PROJECT_DIR, env=env, check=True, timeout=300)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "monitor.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--threads", "4", "--timeout", "60", "--graceful-timeout", "5",
         "--error-logfile", "-", "--log-level", "warning"],
        cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    log.close()
    server = WebServer(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the web server exited with {process.returncode} at start:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=2) as response:
                if response.status == 200 and services.listens_on(process.pid, port):  # not another run's server
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"the web server did not answer /healthz within {timeout:.0f}s:\n{server.log_tail()}")


# -- the world the pages show ----------------------------------------------------------------

@dataclass
class World:
    server: WebServer
    cluster: str = CLUSTER
    namespace: str = NAMESPACE
    firing_alert_id: int = 0
    failed_trace_id: str = ""
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def group_path(self, group: str) -> str:
        return f"/clusters/{quote(self.cluster)}/groups/{quote(group)}/"


def traffic_config(bootstrap: str):
    """The demo's whole story (slow shipping, analytics stopping, failures, dead letters,
    duplicates, schema drift, a cascade storm) squeezed into a few seconds."""
    from monitor.demo import simulator as sim

    config = sim.SimulatorConfig(bootstrap=[bootstrap], namespace=NAMESPACE, seed=5)
    return replace(
        config, orders_per_second=6, shipping_slow_first_after=5, shipping_slow_every=60, shipping_slow_for=6,
        shipping_seconds_per_shipment_when_slow=0.3, analytics_stops_after=4, schema_v2_after=6,
        storm_first_after=7, storm_every=600, storm_size=60, storm_events_per_second=60, failure_rate=0.08,
        poison_rate=0.04, out_of_stock_rate=0.15, amend_rate=0.05, out_of_order_rate=0.1,
        duplicate_publish_rate=0.03, redelivery_rate=0.2, park_timeout_seconds=1, stats_every_seconds=5,
    )


def seed_configuration(broker_bootstrap: str) -> str:
    """Cluster, user, alert rules; returns an ingest token for the simulator."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    from monitor.alerts.metrics import STATUS_RANK
    from monitor.choices import Operator, Severity
    from monitor.models import AlertRule, ApiToken, Cluster

    Cluster.objects.create(name=CLUSTER, bootstrap_servers=broker_bootstrap, group_include=f"{NAMESPACE}.*",
                           poll_interval_seconds=5)
    # The server runs the production settings (PBKDF2); the test settings only know MD5.
    hasher = PBKDF2PasswordHasher()
    get_user_model().objects.create(
        username=USERNAME, password=hasher.encode(PASSWORD, hasher.salt(), iterations=1000),
        is_staff=True, is_superuser=True, email="oncall@example.com",
    )
    AlertRule.objects.create(name=LAG_RULE, cluster=CLUSTER, group=STOPPED_GROUP, topic="*", metric="lag",
                             op=Operator.GT, threshold=20, for_seconds=0, severity=Severity.CRITICAL)
    AlertRule.objects.create(name=FAILURE_RULE, cluster="*", group=f"{NAMESPACE}.payments", topic="*",
                             metric="failed_events", op=Operator.GT, threshold=0, for_seconds=0,
                             severity=Severity.WARNING)
    # The demo's other rules (monitor/demo/alerts.yaml), on this world's names.
    AlertRule.objects.create(name=STOPPED_RULE, cluster=CLUSTER, group=STOPPED_GROUP, topic="*", metric="status",
                             op=Operator.GE, threshold=STATUS_RANK["stalled"], for_seconds=0,
                             severity=Severity.CRITICAL)
    AlertRule.objects.create(name=STORM_RULE, cluster="*", group="*", topic="*", metric="cascade_storm_events",
                             op=Operator.GT, threshold=0, for_seconds=0, severity=Severity.WARNING)
    AlertRule.objects.create(name=DRIFT_RULE, cluster="*", group="*", topic="*", metric="schema_drift_events",
                             op=Operator.GT, threshold=0, for_seconds=0, severity=Severity.WARNING)
    _, secret = ApiToken.issue("e2e-simulator", ["ingest"])
    return secret


def run_traffic(broker_bootstrap: str, api_url: str, token: str, cluster_id: int) -> dict[str, object]:
    """The simulator reports to the live server's events API while this thread polls the
    cluster every couple of seconds, so every group has a lag history of several points."""
    from django.test import override_settings

    from monitor.choices import GroupStatus
    from monitor.demo import simulator as sim
    from monitor.lag.poll import poll_cluster
    from monitor.models import ConsumerGroup

    simulator = sim.Simulator(traffic_config(broker_bootstrap), sim.make_reporter(api_url, token))
    failure: list[BaseException] = []

    def run() -> None:
        try:
            simulator.run(duration=TRAFFIC_SECONDS)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="e2e-simulator", daemon=True)
    polls = []
    # Short windows so a few seconds of history already read as stopped / falling behind.
    with override_settings(MONITOR_STATUS_WINDOW_SECONDS=8, MONITOR_STOPPED_AFTER_SECONDS=6):
        thread.start()
        deadline = time.monotonic() + TRAFFIC_SECONDS + 180  # only a bound for a hung simulator
        while thread.is_alive() and time.monotonic() < deadline:
            time.sleep(POLL_EVERY_SECONDS)
            polls.append(poll_cluster(cluster_id))
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
        polls.append(poll_cluster(cluster_id))
        # Whether the stopped group reads as stopped yet depends on when the polls saw its
        # last commit; poll on until it does (it never commits again).
        settle_deadline = time.monotonic() + 180  # only a bound for a group that never stops
        while not ConsumerGroup.objects.filter(name=STOPPED_GROUP, status=GroupStatus.STOPPED).exists():
            if time.monotonic() > settle_deadline:
                raise RuntimeError(f"{STOPPED_GROUP} never read as stopped: "
                                   f"{list(ConsumerGroup.objects.values_list('name', 'status', 'status_reason'))}")
            time.sleep(POLL_EVERY_SECONDS)
            polls.append(poll_cluster(cluster_id))
    if failure:
        raise RuntimeError(f"the simulator failed: {failure[0]!r}")
    if thread.is_alive():
        simulator.stop_event.set()
        raise RuntimeError("the simulator did not stop in time")
    failed_polls = [p.error for p in polls if p is None or not p.ok]
    if failed_polls:
        raise RuntimeError(f"poll cycles failed: {failed_polls}")
    return {"polls": len(polls), "reporter": simulator.reporter.stats, "simulator": dict(simulator.stats)}


def settle(world: World) -> None:
    """Detectors and two alert evaluations, then pick what the tests navigate to."""
    from django.utils import timezone

    from monitor.alerts.engine import evaluate
    from monitor.choices import AlertState, Stage
    from monitor.events.config import DetectorConfig
    from monitor.events.runner import run_detectors
    from monitor.models import Alert, Event

    # The world's storm is 60 events (the demo's 300): a fan-out of 40 makes it one here.
    run_detectors(timezone.now(), replace(DetectorConfig.from_settings(), storm_max_fanout=40))
    world.notes["evaluations"] = [evaluate().summary(), evaluate().summary()]
    lag_alert = Alert.objects.filter(rule__name=LAG_RULE, state=AlertState.FIRING).first()
    if lag_alert is None:
        raise RuntimeError(f"the lag alert did not fire: {world.notes}")
    world.firing_alert_id = lag_alert.id
    world.notes["firing"] = sorted(Alert.objects.filter(state=AlertState.FIRING).values_list("rule__name", flat=True))
    world.failed_trace_id = (Event.objects.filter(stage=Stage.DEAD_LETTERED).exclude(trace_id="")
                             .values_list("trace_id", flat=True).first()
                             or Event.objects.filter(stage=Stage.FAILED).exclude(trace_id="")
                             .values_list("trace_id", flat=True).first() or "")
    if not world.failed_trace_id:
        raise RuntimeError(f"the traffic produced no failed trace: {world.notes}")
