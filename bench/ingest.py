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

Then the soak (issue 10: >= 40,000 events/s sustained for 10 minutes): the same HTTP path,
``--clients`` processes posting batches of 1,000 events timestamped "now" (so they land in
today's daily partition of the events table), each body made from a pre-encoded template
by three byte replacements, for ``--soak-seconds``. Printed per ``--interval``: events/s,
p50 and p99 latency of a batch (one POST, as its client saw it) and each gunicorn worker's
resident memory; then the whole soak's rate and the bytes stored per event (the events
table's partitions with their indexes and TOAST, over the rows). The server runs as the
Dockerfile runs it (3 sync workers), with the per-token request limit lifted
(MONITOR_INGEST_RATE_PER_MINUTE=0): a deployment ingesting this much from one token lifts it
too, or gives each producer its own token.

A throwaway database is created on the PostgreSQL server of ``--database-url`` (or
BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/) and dropped afterwards.

    python bench/ingest.py [--batches 30] [--workers 3] [--soak-seconds 90 --interval 30]
                           [--clients 2] [--database-url postgres://...]
    python bench/ingest.py --soak-seconds 600 --interval 60     # the full soak
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
GOAL_SOAK_EVENTS_PER_SECOND = 40_000


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
        "MONITOR_INGEST_RATE_PER_MINUTE": "0",
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_pids(database_url: str) -> list[int]:
    """PostgreSQL server processes serving the bench database (the server is on this machine)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                            "AND pid <> pg_backend_pid()").fetchall()
    return [pid for (pid,) in rows]


class CpuMeter:
    """CPU time used by a set of processes that changes while it runs: the clients and
    workers, and the PostgreSQL backends of the bench database, which come and go (Django
    closes a connection after CONN_MAX_AGE). Sampled twice a second from a thread; a backend
    that exits between samples loses at most its last half second."""

    def __init__(self, fixed_pids: list[int], database_url: str) -> None:
        import threading

        self.database_url = database_url
        self.start_cpu = {pid: cpu_seconds(pid) for pid in [*fixed_pids, *backend_pids(database_url)]}
        self.last_cpu = dict(self.start_cpu)
        self.fixed = list(fixed_pids)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(0.5):
            self.sample()

    def sample(self) -> None:
        for pid in [*self.fixed, *backend_pids(self.database_url)]:
            self.start_cpu.setdefault(pid, 0.0)  # began during the run: all its time counts
            used = cpu_seconds(pid)
            if used:
                self.last_cpu[pid] = used

    def used(self) -> float:
        return sum(self.last_cpu.get(pid, 0.0) - start for pid, start in self.start_cpu.items())

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


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


def soak_template(client: int, run: str) -> bytes:
    """One batch body with placeholders: @B@ (batch number), @BATCHHEX@ (20 hex digits of
    it, inside the trace ids) and @TS@ (the batch's second, UTC)."""
    events = []
    for n in range(BATCH):
        consumed = n % 2 == 1
        events.append({
            "event_id": f"{run}-{client}-@B@-{n // 2}", "type": "OrderPlaced" if n % 3 else "PaymentAuthorised",
            "service": "billing" if consumed else "orders", "stage": "processed" if consumed else "published",
            "timestamp": f"@TS@.{n:03d}Z", "topic": "orders", "partition": n % 12, "offset": n,
            "key": f"order-{n % 500}", "consumer_group": "billing" if consumed else "", "schema_version": 2,
            "traceparent": f"00-{client + 1:04x}@BATCHHEX@{n // 10:08x}-{n + 1:016x}-01",
            "attributes": {"amount_cents": n * 7 % 10_000},
        })
    return json.dumps({"events": events}).encode()


def soak_body(template: bytes, batch: int) -> bytes:
    second = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(seconds=1)
    return (template.replace(b"@BATCHHEX@", b"%020x" % batch).replace(b"@B@", b"%d" % batch)
            .replace(b"@TS@", second.strftime("%Y-%m-%dT%H:%M:%S").encode()))


def soak_client(address: str, token: str, client: int, run: str, seconds: float,
                start: "multiprocessing.synchronize.Event", results: "multiprocessing.Queue") -> None:
    """Post batches until ``seconds`` have passed; report (end time, latency, accepted) of each."""
    host, port = address.split(":")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    template = soak_template(client, run)
    start.wait()
    began = time.time()
    samples: list[tuple[float, float, int]] = []
    try:
        post_until(host, port, headers, template, began, seconds, samples)
    except Exception as exc:  # noqa: BLE001 - the main process reports it
        results.put(f"client {client}: {exc}")
        raise
    results.put(samples)


def post_until(host: str, port: str, headers: dict, template: bytes, began: float, seconds: float,
               samples: list[tuple[float, float, int]]) -> None:
    import http.client

    batch = 0
    while time.time() - began < seconds:
        body = soak_body(template, batch)
        batch += 1
        clock = time.perf_counter()
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        connection.request("POST", "/api/v1/events", body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        latency = time.perf_counter() - clock
        if response.status != 202:
            raise RuntimeError(f"HTTP {response.status}: {payload[:300]!r}")
        samples.append((time.time(), latency, json.loads(payload)["accepted"]))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def soak(address: str, token: str, server_pid: int, clients: int, seconds: float, interval: float,
         database_url: str) -> dict:
    """The soak: per interval (events/s, p50, p99, worker RSS MiB), and the totals, with the
    CPU time the clients, the gunicorn workers and their PostgreSQL backends used."""
    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    run = uuid.uuid4().hex[:6]
    processes = [context.Process(target=soak_client, args=(address, token, client, run, seconds, start, results))
                 for client in range(clients)]
    for process in processes:
        process.start()
    time.sleep(0.5)
    meter = CpuMeter([process.pid for process in processes] + worker_pids(server_pid), database_url)
    postgres_before = postgres_background_cpu()
    began = time.time()
    start.set()
    memory: list[dict[int, int]] = []
    cpu_during, cpu_at = 0.0, began
    while time.time() - began < seconds:
        time.sleep(max(0.0, began + interval * (len(memory) + 1) - time.time()))
        memory.append({pid: memory_kib(pid)[0] for pid in worker_pids(server_pid)})
        if time.time() - began < seconds:  # before the clients exit and take their times along
            meter.sample()
            cpu_during, cpu_at = meter.used(), time.time()
    meter.stop()
    outcomes = [results.get(timeout=seconds + 600) for _ in processes]
    failures = [outcome for outcome in outcomes if isinstance(outcome, str)]
    if failures:
        raise RuntimeError("; ".join(failures))
    samples = [sample for outcome in outcomes for sample in outcome]
    for process in processes:
        process.join()
        if process.exitcode:
            raise RuntimeError(f"a soak client failed (exit {process.exitcode})")
    rows = []
    for number, rss in enumerate(memory):
        window = [s for s in samples if began + number * interval <= s[0] < began + (number + 1) * interval]
        latencies = [latency for _, latency, _ in window]
        rows.append({"events_per_second": sum(a for _, _, a in window) / interval,
                     "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
                     "rss_mib": [kib / 1024 for _, kib in sorted(rss.items())]})
    accepted = sum(a for _, _, a in samples)
    elapsed = max(end for end, _, _ in samples) - began
    cpu_window = [a for end, _, a in samples if end <= cpu_at]
    return {"rows": rows, "accepted": accepted, "seconds": elapsed, "batches": len(samples),
            "p99": percentile([latency for _, latency, _ in samples], 0.99),
            "cpu_per_event": cpu_during / max(1, sum(cpu_window)) if len(memory) > 1 else float("nan"),
            "postgres_background_cpu": postgres_background_cpu() - postgres_before}


def postgres_background_cpu() -> float:
    """CPU time of PostgreSQL's own processes (WAL writer, checkpointer, autovacuum, ...)."""
    total = 0.0
    for status in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = status.read_bytes()
        except OSError:
            continue
        if command.startswith(b"postgres: ") and any(
                word in command for word in (b"checkpointer", b"background writer", b"walwriter", b"autovacuum")):
            total += cpu_seconds(int(status.parent.name))
    return total


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
    parser.add_argument("--soak-seconds", type=float, default=90,
                        help="length of the soak (600: the full 10-minute soak); 0 skips it")
    parser.add_argument("--interval", type=float, default=30, help="seconds per printed row of the soak")
    parser.add_argument("--clients", type=int, default=0,
                        help="client processes of the soak (default: one per gunicorn worker)")
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
        soaked = None
        if options.soak_seconds > 0:
            truncate()
            connection.close()
            soaked = soak(address, token, server.pid, options.clients or options.workers, options.soak_seconds,
                          options.interval, database_url)
            soaked.update(storage(soaked["accepted"]))
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
    if soaked is not None:
        ok = print_soak(soaked, options) and ok
    return 0 if ok else 1


def storage(accepted: int) -> dict:
    """Rows stored and bytes per event: every partition of the events table with its indexes."""
    from django.db import connection

    from monitor import timepartitions

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitor_event")
        stored = cursor.fetchone()[0]
    if stored != accepted:
        raise RuntimeError(f"{accepted} accepted but {stored} stored")
    sizes = timepartitions.partition_sizes("monitor_event")
    return {"stored": stored, "bytes": sum(sizes.values()), "partitions": sizes}


def print_soak(soaked: dict, options: argparse.Namespace) -> bool:
    rate = soaked["accepted"] / soaked["seconds"]
    print(f"soak: {options.clients or options.workers} clients posting batches of {BATCH} for {options.soak_seconds:.0f} s, "
          f"{options.workers} gunicorn workers (POST /api/v1/events, JSON)")
    print(f"  {'interval':>9} {'events/s':>10} {'p50 batch':>10} {'p99 batch':>10}  worker RSS MiB")
    for number, row in enumerate(soaked["rows"]):
        end = (number + 1) * options.interval
        rss = " ".join(f"{mib:.0f}" for mib in row["rss_mib"])
        print(f"  {end:>7.0f} s {row['events_per_second']:>10,.0f} {row['p50'] * 1000:>8.0f} ms "
              f"{row['p99'] * 1000:>8.0f} ms  {rss}")
    per_event = soaked["bytes"] / max(1, soaked["stored"])
    print(f"  total: {soaked['accepted']:,} events in {soaked['seconds']:.0f} s = {rate:,.0f} events/s, "
          f"p99 batch {soaked['p99'] * 1000:.0f} ms")
    print(f"  stored: {soaked['stored']:,} rows, {soaked['bytes'] / 2**20:,.0f} MiB in "
          f"{len(soaked['partitions'])} partitions = {per_event:,.0f} bytes per event (table + indexes)")
    cores = os.cpu_count() or 1
    print(f"  CPU: {soaked['cpu_per_event'] * 1e6:.0f} us per event (clients + gunicorn workers + their "
          f"PostgreSQL backends; PostgreSQL's background processes used {soaked['postgres_background_cpu']:.0f} s "
          f"more); {cores} cores fully ours would take at most {cores / soaked['cpu_per_event']:,.0f} events/s")
    met = rate >= GOAL_SOAK_EVENTS_PER_SECOND
    print(f"  soak goal (>= {GOAL_SOAK_EVENTS_PER_SECOND:,} events/s sustained): {'met' if met else 'NOT met'}")
    return met


if __name__ == "__main__":
    sys.exit(main())
