"""The demo's orchestration: progress output, probes, child environments, supervision
of real processes (log files, readiness, stopping whole process groups, no orphans)
and the database set-up steps."""
from __future__ import annotations

import http.server
import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from monitor.demo import orchestrator as orch

PROJECT_DIR = Path(__file__).resolve().parent.parent


class FakeClock:
    def __init__(self, *readings: float) -> None:
        self.readings = list(readings)

    def __call__(self) -> float:
        return self.readings.pop(0)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a parent that still lives) is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(predicate, timeout: float = 60.0) -> bool:
    """Polls ``predicate``; ``timeout`` only bounds a condition that never comes true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# -- progress output ---------------------------------------------------------------------

def test_a_finished_step_reads_as_number_text_outcome_and_seconds():
    out = io.StringIO()
    progress = orch.Progress(7, orch.Console(out), clock=FakeClock(10.0, 10.4))
    progress.index = 2
    with progress.step("starting broker on 127.0.0.1:9092"):
        pass
    assert out.getvalue() == "[3/7] starting broker on 127.0.0.1:9092 ... ok (0.4 s)\n"


def test_a_step_can_add_a_detail_after_ok():
    out = io.StringIO()
    progress = orch.Progress(2, orch.Console(out), clock=FakeClock(0.0, 1.25))
    with progress.step("migrating the database") as note:
        note.detail = "3 migrations applied"
    assert out.getvalue() == "[1/2] migrating the database ... ok (1.2 s): 3 migrations applied\n"


def test_a_failing_step_prints_failed_with_the_reason_and_reraises():
    out = io.StringIO()
    progress = orch.Progress(2, orch.Console(out), clock=FakeClock(0.0, 2.0))
    with pytest.raises(orch.StepFailed):
        with progress.step("checking port 8000"):
            raise orch.StepFailed("port 8000 is in use")
    assert out.getvalue() == "[1/2] checking port 8000 ... FAILED (2.0 s): port 8000 is in use\n"


def test_output_echoed_during_a_step_does_not_tear_the_step_line():
    out = io.StringIO()
    console = orch.Console(out)
    progress = orch.Progress(1, console, clock=FakeClock(0.0, 0.5))
    with progress.step("starting the worker"):
        console.line("  worker| ERROR something")
    assert out.getvalue().splitlines() == [
        "[1/1] starting the worker ...",
        "  worker| ERROR something",
        "[1/1] starting the worker ... ok (0.5 s)",
    ]


# -- probes --------------------------------------------------------------------------------

def test_a_port_someone_listens_on_is_not_free_and_the_fallback_is_used():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        assert not orch.port_is_free("127.0.0.1", busy)
        chosen = orch.choose_port(busy, lambda p: orch.port_is_free("127.0.0.1", p), orch.free_port)
    assert chosen != busy
    assert orch.port_is_free("127.0.0.1", chosen)


def test_the_preferred_port_is_kept_when_free():
    port = orch.free_port()
    assert orch.choose_port(port, lambda p: orch.port_is_free("127.0.0.1", p), lambda: 1) == port


def test_redis_that_answers_has_no_problem(settings):
    assert orch.redis_problem(settings.REDIS_URL) is None


def test_a_password_in_a_url_is_never_printed():
    assert orch.redacted_url("redis://:s3cret@redis.internal:6380/2") == "redis://:***@redis.internal:6380/2"
    assert orch.redacted_url("redis://app:s3cret@redis/0") == "redis://app:***@redis/0"
    assert orch.redacted_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_redis_on_a_closed_port_is_reported_with_the_reason():
    problem = orch.redis_problem(f"redis://127.0.0.1:{orch.free_port()}/0", timeout_seconds=0.5)
    assert problem is not None and "Connection" in problem


class _Healthz(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_waiting_for_http_returns_once_the_url_answers_200():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        orch.wait_for_http(f"http://127.0.0.1:{server.server_port}/healthz", timeout_seconds=5)
        with pytest.raises(orch.StepFailed, match="HTTP 503"):
            orch.wait_for_http(f"http://127.0.0.1:{server.server_port}/other", timeout_seconds=0.5)
    finally:
        server.shutdown()
        server.server_close()


def test_waiting_for_http_gives_up_at_once_when_the_server_process_died():
    with pytest.raises(orch.StepFailed, match="exited"):
        orch.wait_for_http(f"http://127.0.0.1:{orch.free_port()}/healthz", timeout_seconds=30, alive=lambda: False)


# -- environment of the children ---------------------------------------------------------

def test_children_get_debug_and_the_reachable_redis():
    env = orch.child_environment({"PATH": "/bin", "DEBUG": "false"}, redis_url="redis://127.0.0.1:6379/3")
    assert env["DEBUG"] == "true"
    assert env["REDIS_URL"] == "redis://127.0.0.1:6379/3"
    assert env["PATH"] == "/bin"
    assert env["DJANGO_SETTINGS_MODULE"] == "monitor.settings"


def test_without_redis_the_children_lose_every_redis_url():
    env = orch.child_environment(
        {"REDIS_URL": "redis://gone:6379/0", "CELERY_BROKER_URL": "redis://gone:6379/1"}, redis_url=None
    )
    assert "REDIS_URL" not in env
    assert "CELERY_BROKER_URL" not in env


def test_a_non_redis_celery_broker_chosen_by_the_user_is_kept():
    env = orch.child_environment({"CELERY_BROKER_URL": "amqp://rabbit//"}, redis_url=None)
    assert env["CELERY_BROKER_URL"] == "amqp://rabbit//"


def test_demo_status_windows_are_short_unless_the_user_chose_others():
    assert orch.child_environment({}, redis_url=None)["MONITOR_STOPPED_AFTER_SECONDS"] == "120"
    env = orch.child_environment({"MONITOR_STOPPED_AFTER_SECONDS": "900"}, redis_url=None)
    assert env["MONITOR_STOPPED_AFTER_SECONDS"] == "900"


def test_without_redis_the_settings_of_a_child_fall_back_to_the_embedded_transport(tmp_path):
    env = orch.child_environment(
        {**os.environ, "REDIS_URL": "redis://gone:6379/0", "DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite3"},
        redis_url=None,
    )
    script = ("import django; django.setup(); from django.conf import settings; "
              "print(settings.CELERY_BROKER_URL, settings.CACHES['default']['BACKEND'])")
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=PROJECT_DIR,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["filesystem://", "django.core.cache.backends.locmem.LocMemCache"]


# -- which output is echoed ----------------------------------------------------------------

@pytest.mark.parametrize("line", [
    "[2024-05-01 12:00:00 +0000] [42] [ERROR] Exception in worker process",
    "[2024-05-01 12:00:00,123: ERROR/MainProcess] Task monitor.poll_cluster raised",
    "2024-05-01 12:00:00,123 WARNING monitor.lag.poll trace_id=- cluster demo unreachable",
    "[2024-05-01 12:00:00,123: CRITICAL/MainProcess] Unrecoverable error",
])
def test_problems_are_echoed(line):
    assert orch.is_important(line)


@pytest.mark.parametrize("line", [
    "[2024-05-01 12:00:00 +0000] [42] [INFO] Booting worker with pid: 43",
    "[2024-05-01 12:00:00,123: INFO/MainProcess] Task monitor.schedule_polls succeeded in 0.01s: 0",
    "SecurityWarning: You're running the worker with superuser privileges",
    "Traceback (most recent call last):",
    "    self.error: Exception | None = None",
    '127.0.0.1 - - [01/May/2024:12:00:00 +0000] "POST /api/v1/events HTTP/1.1" 202 33',
    "[2024-05-01 12:00:00,123: WARNING/MainProcess] Task <kafka.net.selector.Task object at 0x7f> ran for "
    "0.131s (>0.100s threshold). It is blocking the event loop -- likely a tight sync loop inside a coroutine.",
    "[2024-05-01 12:00:00,123: WARNING/MainProcess] No hostname was supplied. Reverting to default 'localhost'",
])
def test_routine_lines_stay_in_the_log_file(line):
    assert not orch.is_important(line)


def test_the_simulators_own_messages_are_echoed():
    assert orch.is_important_simulator_line(
        "2024-05-01 12:00:00,123 INFO monitor.demo.simulator 30 s: 120 published, 300 consumed"
    )
    assert not orch.is_important_simulator_line("2024-05-01 12:00:00,123 INFO monitor.client sent")


def test_paths_inside_the_project_are_shown_relative(tmp_path):
    assert orch.display_path(PROJECT_DIR / "var" / "log", PROJECT_DIR) == os.path.join("var", "log")
    assert orch.display_path(tmp_path, PROJECT_DIR) == str(tmp_path.resolve())


def test_children_are_wrapped_to_die_with_the_demo_when_setpriv_exists():
    assert orch.die_with_parent(["celery", "worker"], "/usr/bin/setpriv") == [
        "/usr/bin/setpriv", "--pdeathsig", "TERM", "--", "celery", "worker",
    ]
    assert orch.die_with_parent(["celery", "worker"], None) == ["celery", "worker"]


# -- supervision of real processes ---------------------------------------------------------

def python_child(name: str, code: str, **kwargs) -> orch.ChildSpec:
    return orch.ChildSpec(name, [sys.executable, "-u", "-c", textwrap.dedent(code)], env=dict(os.environ), **kwargs)


def test_child_output_goes_to_its_log_file_and_important_lines_to_the_terminal(tmp_path):
    out = io.StringIO()
    supervisor = orch.Supervisor(tmp_path / "log", orch.Console(out))
    child = supervisor.start(python_child("talker", """
        import time
        print("INFO all good")
        print("ERROR the disk is on fire")
        print("ready.")
        time.sleep(30)
    """))
    try:
        child.wait_for_output(r"^ready\.$", timeout_seconds=20)
        log_text = (tmp_path / "log" / "talker.log").read_text()
        assert "INFO all good" in log_text and "ERROR the disk is on fire" in log_text
        assert out.getvalue() == "  talker| ERROR the disk is on fire\n"
    finally:
        supervisor.stop_all()
    assert not child.alive()


def test_waiting_for_output_fails_with_the_log_path_when_the_child_exits(tmp_path):
    supervisor = orch.Supervisor(tmp_path / "log", orch.Console(io.StringIO()))
    child = supervisor.start(python_child("crasher", "raise SystemExit(3)"))
    with pytest.raises(orch.StepFailed, match=r"crasher exited .*crasher\.log"):
        child.wait_for_output("never printed", timeout_seconds=20)
    assert wait_until(lambda: supervisor.first_exited() is child)
    supervisor.stop_all()


def test_stopping_a_child_also_stops_its_own_children(tmp_path):
    supervisor = orch.Supervisor(tmp_path / "log", orch.Console(io.StringIO()))
    child = supervisor.start(python_child("parent", """
        import subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print("grandchild", grandchild.pid, flush=True)
        time.sleep(60)
    """))
    child.wait_for_output(r"^grandchild \d+$", timeout_seconds=20)
    grandchild_pid = int(next(line for line in child.recent if line.startswith("grandchild")).split()[1])
    assert process_exists(grandchild_pid)
    reported = []
    supervisor.stop_all(report=lambda name, seconds, code: reported.append(name))
    assert reported == ["parent"]
    assert not child.alive()
    assert wait_until(lambda: not process_exists(grandchild_pid))


def test_a_child_that_ignores_sigterm_is_killed_after_its_timeout(tmp_path):
    supervisor = orch.Supervisor(tmp_path / "log", orch.Console(io.StringIO()))
    child = supervisor.start(python_child("stubborn", """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        time.sleep(60)
    """, stop_timeout_seconds=0.5))
    child.wait_for_output("ignoring SIGTERM", timeout_seconds=20)
    seconds = supervisor.stop(child)
    assert child.process.returncode == -signal.SIGKILL
    assert 0.4 < seconds < 30  # killed after its 0.5 s stop timeout, not after its 60 s sleep


def test_children_do_not_outlive_a_demo_that_is_killed(tmp_path):
    """Even SIGKILL of the demo (no chance to clean up) leaves no orphan behind."""
    demo = subprocess.Popen([sys.executable, "-u", "-c", textwrap.dedent(f"""
        import io, os, sys, time
        from pathlib import Path
        from monitor.demo import orchestrator as orch
        supervisor = orch.Supervisor(Path({str(tmp_path)!r}), orch.Console(io.StringIO()))
        child = supervisor.start(orch.ChildSpec(
            "sleeper", [sys.executable, "-u", "-c", "import time; print('up', flush=True); time.sleep(60)"],
            env=dict(os.environ)))
        child.wait_for_output("up", 20)
        print(child.process.pid, flush=True)
        time.sleep(60)
    """)], cwd=PROJECT_DIR, stdout=subprocess.PIPE, text=True)
    try:
        sleeper_pid = int(demo.stdout.readline())
        assert process_exists(sleeper_pid)
        demo.kill()
        demo.wait(timeout=60)
        assert wait_until(lambda: not process_exists(sleeper_pid))
    finally:
        demo.kill()
        demo.stdout.close()


def test_tail_returns_the_last_lines(tmp_path):
    path = tmp_path / "x.log"
    path.write_text("".join(f"line {n}\n" for n in range(50)))
    assert orch.tail(path, 3) == ["line 47", "line 48", "line 49"]
    assert orch.tail(tmp_path / "missing.log") == []


# -- signals -------------------------------------------------------------------------------

def test_ctrl_c_during_start_up_interrupts_the_step_and_is_remembered():
    stop = orch.StopRequest()
    stop.install()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        assert stop.event.is_set() and stop.signal_name == "SIGINT"
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal while stopping changes nothing
    finally:
        stop.restore()


def test_a_signal_once_running_only_asks_the_main_loop_to_stop():
    stop = orch.StopRequest()
    stop.install()
    stop.interrupt_steps = False
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.event.wait(5)
        assert stop.signal_name == "SIGTERM"
    finally:
        stop.restore()


# -- database set-up ---------------------------------------------------------------------

def test_the_admin_is_created_with_a_generated_password_shown_once(db, django_user_model):
    outcome = orch.ensure_admin_user("admin", None)
    assert outcome.created and outcome.password and len(outcome.password) >= 12
    user = django_user_model.objects.get(username="admin")
    assert user.is_superuser and user.is_staff and user.check_password(outcome.password)


def test_an_existing_admin_keeps_its_password(db, django_user_model):
    django_user_model.objects.create_superuser("admin", "", "kept password 123")
    outcome = orch.ensure_admin_user("admin", None)
    assert not outcome.created and outcome.password is None
    assert outcome.describe() == "exists; password kept"
    assert django_user_model.objects.get(username="admin").check_password("kept password 123")


def test_demo_password_resets_an_existing_admin(db, django_user_model):
    django_user_model.objects.create_user("admin", "", "old password 123")
    outcome = orch.ensure_admin_user("admin", "new password 456")
    assert outcome.password_from_env
    user = django_user_model.objects.get(username="admin")
    assert user.check_password("new password 456") and user.is_superuser


def test_the_simulator_token_may_ingest_and_is_stored_only_as_a_hash(db):
    from monitor.models import ApiToken

    secret = orch.issue_ingest_token("demo-simulator")
    token = ApiToken.authenticate(secret)
    assert token is not None and token.has_scope("ingest") and not token.has_scope("read")
    assert secret not in token.token_hash
    assert orch.issue_ingest_token("demo-simulator") != secret  # rotated on every start
    assert ApiToken.authenticate(secret) is None


def test_a_migrated_database_has_no_pending_migrations(db):
    assert orch.pending_migrations() == 0


def test_forgetting_a_clusters_history_keeps_the_cluster_and_other_clusters(db):
    from django.utils import timezone

    from monitor.choices import ClusterStatus, GroupEventKind
    from monitor.lag import samples
    from monitor.models import Cluster, ConsumerGroup, GroupEvent, LagFrame, PollRun

    now = timezone.now()
    demo = Cluster.objects.create(name="demo", bootstrap_servers="127.0.0.1:9092", status=ClusterStatus.OK,
                                  last_poll_at=now, group_exclude="tmp-*")
    other = Cluster.objects.create(name="other", bootstrap_servers="127.0.0.1:9093")
    for cluster in (demo, other):
        group = ConsumerGroup.objects.create(cluster=cluster, name="payments", first_seen_at=now, last_seen_at=now)
        samples.store_poll(cluster.id, now,
                           partitions=[(group.id, "orders.events", 0, 5, 0, 6, 1, 0.0, "exact", "", None, False)],
                           log_offsets=[("orders.events", 0, 0, 6)])
        GroupEvent.objects.create(cluster=cluster, group=group, kind=GroupEventKind.GROUP_CREATED, at=now)
        PollRun.objects.create(cluster=cluster, started_at=now, duration_seconds=0.1)

    assert orch.forget_cluster_history(demo.pk) == 1

    demo.refresh_from_db()
    assert demo.status == ClusterStatus.UNKNOWN and demo.last_poll_at is None
    assert demo.group_exclude == "tmp-*"  # what was edited on the cluster stays
    assert not ConsumerGroup.objects.filter(cluster=demo).exists()
    assert not LagFrame.objects.filter(cluster=demo).exists()
    assert not PollRun.objects.filter(cluster=demo).exists()
    assert ConsumerGroup.objects.filter(cluster=other).count() == 1
    assert LagFrame.objects.filter(cluster=other).count() == 2
    assert GroupEvent.objects.filter(cluster=other).count() == 1


def test_the_subject_of_an_alert_email_is_echoed_but_not_the_rest_of_the_email():
    assert orch.is_important(
        "[2026-11-28 04:50:35,519: INFO/MainProcess] Subject: [kafka-monitor] shipping falls behind | demo / shipping | FIRING warning")
    assert not orch.is_important("[2026-11-28 04:50:35,519: INFO/MainProcess] Content-Type: multipart/alternative;")
