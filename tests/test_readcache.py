"""monitor/readcache.py: a time budget ends the statement running over it, on PostgreSQL
and (in a child process) on the demo's SQLite. Its cache is exercised through the flow
reads (tests/test_flow_queries.py, tests/test_flow_stats.py)."""
import time

import pytest
from django.db import connection

from monitor import readcache
from tests.flow_sqlite import on_sqlite

pytestmark = pytest.mark.django_db


def test_a_statement_over_the_budget_is_cancelled_on_postgresql():
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('statement_timeout')")
        [usual_timeout] = cursor.fetchone()
    started = time.monotonic()
    with pytest.raises(readcache.BudgetExhausted, match="budget"):
        with readcache.bounded_reads(readcache.TimeBudget(0.3)), connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(120)")
    assert time.monotonic() - started < 60  # cancelled by the 0.3 s budget, long before the 120 s statement
    with connection.cursor() as cursor:  # the connection is usable, with its usual timeout back
        cursor.execute("SELECT pg_sleep(0.4), current_setting('statement_timeout')")
        assert cursor.fetchone()[1] == usual_timeout


def test_a_statement_is_never_given_less_time_than_the_budget_has_left():
    """The server cancels a statement after its timeout; the cancel is read as the
    budget's only once the budget's deadline has passed. So the timeout must never be
    shorter than the time left (a truncated 299 ms for 299.5 ms left ended statements
    just before the deadline: an error of another kind instead of BudgetExhausted)."""

    class LeftExactly(readcache.TimeBudget):
        def remaining(self) -> float:
            return 0.2995

    with readcache.bounded_reads(LeftExactly(1.0)), connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('statement_timeout')")
        [given] = cursor.fetchone()
    assert given.endswith("ms") and int(given[:-2]) >= 300


def test_on_sqlite_a_statement_over_its_budget_or_asked_to_stop_is_ended(tmp_path):
    ended = on_sqlite(tmp_path, [], 0, 1, ["budget"])["budget"]
    assert ended["over_budget"] is not None and ended["over_budget"] < 5
    assert ended["stopped"] is not None and ended["stopped"] < 5
