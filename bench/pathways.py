"""Pathways and business transactions over millions of events: the goals of the
pathways issue, measured against baselines taken in the same run.

    python bench/pathways.py --database-url postgres://postgres@127.0.0.1:5432/test [--events 2000000]

A throwaway PostgreSQL database is created on the server named and dropped after. The
order sagas of ``bench/flow.py`` (about 16 reports each, spread over 7 days) are stored,
then:

- the from-scratch computation (``updater.rebuild``) with its peak Python memory;
- warm reads: the pathways of the whole week (what ``GET /api/v1/pathways?range=7d`` and
  the pathways page compute), the flow summaries and the stuck transactions (goal
  <= 300 ms each), against ``COUNT(*)`` of the week's events as the baseline;
- an incremental run after 1,000 new events, and that its result equals a rebuild.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import scratch_db  # noqa: E402  (beside this file)
from flow import fill, setup_django  # noqa: E402  (the same sagas as the flow benchmark)

GOAL_SECONDS = 0.3


def best_of(action, runs: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL",
                                                                "postgres://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    url = scratch_db.create_database(args.database_url, "bench_pathways")
    try:
        setup_django(url)
        from django.core.management import call_command
        from django.db import connection
        from django.utils import timezone

        call_command("migrate", verbosity=0)
        from monitor.models import BusinessFlow, Event, TracePathway
        from monitor.pathways import queries, updater

        now = timezone.now()
        started = time.perf_counter()
        written = fill(args.events, timedelta(days=7), now)
        print(f"stored {written:,} events over 7 days in {time.perf_counter() - started:.0f} s")
        BusinessFlow.objects.create(name="order", start_types=["OrderPlaced"], success_types=["ShipmentCreated"],
                                    compensated_types=["OrderCancelled"], slo_seconds=300)

        tracemalloc.start()
        started = time.perf_counter()
        result = updater.rebuild(now)
        rebuild_seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"from scratch: {result.traces:,} traces, {result.transactions:,} transactions in "
              f"{rebuild_seconds:.1f} s ({written / rebuild_seconds:,.0f} events/s), "
              f"peak Python memory {peak / 2**20:.0f} MiB (batches of {updater.BATCH:,} events)")

        since, until = now - timedelta(days=7), now
        with connection.cursor() as cursor:
            def count() -> None:
                cursor.execute("SELECT COUNT(*) FROM monitor_event WHERE timestamp >= %s AND timestamp < %s",
                               [since, until])
                cursor.fetchone()
            baseline = best_of(count)
        print(f"baseline: COUNT(*) of the week's events {baseline * 1000:.0f} ms")
        failures = []
        for name, action in (
            ("pathways of 7 days", lambda: queries.pathway_summaries(since, until)),
            ("flow summaries", lambda: queries.flow_summaries(now, since)),
            ("stuck transactions (first 100)", lambda: queries.transactions(now, state="stuck", limit=100)),
            ("an incremental run with nothing new", lambda: updater.update(now)),
        ):
            seconds = best_of(action)
            verdict = "ok" if seconds <= GOAL_SECONDS else "OVER"
            if seconds > GOAL_SECONDS:
                failures.append(name)
            print(f"{name}: {seconds * 1000:.0f} ms warm ({seconds / baseline:.1f}x the count; goal "
                  f"<= {GOAL_SECONDS * 1000:.0f} ms) {verdict}")

        before = [(s.label, s.traces, s.p95_seconds) for s in queries.pathway_summaries(since, until)]
        new = list(Event.objects.order_by("-id")[:1000])
        for event in new:
            event.pk = None
            event.trace_id = event.trace_id[::-1]
            event.report_hash = __import__("uuid").uuid4()
            event.received_at = now
        Event.objects.bulk_create(new)
        started = time.perf_counter()
        incremental = updater.update(now)
        print(f"incremental run after 1,000 new events: {(time.perf_counter() - started) * 1000:.0f} ms "
              f"({incremental.traces} traces recomputed)")
        after = [(s.label, s.traces, s.p95_seconds) for s in queries.pathway_summaries(since, until)]
        updater.rebuild(now)
        rebuilt = [(s.label, s.traces, s.p95_seconds) for s in queries.pathway_summaries(since, until)]
        same = after == rebuilt
        print(f"incremental result equals a rebuild: {'yes' if same else 'NO'}; "
              f"{len(before)} pathways, {TracePathway.objects.count():,} traced routes")
        if not same:
            failures.append("incremental != rebuild")
        print("all within the goals" if not failures else f"over the goals: {', '.join(failures)}")
        return 1 if failures else 0
    finally:
        from django.db import connections

        connections.close_all()
        scratch_db.drop_database(url)


if __name__ == "__main__":
    sys.exit(main())
