"""Benchmark: the flow area's read side (flow API and page, service page, event-topic page,
trace search) cold and warm, next to a plain ``COUNT(*)`` of the same range measured in
the same run.

A scratch database is filled with realistic reports of order sagas (five services,
published -> consumed -> processed on four topics, some failures retried or
dead-lettered, one trace per order) in one of two layouts:

- ``hour``: every report in the last hour (the demo's rate, ~20 reports/s, for an hour
  and a half);
- ``week``: the same number spread over the last seven days.

For each layout and each range (1h, 24h, 7d) it prints the seconds of every page with
an empty cache (cold: what the first visitor, or the warm-up task, pays) and again
(warm), the number of SQL queries of the cold request, and the cold time as a multiple
of ``COUNT(*)`` over the range. Goals, cold, on SQLite with 100,000 reports: every page
under 1 s for 1h and under 2 s for 7d.

    python bench/flow.py [--events 100000] [--layout hour|week|both]
                         [--database-url sqlite:///PATH | postgres://USER@HOST:PORT/]

Default: a SQLite file in a temporary directory, deleted afterwards (``--keep`` keeps it
and prints its path). For a PostgreSQL server URL without a database name a throwaway
database is created on it and dropped afterwards (unless ``--keep``). A SQLite file or a
named PostgreSQL database given with ``--database-url`` that already holds reports is
measured as it is (with ``--layout both`` a SQLite file name gets ``-hour``/``-week``).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import scratch_db  # noqa: E402  (beside this file)

RANGES = ("1h", "24h", "7d")
LAYOUT_SPANS = {"hour": timedelta(hours=1), "week": timedelta(days=7)}
GOAL_SECONDS = {"1h": 1.0, "24h": 2.0, "7d": 2.0}
REPORTS_PER_SAGA = 16  # about: see make_saga
SEED = 20240501


# -- set-up ---------------------------------------------------------------------------



def setup_django(database_url: str) -> None:
    os.environ.update({
        "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "monitor.settings", "DEBUG": "false",
        "SECRET_KEY": "bench-only-secret-key-0123456789-0123456789-0123456789", "ALLOWED_HOSTS": "testserver",
        "SECURE_SSL_REDIRECT": "false", "LOG_LEVEL": "WARNING",
    })
    # A process-local cache: "cold" is an empty cache, and no shared Redis is touched.
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        os.environ.pop(name, None)
    import django

    django.setup()


def switch_database(database_url: str) -> None:
    """Point the configured connection at another database (the second layout)."""
    import dj_database_url
    from django.conf import settings
    from django.db import connections

    connections.close_all()
    parsed = dj_database_url.parse(database_url)
    settings.DATABASES["default"].update(parsed)
    for name in list(connections):  # drop the cached wrapper so the new settings are read
        del connections[name]
    connections.settings = connections.configure_settings(settings.DATABASES)


# -- the data -------------------------------------------------------------------------

class SagaWriter:
    """Order sagas as event reports: orders -> payments -> inventory -> shipping -> orders,
    analytics reading two topics; payments dead-letters some orders, shipping retries some."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.offsets: dict[tuple[str, int], int] = {}

    def latency(self) -> float:
        # Mostly tens of milliseconds, a long tail, and now and then a consumer far behind.
        if self.rng.random() < 0.01:
            return self.rng.uniform(30, 600)
        return self.rng.lognormvariate(-3.0, 1.0)

    def make_saga(self, number: int, start: datetime) -> list:
        from monitor.models import Event

        rng = self.rng
        trace_id = uuid.UUID(int=rng.getrandbits(128)).hex
        key = f"order-{number % 20_000}"
        reports: list[Event] = []

        def report(event_id: str, type_: str, service: str, stage: str, at: datetime, topic: str,
                   group: str = "", span_id: str = "", parent: str = "", partition: int | None = None,
                   offset: int | None = None, attributes: dict | None = None) -> None:
            reports.append(Event(
                event_id=event_id, type=type_, service=service, stage=stage, timestamp=at,
                received_at=at + timedelta(milliseconds=rng.randint(5, 900)), topic=topic, partition=partition,
                offset=offset, key=key, consumer_group=group, schema_version=1 if number % 7 else 2,
                trace_id=trace_id, span_id=span_id, parent_span_id=parent, attributes=attributes,
                report_hash=uuid.UUID(int=rng.getrandbits(128)),
            ))

        def publish(service: str, topic: str, type_: str, at: datetime, parent: str = "") -> tuple[str, str, int, int]:
            event_id = uuid.UUID(int=rng.getrandbits(128)).hex
            span_id = f"{rng.getrandbits(64):016x}"
            partition = rng.randrange(6) if rng.random() > 0.2 else 0  # partition 0 is hot
            offset = self.offsets.get((topic, partition), 0)
            self.offsets[(topic, partition)] = offset + 1
            report(event_id, type_, service, "published", at, topic, span_id=span_id, parent=parent,
                   partition=partition, offset=offset)
            return event_id, span_id, partition, offset

        def consume(published: tuple[str, str, int, int], type_: str, service: str, topic: str, at: datetime,
                    fails: bool = False, retried: bool = False) -> datetime:
            event_id, span_id, partition, offset = published
            received = at + timedelta(seconds=self.latency())
            where = {"span_id": span_id, "partition": partition, "offset": offset, "group": service}
            report(event_id, type_, service, "consumed", received, topic, **where)
            done = received + timedelta(seconds=rng.uniform(0.002, 0.08))
            if fails:
                report(event_id, type_, service, "failed", done, topic, attributes={"error": "declined"}, **where)
                if not retried:
                    report(event_id, type_, service, "dead_lettered", done + timedelta(milliseconds=20), topic,
                           **where)
                    return done
                received = done + timedelta(seconds=1)
                report(event_id, type_, service, "consumed", received, topic, **where)
                done = received + timedelta(seconds=rng.uniform(0.002, 0.08))
            report(event_id, type_, service, "processed", done, topic, **where)
            return done

        placed = publish("orders", "orders.events", "OrderPlaced", start)
        consume(placed, "OrderPlaced", "analytics", "orders.events", start)
        declined = rng.random() < 0.03
        paid_at = consume(placed, "OrderPlaced", "payments", "orders.events", start, fails=declined)
        if declined:
            publish("payments", "dead-letters", "OrderPlaced", paid_at, parent=placed[1])
            return reports
        paid = publish("payments", "payments.events", "PaymentAuthorised", paid_at, parent=placed[1])
        reserved_at = consume(paid, "PaymentAuthorised", "inventory", "payments.events", paid_at)
        reserved = publish("inventory", "inventory.events", "StockReserved", reserved_at, parent=paid[1])
        shipped_at = consume(reserved, "StockReserved", "shipping", "inventory.events", reserved_at,
                             fails=rng.random() < 0.02, retried=True)
        shipped = publish("shipping", "shipping.events", "ShipmentCreated", shipped_at, parent=reserved[1])
        consume(shipped, "ShipmentCreated", "orders", "shipping.events", shipped_at)
        consume(shipped, "ShipmentCreated", "analytics", "shipping.events", shipped_at)
        return reports


def fill(events: int, span: timedelta, now: datetime) -> int:
    """About ``events`` reports of sagas started evenly over ``span`` before ``now``."""
    from django.db import connection

    from monitor.models import Event, Service

    rng = random.Random(SEED)
    writer = SagaWriter(rng)
    sagas = max(1, events // REPORTS_PER_SAGA)
    latest = now - timedelta(seconds=30)  # every saga has finished before "now"
    step = (span - timedelta(seconds=60)) / sagas
    batch: list = []
    written = 0
    for number in range(sagas):
        batch += writer.make_saga(number, latest - span + timedelta(seconds=30) + step * number)
        if len(batch) >= 5_000:
            written += len(Event.objects.bulk_create(batch))
            batch = []
    written += len(Event.objects.bulk_create(batch))
    for name in ("orders", "payments", "inventory", "shipping", "analytics"):
        Service.objects.get_or_create(name=name, defaults={"first_seen_at": now - span, "last_seen_at": now})
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # what autovacuum does soon after a bulk load
            cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(Event._meta.db_table)}")
    return written


# -- the measurements -------------------------------------------------------------------

def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def baseline_count(since: datetime, until: datetime) -> float:
    """The best of three plain ``COUNT(*)`` of the range's reports."""
    from monitor.models import Event

    return min(timed(lambda: Event.objects.filter(timestamp__gte=since, timestamp__lt=until).count())
               for _ in range(3))


def pages(range_key: str) -> dict[str, str]:
    query = f"range={range_key}"
    return {
        "flow api": f"/api/v1/flow?{query}",
        "flow page": f"/flow/?{query}",
        "service page": f"/services/payments/?{query}",
        "topic page": f"/event-topics/orders.events/?{query}",
        "traces (recent)": f"/traces/?{query}",
        "traces (failed)": f"/traces/?{query}&service=payments&failed=1",
        "trace search (key)": f"/traces/?{query}&q=order-4242",
    }


def measure(client, url: str) -> tuple[float, float, int]:
    """(cold seconds, warm seconds, SQL queries of the cold request)."""
    from django.core.cache import cache
    from django.db import connection

    queries = 0

    def count(execute, sql, params, many, context):  # survives the request closing the connection
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    cache.clear()
    with connection.execute_wrapper(count):
        started = time.perf_counter()
        response = client.get(url)
        cold = time.perf_counter() - started
    if response.status_code not in (200, 302):  # a search finding one trace redirects to it
        raise RuntimeError(f"GET {url}: HTTP {response.status_code}")
    warm = timed(lambda: client.get(url))
    return cold, warm, queries


def run_layout(layout: str, events: int, reuse: bool) -> list[str]:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.utils import timezone

    from monitor.flow.queries import WARM_RANGES, refresh_flow_cache
    from monitor.timerange import parse_time_range
    from monitor.models import ApiToken, Event

    now = timezone.now()
    call_command("migrate", verbosity=0)
    if reuse and Event.objects.exists():
        latest = Event.objects.order_by("-timestamp").values_list("timestamp", flat=True).first()
        print(f"\n== {layout}: reusing {Event.objects.count():,} reports (latest {latest:%Y-%m-%d %H:%M:%S})")
    else:
        started = time.perf_counter()
        written = fill(events, LAYOUT_SPANS[layout], now)
        print(f"\n== {layout}: {written:,} reports over the last {LAYOUT_SPANS[layout]} "
              f"(written in {time.perf_counter() - started:.1f} s)")
    user, _ = get_user_model().objects.get_or_create(username="bench")
    client = Client()
    client.force_login(user)
    _, token = ApiToken.issue(f"bench-{uuid.uuid4().hex[:6]}", ["read"])
    client.get("/flow/?range=1m")  # imports and first connection, not part of any page's time
    failures = []
    print(f"{'range':>5} {'page':<20} {'cold s':>8} {'warm s':>8} {'queries':>7} {'x COUNT(*)':>11}")
    for range_key in RANGES:
        time_range = parse_time_range({"range": range_key}, timezone.now())
        in_range = Event.objects.filter(timestamp__gte=time_range.since, timestamp__lt=time_range.until).count()
        count_seconds = baseline_count(time_range.since, time_range.until)
        print(f"{range_key:>5} {'COUNT(*)':<20} {count_seconds:8.4f} {'':>8} {1:7d} {1:11.0f}   "
              f"({in_range:,} reports)")
        for name, url in pages(range_key).items():
            headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if url.startswith("/api/") else {}
            bound = client if not headers else Client(**headers)
            cold, warm, queries = measure(bound, url)
            ratio = cold / count_seconds if count_seconds > 0 else float("inf")
            print(f"{range_key:>5} {name:<20} {cold:8.3f} {warm:8.3f} {queries:7d} {ratio:11.0f}")
            if cold > GOAL_SECONDS[range_key]:
                failures.append(f"{layout} {range_key} {name}: {cold:.2f} s cold > {GOAL_SECONDS[range_key]} s")
    spent = refresh_flow_cache(WARM_RANGES, timezone.now())
    print("warm-up task (monitor.warm_flow_cache): "
          + ", ".join(f"{key} {seconds:.3f} s" for key, seconds in spent.items()))
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="reports per layout")
    parser.add_argument("--layout", choices=("hour", "week", "both"), default="both")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                        help="a SQLite file, or a PostgreSQL server (a throwaway database is created on it)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch databases (their URLs are printed)")
    args = parser.parse_args()
    layouts = ("hour", "week") if args.layout == "both" else (args.layout,)
    if len(layouts) > 1 and urllib.parse.urlsplit(args.database_url or "").path.strip("/") \
            and (args.database_url or "").startswith("postgres"):
        parser.error("--database-url: a named PostgreSQL database holds one layout; choose --layout")
    scratch = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    given = args.database_url or ""
    created: list[str] = []
    used: list[str] = []

    def database_for(layout: str) -> tuple[str, bool]:
        """(URL, whether reports already there may be reused)."""
        if given.startswith("postgres") and urllib.parse.urlsplit(given).path.strip("/"):
            return given, True  # a named database: measured as it is, filled when empty
        if given.startswith("postgres"):
            url = scratch_db.create_database(given, "bench_flow")
            if not args.keep:
                created.append(url)
            return url, False
        if given.startswith("sqlite"):
            path = Path(urllib.parse.urlsplit(given).path)
            path = path if len(layouts) == 1 else path.with_name(f"{path.stem}-{layout}{path.suffix}")
            return f"sqlite:///{path}", True
        return f"sqlite:///{scratch / f'flow-{layout}.sqlite3'}", False

    failures: list[str] = []
    try:
        for index, layout in enumerate(layouts):
            url, reuse = database_for(layout)
            used.append(url)
            if index == 0:
                setup_django(url)
            else:
                switch_database(url)
            print(f"database: {'PostgreSQL' if url.startswith('postgres') else 'SQLite'}")
            failures += run_layout(layout, args.events, reuse)
    finally:
        from django.db import connections

        connections.close_all()
        for url in created:
            scratch_db.drop_database(url)
        if args.keep:
            print(f"kept: {scratch}")
            for url in used:
                print(f"kept: {url}")
        else:
            for path in scratch.glob("*"):
                path.unlink()
            scratch.rmdir()
    print()
    for failure in failures:
        print("over the goal:", failure)
    print("all pages within the goals" if not failures else f"{len(failures)} over the goals")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
