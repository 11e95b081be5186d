"""The one race harness: run the same work in several threads released at the same instant.

Concurrency tests use it to prove that two workers, schedulers or HTTP retries doing one
thing at once never do it twice. Each thread closes its own database connection when done
(Django opens one per thread); an exception in any thread fails the test with that exception.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

HANG_SECONDS = 300
"""Only a bound for a hung thread (a deadlock), never a speed goal."""


def race(work: Callable[[], T], runners: int) -> list[T]:
    """Run ``work`` in ``runners`` threads that start together; their results, in the order
    they finished."""
    start = threading.Barrier(runners)
    lock = threading.Lock()
    results: list[T] = []
    errors: list[BaseException] = []

    def runner() -> None:
        from django.db import connection

        try:
            start.wait(timeout=HANG_SECONDS)
            result = work()
            with lock:
                results.append(result)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, name=f"race-{n}") for n in range(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_SECONDS)
    hung = [thread.name for thread in threads if thread.is_alive()]
    if hung:
        raise AssertionError(f"{len(hung)} of {runners} racing threads still running after {HANG_SECONDS} s")
    if errors:
        raise errors[0]
    return results
