"""Benchmark: the product at the size of a real cluster (issue 10), every figure printed
against its goal.

Creates a throwaway PostgreSQL database and seeds, with set-based SQL (seconds, not
minutes), one cluster of ``--groups`` consumer groups (default 10,000) reading
``--partitions`` partitions each (default 10) over ``--topics`` topics: the groups' latest
poll as the poller stores it (partition and topic samples, denormalised group rows, a
mix of statuses). Then it measures, each as the median of ``--runs``:

- the overview page (``/``, first page, problems first) and a filtered one
  (``?status=problems&q=...``): server time and size (goal: <= 300 ms, <= 300 KiB);
- ``GET /api/v1/clusters/{c}/groups?limit=1000`` and a page from its cursor;
- ``/metrics`` at each granularity (goal: <= 1 s at 100,000 group-partitions);
- one alert evaluation of ten rules over every group (goal: <= 2 s);
- a burst: 10,000 alerts fire at once under two rules; each channel (Slack and webhook,
  a real HTTP receiver on loopback) must get one message per rule (4 POSTs), never one
  per alert;
- the flow page and ``GET /api/v1/flow`` over seven days of ``--flow-events`` reports
  (default 2,000,000) with an empty cache, read from the per-minute edge rollup (goal:
  <= 300 ms), against the raw computation of the same figures (the baseline);
- the flow page with 10,000 services (goal: <= 1 s, <= 1 MB; the busiest nodes drawn,
  the rest folded into "others");
- the trace list (``/traces/``) with one trace of 6,000 events against one of 60 events
  (goal: linear in events, i.e. the same page time within noise);
- polling, against a tansu broker it starts and seeds through the adapter (see
  ``bench/scale_poll.py``): one cycle of ``--poll-groups`` x ``--poll-partitions`` against
  the floor measured in the same run (goal: <= 1.5x); ``--shard-groups`` x
  ``--shard-partitions`` polled in shards of ``--shard-size`` groups by real Celery worker
  processes (goal: within 60 s); a worker's RSS over ``--rss-cycles`` cycles (goal: flat);
  on SQLite, 50 groups x 200 partitions (goal: <= 3x the floor).

The defaults keep the poll part near two minutes; the figures of issue 10 need
``--poll-groups 10000 --shard-groups 50000 --shard-size 10000 --rss-cycles 100``.

Server time is measured in-process through Django's test client (the whole request:
middleware, views, templates), which is what a production worker spends per request.

    python bench/scale.py [--groups 10000] [--partitions 10] [--topics 1000] [--runs 5]
                          [--only pages,alerts,events,poll] [--poll-groups 2000] [--poll-partitions 10]
                          [--shard-groups 5000] [--shard-partitions 5] [--shard-size 2500]
                          [--workers 2] [--rss-cycles 10]
                          [--database-url postgres://postgres@127.0.0.1:5432/postgres]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"
KIB = 1024


def configure(database_url: str) -> None:
    os.environ.setdefault("DEBUG", "false")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1")
    os.environ["DATABASE_URL"] = database_url
    os.environ["MONITOR_TEST_DB_NAME"] = f"test_bench_scale_{os.getpid()}"
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "monitor.settings"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["MONITOR_METRICS_PUBLIC"] = "true"
    os.environ["MONITOR_ALLOW_PRIVATE_WEBHOOKS"] = "true"  # the receiver is on loopback
    import django

    django.setup()


def seed(groups: int, partitions: int, topics: int) -> str:
    """One cluster whose groups each read ``partitions`` partitions of one or two topics,
    their latest poll written as the poller writes it. Returns the cluster's name."""
    from django.db import connection
    from django.utils import timezone

    from monitor.choices import ClusterStatus
    from monitor.models import Cluster, ConsumerGroup

    now = timezone.now()
    cluster = Cluster.objects.create(name="scale", bootstrap_servers="127.0.0.1:9", status=ClusterStatus.OK,
                                     last_poll_at=now, last_success_at=now)
    per_topic = max(1, partitions // 2)
    # Statuses: mostly ok, the rest spread over problem statuses (the severity order matters).
    cycle = ["ok"] * 9 + ["growing"] + ["ok"] * 8 + ["stalled"] + ["ok"] * 10 + ["stopped"]
    ConsumerGroup.objects.bulk_create(
        (ConsumerGroup(cluster=cluster, name=f"group-{n:06d}", state="Stable", members=1 + n % 4, protocol="classic",
                       status=cycle[n % len(cycle)], total_lag=(n * 7919) % 100_000,
                       max_time_lag_seconds=float((n * 31) % 600),
                       topics=[f"topic-{n % topics}", f"topic-{(n + 1) % topics}"], first_seen_at=now,
                       last_seen_at=now, last_sample_at=now)
         for n in range(1, groups + 1)),
        batch_size=2000,
    )
    # Each group's latest poll as the poller stores it: its partitions on its row, the
    # topic totals in the poll's frames (monitor.lag.samples).
    from monitor.lag import samples
    from monitor.lag.bulk import update_rows

    rows = list(ConsumerGroup.objects.filter(cluster=cluster).order_by("id"))
    totals = []
    for group in rows:
        states = []
        for p in range(partitions):
            topic = group.topics[min(p // per_topic, len(group.topics) - 1)]
            lag = (group.id * p) % 500
            states.append(samples.PartitionState(topic, p % per_topic, 1000, 0, 1000 + lag, lag,
                                                 float((group.id + p) % 120), "interpolated", "", None, False,
                                                 1000, now))
        group.partition_state = samples.pack_state(states)
        by_topic: dict[str, list[samples.PartitionState]] = {}
        for state in states:
            by_topic.setdefault(state.topic, []).append(state)
        totals.extend((group.id, topic, sum(s.lag or 0 for s in parts), max(s.time_lag_seconds or 0 for s in parts),
                       len(parts), 0, 0, sum(s.committed_offset or 0 for s in parts),
                       sum(s.log_end_offset or 0 for s in parts)) for topic, parts in by_topic.items())
    update_rows(ConsumerGroup, rows, ["partition_state"])
    samples.store_poll(cluster.id, now, totals=totals)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return cluster.name


def timed(call: Callable[[], object], runs: int) -> tuple[float, object]:
    times = []
    result: object = None
    for _ in range(runs):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, bool | None]] = []

    def add(self, what: str, figure: str, goal: str, met: bool | None) -> None:
        self.rows.append((what, figure, goal, met))
        verdict = "" if met is None else ("met" if met else "NOT MET")
        print(f"  {what:<58} {figure:>18}   goal {goal:<14} {verdict}", flush=True)


def measure_pages(report: Report, cluster: str, runs: int) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_user(username="bench", password="bench-password-1")
    client = Client()
    client.force_login(user)

    def get(url: str) -> Callable[[], bytes]:
        def call() -> bytes:
            response = client.get(url, secure=True)
            assert response.status_code == 200, (url, response.status_code)
            return b"".join(response) if response.streaming else response.content
        return call

    for label, url in (("overview, first page (problems first)", "/"),
                       ("overview, ?status=problems&q=group-00", "/?status=problems&q=group-00"),
                       ("overview, sorted by total lag, page 50", "/?sort=total_lag&dir=desc&page=50")):
        seconds, body = timed(get(url), runs)
        assert isinstance(body, bytes)
        report.add(f"{label}: time", f"{seconds * 1000:.0f} ms", "<= 300 ms", seconds <= 0.3)
        report.add(f"{label}: size", f"{len(body) / KIB:.0f} KiB", "<= 300 KiB", len(body) <= 300 * KIB)

    seconds, body = timed(get(f"/api/v1/clusters/{cluster}/groups?limit=1000"), runs)
    assert isinstance(body, bytes)
    report.add("API groups ?limit=1000: time", f"{seconds * 1000:.0f} ms", "(informative)", None)
    report.add("API groups ?limit=1000: size", f"{len(body) / KIB:.0f} KiB", "(informative)", None)
    seconds, body = timed(get(f"/api/v1/clusters/{cluster}/groups?status=stalled,stopped&limit=100"), runs)
    report.add("API groups ?status=stalled,stopped&limit=100: time", f"{seconds * 1000:.0f} ms", "(informative)",
               None)
    seconds, body = timed(get(f"/api/v1/clusters/{cluster}/groups"), runs)
    assert isinstance(body, bytes)
    report.add("API groups, everything (no limit): time", f"{seconds * 1000:.0f} ms", "(as before)", None)

    for granularity in ("partition", "topic", "group"):
        seconds, body = timed(get(f"/metrics?granularity={granularity}"), runs)
        assert isinstance(body, bytes)
        report.add(f"/metrics granularity={granularity}: time", f"{seconds * 1000:.0f} ms", "<= 1000 ms",
                   seconds <= 1.0)
        report.add(f"/metrics granularity={granularity}: size", f"{len(body) / KIB / KIB:.1f} MiB",
                   "(informative)", None)


def measure_alerts(report: Report, cluster: str, runs: int) -> None:
    from django.utils import timezone

    from monitor.alerts.engine import evaluate
    from monitor.alerts.metrics import STATUS_RANK
    from monitor.models import Alert, AlertRule

    rules = [
        ("lag", ">", 90_000.0), ("lag", ">", 50_000.0), ("lag", ">=", 99_000.0), ("time_lag_seconds", ">", 500.0),
        ("time_lag_seconds", ">", 590.0), ("status", ">=", float(STATUS_RANK["stalled"])),
        ("status", "==", float(STATUS_RANK["stopped"])), ("lag", ">", 10**9), ("time_lag_seconds", ">", 10**9),
        ("status", ">=", float(STATUS_RANK["data_loss"])),
    ]
    AlertRule.objects.bulk_create(
        AlertRule(name=f"scale rule {n}", cluster=cluster, group="*", topic="*", metric=metric, op=op,
                  threshold=threshold, for_seconds=0, severity="warning")
        for n, (metric, op, threshold) in enumerate(rules)
    )
    evaluate(timezone.now())  # the first evaluation creates the alerts
    seconds, _ = timed(lambda: evaluate(timezone.now()), runs)
    report.add(f"alert evaluation, {len(rules)} rules x every group", f"{seconds * 1000:.0f} ms", "<= 2000 ms",
               seconds <= 2.0)
    report.add("  alerts open after it", f"{Alert.objects.exclude(state='resolved').count():,}", "(informative)",
               None)


class Receiver:
    """A real HTTP server on loopback counting the POSTs it receives (Slack and webhook)."""

    def __init__(self) -> None:
        import http.server
        import threading

        receiver = self
        self.posts: dict[str, int] = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts[self.path] = receiver.posts.get(self.path, 0) + 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def measure_burst(report: Report, cluster: str) -> None:
    """10,000 alerts fire in one evaluation (two rules over every group): each channel
    gets one message per rule, never one per alert."""
    from django.utils import timezone

    from monitor.alerts.engine import evaluate
    from monitor.alerts.metrics import STATUS_RANK
    from monitor.models import Alert, AlertRule, Channel, Notification
    from monitor.notify.delivery import deliver

    AlertRule.objects.all().delete()
    Alert.objects.all().delete()
    receiver = Receiver()
    try:
        slack = Channel.objects.create(name="burst-slack", kind="slack", webhook_url=f"{receiver.url}/slack")
        webhook = Channel.objects.create(name="burst-webhook", kind="webhook", webhook_url=f"{receiver.url}/webhook")
        # group-000001 ... group-009999 in two halves: about 10,000 alerts under two rules.
        for name, group in (("burst: first half", "group-00[0-4]*"), ("burst: second half", "group-00[5-9]*")):
            rule = AlertRule.objects.create(name=name, cluster=cluster, group=group, topic="*", metric="status",
                                            op=">=", threshold=float(STATUS_RANK["ok"]), for_seconds=0)
            rule.channels.set([slack, webhook])
        started = time.perf_counter()
        result = evaluate(timezone.now())
        seconds = time.perf_counter() - started
        firing = Alert.objects.filter(state="firing").count()
        ids = list(Notification.objects.filter(muted=False).values_list("id", flat=True))
        delivering = time.perf_counter()
        for notification_id in ids:
            deliver(notification_id)
        delivery_seconds = time.perf_counter() - delivering
    finally:
        receiver.stop()
    posts = sum(receiver.posts.values())
    report.add(f"burst: {firing:,} alerts fire in one evaluation", f"{seconds * 1000:.0f} ms", "(informative)", None)
    report.add("burst: messages per channel (2 rules)", ", ".join(f"{k} {v}" for k, v in sorted(receiver.posts.items())),
               "1 per rule", posts == 4 and len(ids) == 4)
    report.add("burst: delivery of all messages", f"{delivery_seconds * 1000:.0f} ms", "(informative)", None)
    del result


def _analyze() -> None:
    """Statistics for the planner, as autovacuum gathers them within a minute of a bulk load."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def measure_events(report: Report, runs: int, services: int) -> None:
    """The flow page with ``services`` services (10 ingest requests' worth: two reports
    each over half as many topics), and the trace list with one trace of 6,000 events
    against the same list with a trace of 60."""
    import uuid
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from monitor.models import Event

    now = timezone.now()
    rows = []
    for n in range(services):
        at = now - timedelta(seconds=n % 600)
        common = {"type": "OrderPlaced", "timestamp": at, "received_at": at, "topic": f"topic-{n // 2}"}
        rows.append(Event(event_id=f"flow-{n}", service=f"service-{n:05d}", stage="published",
                          report_hash=uuid.uuid4(), **common))
        rows.append(Event(event_id=f"flow-{n}", service=f"service-{(n + 1) % services:05d}", stage="consumed",
                          consumer_group=f"group-{n}", report_hash=uuid.uuid4(), **common))
    Event.objects.bulk_create(rows, batch_size=5000)
    from monitor.flow import rollups

    rollups.update(now)  # as the updater does every 30 s: whole minutes come from the rollup
    _analyze()
    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))

    def get(url: str) -> Callable[[], bytes]:
        def call() -> bytes:
            response = client.get(url, secure=True)
            assert response.status_code == 200, (url, response.status_code)
            return response.content
        return call

    cold_started = time.perf_counter()
    body = get("/flow/?range=1h")()
    cold = time.perf_counter() - cold_started
    seconds, _ = timed(get("/flow/?range=1h"), runs)
    report.add(f"flow page, {services:,} services, first (cold cache)", f"{cold * 1000:.0f} ms", "<= 1000 ms",
               cold <= 1.0)
    report.add(f"flow page, {services:,} services, cached", f"{seconds * 1000:.0f} ms", "<= 1000 ms", seconds <= 1.0)
    report.add(f"flow page, {services:,} services: size", f"{len(body) / KIB:.0f} KiB", "<= 1024 KiB",
               len(body) <= 1024 * KIB)

    def trace(trace_id: str, count: int) -> None:
        Event.objects.bulk_create(
            (Event(event_id=f"{trace_id}-{n}", type=f"Step{n % 7}", service=f"svc-{n % 5}", stage="published",
                   timestamp=now - timedelta(milliseconds=count - n), received_at=now, topic="trace-topic",
                   trace_id=trace_id, report_hash=uuid.uuid4()) for n in range(count)),
            batch_size=5000)

    trace("a" * 32, 60)
    _analyze()
    small, _ = timed(get("/traces/?range=1h"), runs)
    trace("b" * 32, 6000)
    _analyze()
    large, _ = timed(get("/traces/?range=1h"), runs)
    report.add("trace list with a 6,000-event trace / with 60 events", f"{large / small:.2f}x "
               f"({large * 1000:.0f} ms)", "linear (~1x)", large / small <= 2.0)



WEEK_TOPICS = 20  # each published by one of 10 services, read by two consumer groups


def _insert_flow_reports(cursor: Any, messages: int, span: timedelta, prefix: str) -> int:
    """``messages`` messages published over ``span`` before now (five reports each, see
    :func:`seed_flow_week`), event ids starting with ``prefix``; returns the reports written."""
    from django.db import connection
    from django.utils import timezone

    from monitor.models import Event

    table = connection.ops.quote_name(Event._meta.db_table)
    cursor.execute(
        f"""
            INSERT INTO {table} (event_id, type, service, stage, timestamp, received_at, topic, partition, "offset",
                                 key, consumer_group, schema_version, trace_id, span_id, parent_span_id, report_hash)
            SELECT %s || k, 'OrderPlaced', r.service, r.stage, r.at, r.at, 'topic-' || (k %% {WEEK_TOPICS}),
                   k %% 6, k, 'order-' || (k %% 5000), r.consumer_group, 1, md5(k::text), '', '',
                   md5(%s || k::text || r.stage || r.consumer_group)::uuid
            FROM (SELECT k, %s - %s + (%s - interval '2 minutes') * k / %s AS published_at
                  FROM generate_series(0::bigint, %s - 1) AS k) m
            CROSS JOIN LATERAL (
                SELECT 'producer-' || (k %% {WEEK_TOPICS} / 2) AS service, 'published' AS stage, '' AS consumer_group,
                       m.published_at AS at
                UNION ALL
                SELECT 'consumer-' || ((k %% {WEEK_TOPICS} + g) %% 15), s.stage, 'group-' || (k %% {WEEK_TOPICS}) || '-' || g,
                       m.published_at + make_interval(secs => CASE WHEN k %% 97 = 0 THEN 30.0
                           ELSE (1 + (k * 7919 + g * 104729) %% 2000) / 1000.0 END + s.after)
                FROM generate_series(0, 1) AS g,
                     (VALUES ('consumed', 0.0), (CASE WHEN k %% 50 = 0 THEN 'failed' ELSE 'processed' END, 0.02))
                     AS s(stage, after)
            ) r
            """,
        [prefix, prefix, timezone.now(), span, span, messages, messages],
    )
    return int(cursor.rowcount)


def seed_flow_week(events: int) -> int:
    """About ``events`` reports over the last seven days in set-based SQL: messages
    published on 20 topics by 10 services, each received (consumed, then processed or
    failed) by two consumer groups after 1 ms to 2 s (some after 30 s). The event
    table's secondary indexes are dropped for the load and built again after it (what
    a bulk load does; minutes faster than maintaining them row by row)."""
    from django.db import connection

    from monitor.models import Event

    table = connection.ops.quote_name(Event._meta.db_table)
    messages = max(1, events // 5)
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")  # a bulk load, not a web request
        cursor.execute(
            "SELECT i.relname, pg_get_indexdef(i.oid), c.conname FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid LEFT JOIN pg_constraint c ON c.conindid = i.oid "
            "WHERE x.indrelid = %s::regclass AND NOT x.indisprimary", [Event._meta.db_table])
        indexes = cursor.fetchall()
        for name, _, constraint in indexes:
            if constraint:
                cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{constraint}"')
            else:
                cursor.execute(f'DROP INDEX "{name}"')
        written = _insert_flow_reports(cursor, messages, timedelta(days=7), "m-")
        for _, definition, _ in indexes:  # a unique constraint comes back as a unique index
            # A partitioned table's index is defined ON ONLY the parent; built here on every partition.
            cursor.execute(definition.replace(" ON ONLY ", " ON "))
        cursor.execute(f"ANALYZE {table}")
    return written


def measure_flow_week(report: Report, runs: int, events: int) -> None:
    """The flow page and API over seven days of ``events`` reports with an empty cache:
    from the per-minute rollup against the raw computation of the same figures (the
    baseline, measured once: it reads every report)."""
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from monitor.flow import queries as flow_queries
    from monitor.flow import rollups
    from monitor.models import ApiToken, Event, FlowEdgeRollup
    from monitor.timerange import parse_time_range

    started = time.perf_counter()
    written = seed_flow_week(events)
    seeded = time.perf_counter() - started
    started = time.perf_counter()
    rollups.rebuild(timezone.now())
    built = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(FlowEdgeRollup._meta.db_table)}")
    print(f"  seeded {written:,} reports over 7 days in {seeded:.1f} s; rollup built in {built:.1f} s "
          f"({FlowEdgeRollup.objects.count():,} rows)", flush=True)
    report.add(f"flow rollup: built from {written / 1e6:.1f}M reports (migration, repair)", f"{built:.1f} s",
               "(informative)", None)
    client = Client()
    client.force_login(get_user_model().objects.get_or_create(username="bench")[0])  # --only events: no pages ran
    _, token = ApiToken.issue("bench-flow-week", ["read"])
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")

    def cold(target: Client, url: str) -> Callable[[], bytes]:
        def call() -> bytes:
            cache.clear()
            response = target.get(url, secure=True)
            assert response.status_code == 200, (url, response.status_code)
            return response.content
        return call

    week = parse_time_range({"range": "7d"}, timezone.now())
    started = time.perf_counter()
    raw = flow_queries.flow_data(week.since, week.until, True, rollup=False)
    baseline = time.perf_counter() - started
    rolled_seconds, rolled = timed(lambda: flow_queries.flow_data(week.since, week.until, True), runs)
    assert isinstance(rolled, flow_queries.FlowData)
    assert sorted(rolled.consumes, key=repr) == sorted(raw.consumes, key=repr) and rolled.p95 == raw.p95
    report.add(f"flow numbers, 7 days, {written / 1e6:.1f}M reports: raw (baseline)", f"{baseline * 1000:.0f} ms",
               "(baseline)", None)
    report.add("flow numbers, 7 days: from the rollup", f"{rolled_seconds * 1000:.0f} ms "
               f"({baseline / rolled_seconds:.0f}x faster)", "(informative)", None)
    cold(client, "/flow/?range=1m")()  # first request's imports and connection
    page, _ = timed(cold(client, "/flow/?range=7d"), runs)
    report.add("flow page, 7 days, cold cache", f"{page * 1000:.0f} ms ({baseline / page:.0f}x under raw)",
               "<= 300 ms", page <= 0.3)
    answer, _ = timed(cold(api, "/api/v1/flow?range=7d"), runs)
    report.add("GET /api/v1/flow?range=7d, cold cache", f"{answer * 1000:.0f} ms ({baseline / answer:.0f}x under raw)",
               "<= 300 ms", answer <= 0.3)
    with connection.cursor() as cursor:  # the last three minutes' reports, as ingest adds them
        fresh = _insert_flow_reports(cursor, 20_000, timedelta(minutes=3), "n-")
    started = time.perf_counter()
    rollups.update(timezone.now() + timedelta(seconds=rollups.SETTLE_SECONDS))
    folded = time.perf_counter() - started
    report.add(f"flow rollup updater: {fresh:,} new reports folded in", f"{folded:.1f} s ({fresh / folded:,.0f}/s)",
               "(informative)", None)
    with connection.cursor() as cursor:  # the next measurements start from an empty event table
        cursor.execute(f"TRUNCATE {connection.ops.quote_name(Event._meta.db_table)}, "
                       f"{connection.ops.quote_name(FlowEdgeRollup._meta.db_table)}")
    rollups.rebuild(timezone.now())


def measure_poll(report: Report, args: argparse.Namespace) -> None:
    """Everything about polling, against a tansu broker started for it (bench/scale_poll.py)."""
    import logging

    from django.conf import settings
    from django.core.cache import cache
    from django.test.utils import override_settings

    from bench import scale_poll
    from monitor.kafka.adapter import ConnectionSettings, wait_until_reachable
    from monitor.models import Cluster
    from tests.services import ensure_redis, start_broker

    # kafka-python warns when a large answer keeps its I/O thread busy over 0.1 s: expected here.
    logging.getLogger("kafka").setLevel(logging.ERROR)

    settings.MONITOR_KAFKA_TIMEOUT_SECONDS = int(scale_poll.KAFKA_TIMEOUT_SECONDS)
    # The poller's cache is Redis, as in production (the group list each cycle writes).
    ensure_redis()
    prefix = f"bench-scale-poll-{os.getpid()}"
    redis_cache = override_settings(CACHES={"default": {
        "BACKEND": "tests.isolated_cache.RunScopedRedisCache", "LOCATION": scale_poll.REDIS_URL,
        "KEY_PREFIX": prefix, "TIMEOUT": 300}})
    redis_cache.enable()
    broker = None
    try:
        broker = start_broker()
        kafka = ConnectionSettings([broker.bootstrap], timeout_seconds=float(scale_poll.KAFKA_TIMEOUT_SECONDS))
        wait_until_reachable(kafka)
        layout = scale_poll.Layout("poll", groups=args.poll_groups, topics=max(1, args.poll_groups // 100),
                                   partitions_per_topic=args.poll_partitions)
        result = scale_poll.measure_cycle(kafka, broker.bootstrap, layout, args.runs, args.history_cycles)
        report.add(f"  ({layout.label} seeded on tansu, {layout.topics} topics)", f"{result['seed_seconds']:.0f} s",
                   "(informative)", None)
        scale_poll.report_cycle(report, layout, result, scale_poll.CYCLE_GOAL, "PostgreSQL")
        if args.rss_cycles > 0:
            scale_poll.measure_worker_memory(report, Cluster.objects.get(name="poll").pk, args.rss_cycles)
            scale_poll.measure_memory_steady(report, Cluster.objects.get(name="poll").pk, args.rss_cycles)
        if args.shard_groups > 0:
            sharded = scale_poll.Layout("sharded", groups=args.shard_groups, topics=max(1, args.shard_groups // 500),
                                        partitions_per_topic=args.shard_partitions)
            scale_poll.measure_sharded(report, kafka, broker.bootstrap, sharded, args.shard_size, args.workers,
                                       args.runs)
    finally:
        if broker is not None:
            broker.stop()
        cache.clear()  # this run's keys only (tests/isolated_cache.py)
        redis_cache.disable()
    # A broker of its own: the 50-group cluster must not list the measurements' other groups.
    sqlite_broker = start_broker()
    try:
        wait_until_reachable(ConnectionSettings([sqlite_broker.bootstrap], timeout_seconds=30.0))
        scale_poll.measure_sqlite(report, sqlite_broker.bootstrap, args.runs, args.history_cycles)
    finally:
        sqlite_broker.stop()


def measure_storage(report: Report, args: argparse.Namespace) -> None:
    """What a poll cycle adds to the database, every partition moving (bench/storage.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import storage

    figures = storage.measure(args.storage_groups, args.partitions, max(1, args.storage_groups // 10),
                              args.storage_cycles)
    per_day = figures["per_day_per_100k"]
    report.add("storage a day per 100,000 group-partitions at 30 s", f"{per_day / 1024 ** 3:.2f} GiB", "<= 1 GiB",
               per_day <= storage.GOAL_PER_DAY_PER_100K)
    report.add("  against one row per sample (same samples, same run)",
               f"{figures['baseline_bytes_per_cycle'] / max(figures['bytes_per_cycle'], 1):.0f}x smaller", "(informative)",
               None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=10, help="partitions per group")
    parser.add_argument("--topics", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--services", type=int, default=10_000, help="services on the flow page")
    parser.add_argument("--flow-events", type=int, default=2_000_000, help="reports over 7 days for the flow rollup")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--only", default="pages,alerts,events,poll,storage", help="comma-separated parts to run")
    parser.add_argument("--storage-groups", type=int, default=2000,
                        help="groups (x --partitions) of the storage measurement (bench/storage.py)")
    parser.add_argument("--storage-cycles", type=int, default=10)
    parser.add_argument("--poll-groups", type=int, default=2000, help="groups of the measured poll cycle")
    parser.add_argument("--poll-partitions", type=int, default=10, help="partitions per group of that cycle")
    parser.add_argument("--history-cycles", type=int, default=None,
                        help="earlier cycles before the measured ones (default: a full status history)")
    parser.add_argument("--shard-groups", type=int, default=5000, help="groups of the sharded cycle (0: skip)")
    parser.add_argument("--shard-partitions", type=int, default=5)
    parser.add_argument("--shard-size", type=int, default=2500, help="MONITOR_POLL_SHARD_GROUPS of the workers")
    parser.add_argument("--workers", type=int, default=2, help="worker processes polling the shards")
    parser.add_argument("--rss-cycles", type=int, default=10, help="cycles of the memory measurement (0: skip)")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    from tests.services import ensure_postgresql

    if args.database_url is None:
        ensure_postgresql()
    configure(args.database_url or DEFAULT_DATABASE_URL)

    from django.db import connection

    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    started = time.monotonic()
    report = Report()
    try:
        seeding = time.monotonic()
        cluster = ""
        if parts & {"pages", "alerts"}:
            cluster = seed(args.groups, args.partitions, args.topics)
            print(f"database: {connection.vendor} ({test_db}); seeded {args.groups:,} groups x {args.partitions} "
                  f"partitions = {args.groups * args.partitions:,} group-partitions over {args.topics:,} topics "
                  f"in {time.monotonic() - seeding:.1f} s; medians of {args.runs} runs", flush=True)
        if "pages" in parts:
            print("pages and API:")
            measure_pages(report, cluster, args.runs)
        if "alerts" in parts:
            print("alerts:")
            measure_alerts(report, cluster, args.runs)
            measure_burst(report, cluster)
        if "events" in parts:
            print("events:")
            measure_flow_week(report, args.runs, args.flow_events)
            measure_events(report, args.runs, args.services)
        if "storage" in parts:
            print("storage (bench/storage.py):")
            measure_storage(report, args)
        if "poll" in parts:
            print("polling (tansu):")
            measure_poll(report, args)
    finally:
        connection.close()
        connection.creation.destroy_test_db(test_db, verbosity=0)
    unmet = [row for row in report.rows if row[3] is False]
    print(f"\n{len(report.rows) - len(unmet) - sum(1 for r in report.rows if r[3] is None)} goals met, "
          f"{len(unmet)} not met (bench ran {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
