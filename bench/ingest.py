"""Benchmark: events per second through POST /api/v1/events into PostgreSQL, next to the
same rows written by PostgreSQL COPY, measured in the same run.

- HTTP: a real server (gunicorn, ``--workers`` sync workers) on a free port; two client
  processes each post batches of 1,000 events (pre-encoded JSON, a token with the
  ``ingest`` scope) as fast as they are answered.
- COPY: the same normalised rows, two processes, one ``COPY`` of 1,000 rows per
  transaction, into the same table with the same indexes.
- Memory per request: the peak resident memory of each server worker after the run,
  and its growth over the run (a request holds at most one body of at most
  ``MONITOR_INGEST_MAX_BYTES``).

Goals: at least 20,000 events/s over HTTP and within 3x of COPY.

A throwaway database is created on the PostgreSQL server of ``--database-url`` (or
BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/) and dropped afterwards.

    python bench/ingest.py [--batches 30] [--workers 3] [--database-url postgres://...]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import scratch_db  # noqa: E402  (beside this file)

BATCH = 1000
CLIENTS = 2
GOAL_EVENTS_PER_SECOND = 20_000
GOAL_RATIO = 3.0


# -- set-up ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]




def server_env(database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "monitor.settings", "DEBUG": "false",
        "SECRET_KEY": "bench-only-secret-key-0123456789-0123456789-0123456789", "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false", "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT),
    })
    env.pop("REDIS_URL", None)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    return env


def setup_django(database_url: str) -> None:
    for key, value in server_env(database_url).items():
        os.environ[key] = value
    import django

    django.setup()


def start_server(database_url: str, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "monitor.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--worker-class", "sync", "--timeout", "120", "--log-level", "warning"],
        cwd=ROOT, env=server_env(database_url), start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, f"127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("gunicorn did not start")


def worker_pids(master_pid: int) -> list[int]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def memory_kib(pid: int) -> tuple[int, int]:
    """(current, peak) resident memory of a process, KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


# -- the load -------------------------------------------------------------------------

def make_events(client: int, batch: int, run: str) -> list[dict]:
    """Realistic reports: a publication and a consumption per event id, with a trace."""
    base = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    events = []
    for n in range(BATCH):
        i = batch * BATCH + n
        consumed = n % 2 == 1
        trace = f"{(client << 100) + i // 10 + 1:032x}"
        events.append({
            "event_id": f"{run}-{client}-{i // 2}", "type": "OrderPlaced" if i % 3 else "PaymentAuthorised",
            "service": "billing" if consumed else "orders", "stage": "processed" if consumed else "published",
            "timestamp": (base + dt.timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"),
            "topic": "orders", "partition": i % 12, "offset": i, "key": f"order-{i % 5000}",
            "consumer_group": "billing" if consumed else "", "schema_version": 2,
            "traceparent": f"00-{trace}-{i + 1:016x}-01", "attributes": {"amount_cents": i % 10_000},
        })
    return events


def post_batches(address: str, token: str, bodies: list[bytes], start: "multiprocessing.synchronize.Event",
                 results: "multiprocessing.Queue") -> None:
    import http.client

    host, port = address.split(":")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    start.wait()
    accepted = 0
    clock = time.perf_counter()
    for body in bodies:
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        connection.request("POST", "/api/v1/events", body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        if response.status != 202:
            raise RuntimeError(f"HTTP {response.status}: {payload[:300]!r}")
        accepted += json.loads(payload)["accepted"]
    results.put((accepted, clock, time.perf_counter()))


def copy_batches(database_url: str, batches: list[list[tuple]], start: "multiprocessing.synchronize.Event",
                 results: "multiprocessing.Queue") -> None:
    import psycopg

    columns = ("event_id", "type", "service", "stage", "timestamp", "topic", "partition", "offset", "key",
               "consumer_group", "schema_version", "trace_id", "span_id", "parent_span_id", "attributes",
               "report_hash", "received_at")
    statement = f"COPY monitor_event ({', '.join(chr(34) + c + chr(34) for c in columns)}) FROM STDIN"
    with psycopg.connect(database_url) as conn:
        start.wait()
        clock = time.perf_counter()
        rows = 0
        for batch in batches:
            with conn.cursor() as cursor, cursor.copy(statement) as copy:
                for row in batch:
                    copy.write_row(row)
            conn.commit()
            rows += len(batch)
    results.put((rows, clock, time.perf_counter()))


def run_parallel(target, args_per_process: list[tuple]) -> tuple[int, float]:
    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    processes = [context.Process(target=target, args=(*args, start, results)) for args in args_per_process]
    for process in processes:
        process.start()
    time.sleep(0.5)
    start.set()
    outcomes = [results.get(timeout=900) for _ in processes]
    for process in processes:
        process.join()
        if process.exitcode:
            raise RuntimeError(f"a load process failed (exit {process.exitcode})")
    total = sum(count for count, _, _ in outcomes)
    seconds = max(end for _, _, end in outcomes) - min(begin for _, begin, _ in outcomes)
    return total, seconds


def truncate() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE monitor_event")
        cursor.execute("VACUUM ANALYZE monitor_event")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=30, help="batches of 1,000 events per client")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL",
                                                                 "postgres://postgres@127.0.0.1:5432/"))
    options = parser.parse_args()

    database_url = scratch_db.create_database(options.database_url, "bench_ingest")
    server = None
    try:
        setup_django(database_url)
        from django.core.management import call_command
        from django.db import connection
        from django.utils import timezone

        from monitor.events.config import IngestLimits
        from monitor.events.ingest import validate_payload
        from monitor.models import ApiToken, Event

        call_command("migrate", verbosity=0)
        _, token = ApiToken.issue("bench", ["ingest"])
        run = uuid.uuid4().hex[:6]
        payloads = [[make_events(client, batch, run) for batch in range(options.batches + 1)]
                    for client in range(CLIENTS)]
        bodies = [[json.dumps({"events": events}).encode() for events in per_client] for per_client in payloads]
        body_kib = len(bodies[0][0]) / 1024
        connection.close()

        server, address = start_server(database_url, options.workers)
        # Warm-up: one batch per client (imports, connections, caches), then start clean.
        run_parallel(post_batches, [(address, token, per_client[:1]) for per_client in bodies])
        memory_before = {pid: memory_kib(pid) for pid in worker_pids(server.pid)}
        truncate()
        http_events, http_seconds = run_parallel(post_batches, [(address, token, per_client[1:])
                                                                for per_client in bodies])
        memory_after = {pid: memory_kib(pid) for pid in worker_pids(server.pid)}
        stored = Event.objects.count()
        if stored != http_events:
            raise RuntimeError(f"{http_events} accepted but {stored} stored")

        now = timezone.now()
        limits = IngestLimits.from_settings()
        copy_rows = [
            [tuple(row) + (now,) for row in validate_payload({"events": events}, now, limits)]
            for per_client in payloads for events in per_client[1:]
        ]
        truncate()
        connection.close()
        half = len(copy_rows) // CLIENTS
        copied, copy_seconds = run_parallel(
            copy_batches, [(database_url, copy_rows[i * half:(i + 1) * half]) for i in range(CLIENTS)])
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        from django.db import connections

        connections.close_all()
        scratch_db.drop_database(database_url)

    http_rate = http_events / http_seconds
    copy_rate = copied / copy_seconds
    ratio = copy_rate / http_rate
    print(f"ingest benchmark: {CLIENTS} clients x {options.batches} batches x {BATCH} events "
          f"({body_kib:.0f} KiB JSON per batch), {options.workers} gunicorn workers, PostgreSQL")
    print(f"  HTTP API -> PostgreSQL : {http_events:>7} events in {http_seconds:6.2f} s = {http_rate:>9,.0f} events/s")
    print(f"  PostgreSQL COPY        : {copied:>7} rows   in {copy_seconds:6.2f} s = {copy_rate:>9,.0f} rows/s")
    print(f"  COPY / HTTP            : {ratio:.2f}x (goal: within {GOAL_RATIO:.0f}x)")
    for pid, (rss_before, _) in sorted(memory_before.items()):
        rss_after, peak = memory_after.get(pid, (0, 0))
        print(f"  worker {pid}: RSS {rss_before / 1024:.0f} -> {rss_after / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB")
    ok = http_rate >= GOAL_EVENTS_PER_SECOND and ratio <= GOAL_RATIO
    print(f"  goals (>= {GOAL_EVENTS_PER_SECOND:,} events/s, within {GOAL_RATIO:.0f}x of COPY): "
          f"{'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
