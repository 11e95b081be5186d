"""The flow area's read side on SQLite, the demo's database, in a child process (the
suite's own database is PostgreSQL).

    python -m tests.flow_sqlite < scenario.json > results.json

(:func:`on_sqlite` runs it so from a test.)

``DATABASE_URL`` names a SQLite file (migrated here). The scenario is
``{"events": [kwargs of tests.flow_data.event], "since": s, "until": s, "ask": [...]}``
(seconds after :data:`tests.flow_data.T0`); each name in ``ask`` adds one result:

- ``p95``: :func:`p95_latencies` as ``[[topic, service, group, seconds], ...]``;
- ``p95_steps``: SQLite virtual machine steps that took (a measure of work, unlike time);
- ``service:NAME`` / ``topic:NAME``: the page numbers, as :func:`page_numbers` shapes them;
- ``budget``: seconds until a statement over its budget, or asked to stop, was ended.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

PROGRESS_STEPS = 100
ROOT = Path(__file__).resolve().parent.parent


def page_numbers(stats: Any) -> dict[str, Any]:
    """The numbers a service or topic page shows, JSON-ready (the same on both databases)."""
    fields = ("publishes", "consumes", "p95", "series", "producers", "consumers", "types", "keyed_events")
    numbers = {name: getattr(stats, name) for name in fields if hasattr(stats, name)}
    if "p95" in numbers:
        numbers["p95"] = sorted([*key, seconds] for key, seconds in numbers["p95"].items())
    if hasattr(stats, "skew"):
        numbers["partitions"] = asdict(stats.skew)
    if hasattr(stats, "keys"):
        numbers["keys"] = [asdict(key) for key in stats.keys]
    return json.loads(json.dumps(numbers, default=str, sort_keys=True))


def on_sqlite(tmp_path: Path, reports: list[dict], since: float, until: float, ask: list[str]) -> dict:
    """Runs this module in a child process on a fresh SQLite file with these reports."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("REDIS_URL", "MONITOR_TEST_DB_NAME", "DJANGO_SETTINGS_MODULE")}
    environment.update(DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}", DEBUG="true")
    child = subprocess.run(
        [sys.executable, "-m", "tests.flow_sqlite"], input=json.dumps({"events": reports, "since": since,
                                                                      "until": until, "ask": ask}),
        capture_output=True, text=True, cwd=ROOT, env=environment, timeout=300,
    )
    assert child.returncode == 0, child.stderr
    results = json.loads(child.stdout)
    assert results["vendor"] == "sqlite"
    return results


def _interrupted_after(budget_seconds: float, stop: threading.Event | None = None) -> float | None:
    """Seconds until a statement of minutes was ended, or None if it was not."""
    from django.db import connection

    from monitor.readcache import BudgetExhausted, TimeBudget, bounded_reads

    started = time.monotonic()
    try:
        with bounded_reads(TimeBudget(budget_seconds, stop.is_set if stop else None)), connection.cursor() as cursor:
            cursor.execute("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 10000000000) "
                           "SELECT COUNT(*) FROM n")
    except BudgetExhausted:
        return time.monotonic() - started
    return None


def main() -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from monitor.flow import queries as flow_queries
    from monitor.flow import stats as flow_stats
    from tests.flow_data import T0, event, save

    scenario = json.load(sys.stdin)
    call_command("migrate", verbosity=0)
    save(*[event(**report) for report in scenario["events"]])
    since, until = T0 + timedelta(seconds=scenario["since"]), T0 + timedelta(seconds=scenario["until"])
    results: dict[str, Any] = {"vendor": connection.vendor}
    for ask in scenario["ask"]:
        if ask in ("p95", "p95_steps"):
            steps = 0

            def count() -> int:
                nonlocal steps
                steps += PROGRESS_STEPS
                return 0

            connection.ensure_connection()
            connection.connection.set_progress_handler(count, PROGRESS_STEPS)
            p95 = flow_queries.p95_latencies(since, until)
            connection.connection.set_progress_handler(None, 0)
            results[ask] = steps if ask == "p95_steps" else sorted([*key, seconds] for key, seconds in p95.items())
        elif ask.startswith("service:"):
            results[ask] = page_numbers(flow_stats.service_stats(ask.split(":", 1)[1], since, until, True))
        elif ask.startswith("topic:"):
            results[ask] = page_numbers(flow_stats.topic_stats(ask.split(":", 1)[1], since, until, True))
        elif ask == "budget":
            stop = threading.Event()
            threading.Timer(0.3, stop.set).start()
            results[ask] = {"over_budget": _interrupted_after(0.3), "stopped": _interrupted_after(600, stop)}
        else:
            raise SystemExit(f"unknown ask: {ask!r}")
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "monitor.settings")
    main()
