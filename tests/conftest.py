"""The suite's fixtures: real PostgreSQL, real Redis, a real Kafka-protocol broker (all
started by the first test that needs them), a user, tokens, notification receivers."""
from __future__ import annotations

import pytest
from hypothesis import settings as hypothesis_settings

from tests import services

# No per-example deadline: property tests judge results, never how long an example took
# (the suite runs on a loaded 2-core machine; speed goals live in bench/).
hypothesis_settings.register_profile("suite", deadline=None)
hypothesis_settings.load_profile("suite")

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
    """Each test starts with an empty cache: this run's keys only (tests/isolated_cache.py),
    and with none of what a process keeps between poll cycles (coordinators, summed frames)."""
    yield
    from monitor.kafka.adapter import forget_every_coordinator
    from monitor.lag.samples import forget_summed_frames

    forget_every_coordinator()
    forget_summed_frames()
    if not services.redis_in_use.is_set():
        return
    from django.core.cache import cache

    try:
        cache.clear()
    except Exception:  # noqa: BLE001 - a test that stopped Redis restores it itself
        pass
