"""Fuzzing: schema-generated requests against a real server, counting server errors and
answers that violate the OpenAPI document.

schemathesis reads /api/v1/openapi.json from a real server (gunicorn on a free port,
a throwaway PostgreSQL database), generates requests for every operation (valid and
invalid parameters and bodies) and sends them with a token holding the read, ingest and
ack scopes. Every answer is checked: a 5xx is a server error; a body, status or content
type the document does not describe is a schema violation.

Goal: at least 10,000 requests, 0 server errors, 0 schema violations.

A throwaway database is created on the PostgreSQL server of ``--database-url`` (or
BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/) and dropped afterwards.

    python bench/fuzz_api.py [--requests 10000] [--workers 2]
"""
from __future__ import annotations

import argparse
import collections
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import scratch_db  # noqa: E402  (beside this file)
from ingest import server_env, setup_django, start_server  # noqa: E402  (beside this file)

GOAL_REQUESTS = 10_000


def fuzz(base_url: str, token: str, total: int) -> tuple[int, collections.Counter[str], list[str]]:
    import schemathesis
    from schemathesis.specs.openapi import checks as openapi_checks

    schema = schemathesis.openapi.from_url(f"{base_url}/api/v1/openapi.json", timeout=120)
    operations = [result.ok() for result in schema.get_all_operations()]
    headers = {"Authorization": f"Bearer {token}"}
    checks = [openapi_checks.response_schema_conformance, openapi_checks.content_type_conformance]
    sent = 0
    problems: collections.Counter[str] = collections.Counter()
    examples: list[str] = []
    # Rounds until the total is reached: hypothesis stops early on an operation with few
    # distinct inputs (GET /healthz), so the others get more in the next round.
    rounds = 0
    while sent < total and rounds < 20:
        rounds += 1
        before = sent
        _round(operations, max(1, -(-(total - sent) // len(operations))), base_url, headers, checks, problems, examples)
        sent = _counter["sent"]
        if sent == before:
            break
    return sent, problems, examples


_counter: collections.Counter[str] = collections.Counter()


def _round(operations: list, per_operation: int, base_url: str, headers: dict, checks: list,
           problems: collections.Counter[str], examples: list[str]) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.core.failures import FailureGroup

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=per_operation, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=base_url, headers=headers)
            _counter["sent"] += 1
            if response.status_code >= 500:
                problems["server errors"] += 1
                if len(examples) < 10:
                    examples.append(f"{response.status_code} {case.method} {case.formatted_path}")
                return
            try:
                case.validate_response(response, checks=checks)
            except FailureGroup as failures:
                problems["schema violations"] += 1
                if len(examples) < 10:
                    examples.append(f"{case.method} {case.formatted_path}: "
                                    + "; ".join(str(f.title) for f in failures.exceptions))

        run()
        print(f"  {operation.method.upper():5} {operation.path}: {_counter['sent']} requests so far", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=GOAL_REQUESTS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL",
                                                                 "postgres://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    database_url = scratch_db.create_database(args.database_url, "bench_fuzz")
    server = None
    try:
        # No per-token rate limits here: the goal is what the server answers, not throttling.
        os.environ.update({"MONITOR_INGEST_RATE_PER_MINUTE": "0", "MONITOR_NEW_NAMES_PER_HOUR": "0"})
        setup_django(database_url)
        from django.core.management import call_command

        from monitor.models import ApiToken

        call_command("migrate", verbosity=0)
        _, token = ApiToken.issue("fuzzer", ["read", "ingest", "ack"])
        server, address = start_server(database_url, args.workers)
        started = time.monotonic()
        sent, problems, examples = fuzz(f"http://{address}", token, args.requests)
        seconds = time.monotonic() - started
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        scratch_db.drop_database(database_url)
    server_errors, violations = problems["server errors"], problems["schema violations"]
    print(f"fuzz_api: {sent} generated requests in {seconds:.0f} s; {server_errors} server errors, "
          f"{violations} schema violations (goal: >= {GOAL_REQUESTS} requests, 0 and 0)")
    for example in examples:
        print(f"  {example}")
    ok = sent >= min(args.requests, GOAL_REQUESTS) and server_errors == 0 and violations == 0
    print("fuzz_api: goal met" if ok else "fuzz_api: goal NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    assert server_env  # imported for the server's environment
    sys.exit(main())
