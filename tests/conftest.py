"""Base fixtures: real PostgreSQL, real Redis, a real Kafka-protocol broker, a user, a token."""
from __future__ import annotations

import uuid

import pytest

from tests import services

services.ensure_postgresql()
services.ensure_redis()


@pytest.fixture(scope="session")
def broker():
    """A tansu broker on a free port for the whole session (in-memory storage)."""
    running = services.start_broker()
    yield running
    running.stop()


@pytest.fixture
def kafka_settings(broker):
    from monitor.kafka.adapter import ConnectionSettings

    return ConnectionSettings([broker.bootstrap], timeout_seconds=5)


@pytest.fixture
def unique():
    """A short unique suffix: topics and groups live on one shared broker."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cluster(db, broker):
    from monitor.models import Cluster

    return Cluster.objects.create(name=f"test-{uuid.uuid4().hex[:6]}", bootstrap_servers=broker.bootstrap)


@pytest.fixture
def user(db, django_user_model):
    return django_user_model.objects.create_user(username="oncall", password="correct horse battery")


@pytest.fixture
def logged_in_client(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def read_token(db):
    from monitor.models import ApiToken

    _, secret = ApiToken.issue("reader", ["read"])
    return secret


@pytest.fixture
def ingest_token(db):
    from monitor.models import ApiToken

    _, secret = ApiToken.issue("ingester", ["ingest"])
    return secret


@pytest.fixture(autouse=True)
def _clear_cache():
    from django.core.cache import cache

    yield
    try:
        cache.clear()
    except Exception:  # noqa: BLE001 - a test that stopped Redis restores it itself
        pass
