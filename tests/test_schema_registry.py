"""The Schema Registry client and sync against a real local HTTP server answering the
Confluent endpoints used (tests/schema_registry_server.py), and the wire format."""
from __future__ import annotations

import pytest

from monitor.models import Cluster, SchemaSubject
from monitor.schemas.registry import RegistryClient, RegistryError, sync_cluster_registry, topic_of_subject, wire_schema_id
from tests.schema_registry_server import RegistryServer


@pytest.fixture
def registry():
    server = RegistryServer(
        {"orders-value": {1: 11, 2: 12, 3: 17}, "orders-key": {1: 5}, "we/ird subject": {1: 40}},
        compatibility={"orders-key": "NONE"}, credentials=("monitor", "registry-s3cret"))
    yield server
    server.close()


def test_the_wire_format_gives_the_schema_id_and_anything_else_none():
    assert wire_schema_id(b"\x00\x00\x00\x00\x11{avro}") == 17
    assert wire_schema_id(b"\x00\x00\x01\x00\x00") == 65536
    assert wire_schema_id(b'{"json": true}') is None
    assert wire_schema_id(b"\x00\x00\x01") is None and wire_schema_id(None) is None


def test_topic_name_strategy_subjects_map_to_their_topic():
    assert topic_of_subject("orders-value") == "orders" and topic_of_subject("orders-key") == "orders"
    assert topic_of_subject("com.example.Order") is None


def test_sync_stores_subjects_versions_ids_and_effective_compatibility(db, registry):
    cluster = Cluster.objects.create(name="prod", bootstrap_servers="127.0.0.1:9", schema_registry_url=registry.url,
                                     schema_registry_username="monitor", schema_registry_password="registry-s3cret")
    result = sync_cluster_registry(cluster.id)
    assert result.error == "" and (result.subjects, result.versions) == (3, 5)
    stored = {s.subject: (s.compatibility, s.versions) for s in SchemaSubject.objects.filter(cluster=cluster)}
    assert stored == {
        "orders-value": ("BACKWARD", [{"version": 1, "schema_id": 11}, {"version": 2, "schema_id": 12},
                                      {"version": 3, "schema_id": 17}]),
        "orders-key": ("NONE", [{"version": 1, "schema_id": 5}]),
        "we/ird subject": ("BACKWARD", [{"version": 1, "schema_id": 40}]),
    }
    assert "/subjects/we%2Fird%20subject/versions" in registry.paths  # a subject is one quoted path segment

    del registry.subjects["orders-key"]
    assert sync_cluster_registry(cluster.id).removed == 1
    assert not SchemaSubject.objects.filter(subject="orders-key").exists()


def test_a_registry_that_refuses_changes_nothing_and_says_why_without_the_password(db, registry):
    cluster = Cluster.objects.create(name="prod", bootstrap_servers="127.0.0.1:9", schema_registry_url=registry.url,
                                     schema_registry_username="monitor", schema_registry_password="wrong-s3cret")
    result = sync_cluster_registry(cluster.id)
    assert result.error == "schema registry answered HTTP 401 to GET /config"
    assert "wrong-s3cret" not in result.error and not SchemaSubject.objects.exists()


def test_an_unreachable_registry_is_an_error():
    from tests.services import free_port

    with pytest.raises(RegistryError, match="unreachable"):
        RegistryClient(f"http://127.0.0.1:{free_port()}", timeout_seconds=2).subjects()
