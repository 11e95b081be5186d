"""The fault suite (``make faults``; marker ``faults``): the whole monitor as plain
processes (tests/fault_stack.py), then one fault at a time. For each: did it recover
without help, how many notifications were lost (must be 0), how many duplicates reached
the receiver (each must carry the same idempotency key) and how long polling paused.

Outages last a few seconds instead of the 60 s of issue 17: the intervals that decide
the behaviour (heartbeat, sweep, lease, timeouts) are shortened by the same settings an
operator would use, so the same thing happens, faster. A summary table is printed at the
end (run with ``-s``) and written to ``var/faults-report.md``.
"""
from __future__ import annotations

import http.cookiejar
import json
import re
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from monitor import client as event_client
from monitor.kafka.adapter import ConnectionSettings, Producer, commit_offsets, create_topics
from tests.alert_services import Reply, WebhookServer
from tests.fault_stack import REPO, Stack, wait_until

pytestmark = pytest.mark.faults
CLUSTER = "faults"
PASSWORD = "fault-suite-admin-password"


@dataclass
class Result:
    fault: str
    recovered: bool
    lost: int
    duplicates: int
    same_key: bool
    polling_gap_seconds: float | None
    note: str = ""


RESULTS: list[Result] = []


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    log_dir = Path(tempfile.mkdtemp(prefix="monitor-faults-"))
    running = Stack(log_dir)
    try:
        config = log_dir / "cluster.yaml"
        config.write_text(json.dumps({"clusters": [
            {"name": CLUSTER, "bootstrap": [running.bootstrap], "poll_interval_seconds": 5}]}))
        running.manage("apply_config", str(config))
        running.env["DJANGO_SUPERUSER_PASSWORD"] = PASSWORD
        running.manage("createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com")
        yield running
    finally:
        running.close()
        if RESULTS:
            report = summary()
            print("\n" + report)
            (REPO / "var").mkdir(exist_ok=True)
            (REPO / "var" / "faults-report.md").write_text(report)


def summary() -> str:
    lines = ["| fault | recovered without help | notifications lost | duplicates (same key) | polling gap |",
             "| --- | --- | --- | --- | --- |"]
    for r in RESULTS:
        gap = f"{r.polling_gap_seconds:.1f} s" if r.polling_gap_seconds is not None else "n/a"
        dup = f"{r.duplicates} ({'same key' if r.same_key else 'DIFFERENT KEYS'})"
        lines.append(f"| {r.fault} | {'yes' if r.recovered else 'no'} | {r.lost} | {dup} | {gap}"
                     + (f" ({r.note})" if r.note else "") + " |")
    return "\n".join(lines) + "\n"


@pytest.fixture
def receiver() -> Iterator[WebhookServer]:
    server = WebhookServer()
    yield server
    server.stop()


def kafka(stack: Stack) -> ConnectionSettings:
    return ConnectionSettings([stack.bootstrap], timeout_seconds=5)


def incident(stack: Stack, receiver: WebhookServer, name: str) -> None:
    """A group with lag on the stack's broker and a rule ``lag > 0`` notifying ``receiver``."""
    settings = kafka(stack)
    create_topics(settings, {name: 1})
    producer = Producer(settings)
    for _ in range(5):
        producer.send(name, b"event", partition=0)
    producer.close()
    commit_offsets(settings, f"{name}-group", {(name, 0): 1})
    config = stack.log_dir / f"{name}.yaml"
    config.write_text(json.dumps({
        "channels": [{"name": f"{name}-hook", "kind": "webhook", "webhook_url": receiver.url(f"/{name}")}],
        "rules": [{"name": f"{name} lags", "cluster": CLUSTER, "group": f"{name}-group", "topic": "*",
                   "metric": "lag", "op": ">", "threshold": 0, "for_seconds": 0, "channels": [f"{name}-hook"]}],
    }))
    stack.manage("apply_config", str(config))


def notifications(stack: Stack, name: str) -> list[tuple]:
    """(id, idempotency_key, sent_at, failed_at) of the channel's notifications."""
    return stack.sql(
        "SELECT n.id, n.idempotency_key::text, n.sent_at, n.failed_at FROM monitor_notification n "
        "JOIN monitor_channel c ON c.id = n.channel_id WHERE c.name = %s ORDER BY n.id", f"{name}-hook")


def delivered(stack: Stack, name: str) -> list[tuple] | None:
    rows = notifications(stack, name)
    return rows if rows and all(row[2] is not None for row in rows) else None


def outcome(stack: Stack, receiver: WebhookServer, name: str, fault: str, gap: float | None,
            note: str = "", accepted: int | None = None) -> Result:
    """``accepted``: how many POSTs the receiver took (2xx), when not all of them."""
    rows = notifications(stack, name)
    keys = [r.headers.get("Idempotency-Key") for r in receiver.arrived]
    expected = {row[1] for row in rows}
    taken = len(keys) if accepted is None else accepted
    result = Result(fault=fault, recovered=bool(rows) and all(row[2] for row in rows),
                    lost=len(expected - set(keys)) + sum(1 for row in rows if row[2] is None),
                    duplicates=taken - len(set(keys)), same_key=set(keys) <= expected,
                    polling_gap_seconds=gap, note=note)
    RESULTS.append(result)
    return result


def poll_times(stack: Stack, ok_only: bool = True) -> list[datetime]:
    return [row[0] for row in stack.sql(
        "SELECT r.started_at FROM monitor_pollrun r JOIN monitor_cluster c ON c.id = r.cluster_id "
        "WHERE c.name = %s" + (" AND r.ok" if ok_only else "") + " ORDER BY r.started_at", CLUSTER)]


def polls_after(stack: Stack, moment: datetime) -> bool:
    return any(at > moment for at in poll_times(stack))


def polling_gap(stack: Stack, since: datetime) -> float:
    """The longest pause between successful polls from ``since`` on."""
    times = [at for at in poll_times(stack) if at >= since]
    before = [at for at in poll_times(stack) if at < since][-1:]
    times = before + times
    return max(((b - a).total_seconds() for a, b in zip(times, times[1:])), default=0.0)


def now_in_db(stack: Stack) -> datetime:
    return stack.sql("SELECT now()")[0][0]


def readyz(stack: Stack) -> tuple[int, dict]:
    status, _, body = stack.get("/readyz")
    return status, json.loads(body)


def logged_in_opener(stack: Stack) -> urllib.request.OpenerDirector:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = f"http://127.0.0.1:{stack.web_port}"
    opener.open(f"{base}/login/", timeout=30).read()
    token = next(c.value for c in jar if c.name == "csrftoken")
    data = urllib.parse.urlencode({"username": "admin", "password": PASSWORD, "csrfmiddlewaretoken": token}).encode()
    opener.open(urllib.request.Request(f"{base}/login/", data=data, headers={"Referer": f"{base}/login/"}),
                timeout=30).read()
    return opener


def page(opener: urllib.request.OpenerDirector, stack: Stack, path: str = "/") -> tuple[int, str]:
    try:
        with opener.open(f"http://127.0.0.1:{stack.web_port}{path}", timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_the_stack_polls_evaluates_and_reports_ready(stack):
    wait_until(lambda: readyz(stack)[0] == 200 and poll_times(stack), 90, "the first poll and /readyz 200")
    status, body = readyz(stack)
    assert body["status"] == "ok"
    _, _, metrics = stack.get("/metrics")
    assert b"kafka_monitor_scheduler_last_tick_timestamp_seconds " in metrics
    assert f'kafka_monitor_last_poll_timestamp_seconds{{cluster="{CLUSTER}"}}'.encode() in metrics


def test_worker_killed_mid_send(stack, receiver):
    release = threading.Event()
    receiver.script(Reply(200, "ok", hold=release), Reply(200, "ok"))
    incident(stack, receiver, "killed")
    wait_until(lambda: receiver.arrived, 90, "the first POST", every=0.02)
    stack.worker.kill()  # within the 4 s send timeout: the worker dies mid-send
    killed_at = now_in_db(stack)
    release.set()  # the receiver has the message; the worker never learns it
    stack.worker.start()
    [(notification_id, key, sent_at, _)] = wait_until(lambda: delivered(stack, "killed"), 90, "the redelivery")
    attempts = stack.sql("SELECT finished_at, error, ok FROM monitor_deliveryattempt WHERE notification_id = %s "
                         "ORDER BY at", notification_id)
    assert attempts[0][0] is None and attempts[0][1].startswith("interrupted") and attempts[-1][2]
    result = outcome(stack, receiver, "killed", "worker SIGKILL mid-send", polling_gap(stack, killed_at),
                     note=f"resent {(sent_at - killed_at).total_seconds():.0f} s later (lease 12 s)")
    assert result.lost == 0 and result.same_key and result.duplicates == 1
    assert [r.headers["Idempotency-Key"] for r in receiver.arrived] == [key, key]


def test_receiver_answering_500_for_a_while(stack, receiver):
    receiver.script(*[Reply(500, "down")] * 5, Reply(200, "ok"))
    incident(stack, receiver, "errors")
    wait_until(lambda: delivered(stack, "errors"), 120, "delivery once the receiver answers 200 again")
    result = outcome(stack, receiver, "errors", "receiver answers 500 (5 times)", None, accepted=1,
                     note=f"{len(receiver.arrived)} POSTs, back-off 1, 2, 4, 8, 16 s")
    assert result.lost == 0 and result.same_key and result.duplicates == 0
    assert len(receiver.arrived) == 6


def test_receiver_hanging_past_the_timeout(stack, receiver):
    receiver.script(Reply(200, "ok", delay_seconds=7), Reply(200, "ok"))  # the send timeout is 4 s
    incident(stack, receiver, "hangs")
    wait_until(lambda: delivered(stack, "hangs"), 120, "delivery after the timeout")
    wait_until(lambda: len(receiver.received) >= 2, 30, "the hung request to finish")
    result = outcome(stack, receiver, "hangs", "receiver hangs 7 s (timeout 4 s)", None,
                     note="the receiver processed the timed-out POST too")
    assert result.lost == 0 and result.same_key and result.duplicates == 1


def test_redis_down(stack, receiver):
    stopped_at = now_in_db(stack)
    stack.redis.stop()
    incident(stack, receiver, "redisdown")  # fires while the broker is away
    wait_until(lambda: readyz(stack)[0] == 503, 30, "/readyz 503 while Redis is down")
    assert "redis" in readyz(stack)[1]["failing"]
    time.sleep(5)  # the outage (shortened from 60 s)
    stack.redis.start()
    back = now_in_db(stack)
    wait_until(lambda: polls_after(stack, back), 90, "polls after Redis is back")
    wait_until(lambda: delivered(stack, "redisdown"), 90, "the notification after Redis is back")
    wait_until(lambda: readyz(stack)[0] == 200, 60, "/readyz 200")
    restarts = stack.worker.restarts + stack.beat.restarts
    result = outcome(stack, receiver, "redisdown", "Redis (broker and cache) down 5 s", polling_gap(stack, stopped_at),
                     note=f"{restarts} process restart(s) by the supervisor" if restarts else "")
    assert result.recovered and result.lost == 0 and result.duplicates == 0


def test_kafka_broker_down(stack):
    stopped_at = now_in_db(stack)
    stack.stop_kafka()
    wait_until(lambda: stack.sql("SELECT status FROM monitor_cluster WHERE name = %s", CLUSTER)[0][0]
               == "unreachable", 60, "the cluster marked unreachable")
    stack.start_kafka()
    back = now_in_db(stack)
    wait_until(lambda: polls_after(stack, back), 90, "a successful poll after the broker is back")
    RESULTS.append(Result("Kafka broker down (until marked unreachable)", True, 0, 0, True,
                          polling_gap(stack, stopped_at), note="gap = no successful poll"))


def test_database_down(stack):
    token = re.search(r"kmon_\S+", stack.manage("issue_token", f"faults-{time.time_ns()}", "--scopes",
                                                 "ingest,read")).group(0)
    opener = logged_in_opener(stack)
    assert page(opener, stack)[0] == 200
    reporter = event_client.EventReporter(f"http://127.0.0.1:{stack.web_port}", token, "orders",
                                          flush_interval=0.2, backoff_base=0.2, backoff_max=1.0, max_retries=2)
    stopped_at = now_in_db(stack)
    stack.postgres.stop()
    try:
        status, body = readyz(stack)
        assert status == 503 and "database" in body["failing"]
        events = json.dumps({"events": [{"event_id": "direct-1", "type": "OrderPlaced", "service": "orders",
                                         "stage": "published", "timestamp": "2026-01-01T00:00:00Z"}]}).encode()
        status, headers, _ = stack.request("POST", "/api/v1/events", events, {
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        assert status == 503 and int(headers["Retry-After"]) > 0
        status, text = page(opener, stack)
        assert status in (200, 503) and "the database is unreachable" in text.lower()
        for i in range(50):
            reporter.published(f"outage-{i}", "OrderPlaced")
        assert not reporter.flush(timeout=3)  # kept queued, not dropped
        assert reporter.stats["dropped"] == 0
    finally:
        stack.postgres.start()
    back = now_in_db(stack)
    assert reporter.close(timeout=60)
    assert (reporter.stats["sent"], reporter.stats["dropped"]) == (50, 0)
    assert stack.sql("SELECT count(*) FROM monitor_event WHERE event_id LIKE 'outage-%%'")[0][0] == 50
    assert stack.sql("SELECT count(*) FROM monitor_event WHERE event_id = 'direct-1'")[0][0] == 0  # nothing half-written
    wait_until(lambda: readyz(stack)[0] == 200, 60, "/readyz 200 after the database is back")
    assert page(opener, stack)[0] == 200
    wait_until(lambda: polls_after(stack, back), 90, "polls after the database is back")
    RESULTS.append(Result("PostgreSQL down (own cluster)", True, 0, 0, True, polling_gap(stack, stopped_at),
                          note="ingest 503 + Retry-After; client kept 50 reports, all stored once"))


def test_beat_down(stack):
    opener = logged_in_opener(stack)
    stopped_at = now_in_db(stack)
    stack.beat.kill()
    status, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(readyz(stack)), 30,
                              "/readyz 503 naming the scheduler")
    assert body["failing"] == ["scheduler"]
    assert "The scheduler (Celery beat) has not ticked" in page(opener, stack)[1]
    stack.beat.start()
    back = now_in_db(stack)
    wait_until(lambda: readyz(stack)[0] == 200, 60, "/readyz 200 once beat is back")
    wait_until(lambda: polls_after(stack, back), 90, "polls once beat is back")
    RESULTS.append(Result("beat killed (noticed: /readyz 503 'scheduler', banner)", True, 0, 0, True,
                          polling_gap(stack, stopped_at)))


def test_two_beats(stack):
    second = stack.celery("beat2", "beat", "--loglevel=INFO", "--schedule", str(stack.log_dir / "beat2-schedule"))
    second.start()
    try:
        wait_until(lambda: "this one sends nothing" in second.output(), 60, "the second beat to stand by")
        ticks = stack.sql("SELECT at FROM monitor_heartbeat WHERE component = 'scheduler'")[0][0]
        wait_until(lambda: stack.sql("SELECT at FROM monitor_heartbeat WHERE component = 'scheduler'")[0][0]
                   > ticks, 30, "the first beat to tick again")
        assert "Sending due task" not in second.output()
        stopped_at = now_in_db(stack)
        stack.beat.kill()
        wait_until(lambda: "this beat holds the scheduler lock" in second.output(), 60, "the standby to take over")
        wait_until(lambda: "Sending due task" in second.output(), 30, "the standby to send tasks")
        back = now_in_db(stack)
        wait_until(lambda: polls_after(stack, back), 90, "polls by the second beat")
        RESULTS.append(Result("two beats, then the active one killed", True, 0, 0, True,
                              polling_gap(stack, stopped_at), note="standby sent nothing, took over"))
    finally:
        stack.beat.stop()
        stack.beat, second = second, stack.beat


def test_the_duplicate_window_is_one_send(stack):
    """A duplicate needs a worker to die after the request left and before the outcome
    committed: the window is an attempt's span from its committed start to its committed
    outcome, measured over every successful attempt of this run."""
    spans = sorted(row[0] for row in stack.sql(
        "SELECT EXTRACT(EPOCH FROM finished_at - at)::float FROM monitor_deliveryattempt WHERE ok"))
    assert spans
    median, worst = spans[len(spans) // 2], spans[-1]
    RESULTS.append(Result(f"duplicate window over {len(spans)} deliveries", True, 0, 0, True, None,
                          note=f"median {median * 1000:.0f} ms, max {worst * 1000:.0f} ms from attempt start to "
                               "recorded outcome (lease 12 s here, 60 s by default)"))
    assert worst < float(stack.env["MONITOR_DELIVERY_LEASE_SECONDS"])
