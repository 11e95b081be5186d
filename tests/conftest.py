"""The suite's fixtures: real PostgreSQL, real Redis, a real Kafka-protocol broker (all
started by the first test that needs them), a user, tokens, notification receivers."""
from __future__ import annotations

import pytest

from tests import services

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.data",
    "tests.fixtures.receivers",
]


@pytest.fixture(scope="session")
def django_db_setup(postgresql, redis_server, django_db_setup):
    """pytest-django's test database, once PostgreSQL and Redis answer."""
    return django_db_setup


@pytest.fixture(autouse=True)
def _forget_cached_values():
    """Each test starts with an empty cache: this run's keys only (tests/isolated_cache.py)."""
    yield
    if not services.redis_in_use.is_set():
        return
    from django.core.cache import cache

    try:
        cache.clear()
    except Exception:  # noqa: BLE001 - a test that stopped Redis restores it itself
        pass
