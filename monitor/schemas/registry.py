"""Confluent-compatible Schema Registry (Confluent, Apicurio's ccompat API, Karapace): a
client for the few read endpoints used, the sync into the database, and the wire format.

Endpoints: ``GET /subjects``, ``GET /subjects/{subject}/versions``,
``GET /subjects/{subject}/versions/{version}`` (schema id), ``GET /config/{subject}``
(compatibility; 404 = the global level from ``GET /config``). Subject names are quoted
as path segments. Errors name the URL path and status, never credentials or bodies.

Confluent wire format: byte 0 is the magic byte 0, bytes 1-4 the schema id (big-endian).
Topic-name strategy: a topic's subjects are ``<topic>-value`` and ``<topic>-key``.
"""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

MAGIC_BYTE = 0
MAX_SUBJECTS = 10_000


class RegistryError(Exception):
    pass


def wire_schema_id(value: bytes | None) -> int | None:
    """The schema id of a Confluent-framed message; None when the value is not framed."""
    if not value or len(value) < 5 or value[0] != MAGIC_BYTE:
        return None
    return int.from_bytes(value[1:5], "big")


def topic_of_subject(subject: str) -> str | None:
    """The topic a topic-name-strategy subject belongs to (``orders-value`` -> ``orders``)."""
    for suffix in ("-value", "-key"):
        if subject.endswith(suffix) and len(subject) > len(suffix):
            return subject[: -len(suffix)]
    return None


@dataclass(frozen=True)
class RegisteredVersion:
    version: int
    schema_id: int


@dataclass(frozen=True)
class SubjectState:
    subject: str
    compatibility: str
    versions: tuple[RegisteredVersion, ...]


class RegistryClient:
    def __init__(self, url: str, username: str = "", password: str = "", timeout_seconds: float = 10.0) -> None:
        if not url.startswith(("https://", "http://")):
            raise RegistryError("schema_registry_url must be an http(s) URL")
        self.base = url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self._auth = ("Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()) if username else ""
        self.requests = 0

    def __repr__(self) -> str:
        return f"RegistryClient({self.base!r})"

    def _get(self, path: str, missing_ok: bool = False) -> Any:
        headers = {"Accept": "application/vnd.schemaregistry.v1+json, application/json"}
        if self._auth:
            headers["Authorization"] = self._auth
        self.requests += 1
        request = urllib.request.Request(self.base + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:  # noqa: S310 - http(s) only
                return json.loads(response.read(20_000_000) or b"null")
        except urllib.error.HTTPError as exc:
            if missing_ok and exc.code == 404:
                return None
            raise RegistryError(f"schema registry answered HTTP {exc.code} to GET {path}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise RegistryError(f"schema registry {self.base} unreachable: {getattr(exc, 'reason', exc)}") from None
        except ValueError:
            raise RegistryError(f"schema registry answered GET {path} with something that is not JSON") from None

    @staticmethod
    def _segment(subject: str) -> str:
        return urllib.parse.quote(subject, safe="")

    def subjects(self) -> list[str]:
        found = self._get("/subjects")
        if not isinstance(found, list):
            raise RegistryError("GET /subjects did not answer a list")
        return [str(s) for s in found[:MAX_SUBJECTS]]

    def global_compatibility(self) -> str:
        found = self._get("/config", missing_ok=True) or {}
        return str(found.get("compatibilityLevel") or found.get("compatibility") or "")

    def compatibility(self, subject: str, default: str) -> str:
        found = self._get(f"/config/{self._segment(subject)}", missing_ok=True)
        if not isinstance(found, dict):
            return default
        return str(found.get("compatibilityLevel") or found.get("compatibility") or default)

    def versions(self, subject: str) -> list[RegisteredVersion]:
        numbers = self._get(f"/subjects/{self._segment(subject)}/versions") or []
        result = []
        for number in sorted(int(n) for n in numbers):
            detail = self._get(f"/subjects/{self._segment(subject)}/versions/{number}") or {}
            result.append(RegisteredVersion(version=number, schema_id=int(detail.get("id", -1))))
        return result

    def subject_state(self, subject: str, default_compatibility: str) -> SubjectState:
        return SubjectState(subject, self.compatibility(subject, default_compatibility), tuple(self.versions(subject)))


@dataclass
class SyncResult:
    subjects: int = 0
    versions: int = 0
    removed: int = 0
    requests: int = 0
    error: str = ""
    changed: list[str] = field(default_factory=list)


def sync_cluster_registry(cluster_id: int, now: datetime | None = None) -> SyncResult:
    """Read every subject of the cluster's registry and store them in one transaction
    (subjects gone from the registry are removed). A registry that cannot be read
    changes nothing and says why."""
    from monitor.lag.clusters import resolve_secret
    from monitor.models import Cluster, SchemaSubject

    cluster = Cluster.objects.get(pk=cluster_id)
    if not cluster.schema_registry_url:
        return SyncResult(error="no schema_registry_url")
    client = RegistryClient(cluster.schema_registry_url, cluster.schema_registry_username,
                            resolve_secret(cluster.schema_registry_password))
    try:
        default = client.global_compatibility()
        states = [client.subject_state(subject, default) for subject in client.subjects()]
    except RegistryError as exc:
        return SyncResult(requests=client.requests, error=str(exc))
    now = now or timezone.now()
    with transaction.atomic():
        existing = {s.subject: s for s in SchemaSubject.objects.select_for_update().filter(cluster=cluster)}
        wanted = {state.subject for state in states}
        removed = [s.pk for name, s in existing.items() if name not in wanted]
        SchemaSubject.objects.filter(pk__in=removed).delete()
        new, changed = [], []
        for state in states:
            versions = [{"version": v.version, "schema_id": v.schema_id} for v in state.versions]
            row = existing.get(state.subject)
            if row is None:
                new.append(SchemaSubject(cluster=cluster, subject=state.subject[:255],
                                         compatibility=state.compatibility[:40], versions=versions, synced_at=now))
            else:
                row.compatibility, row.versions, row.synced_at = state.compatibility[:40], versions, now
                changed.append(row)
        SchemaSubject.objects.bulk_create(new, batch_size=1000)
        SchemaSubject.objects.bulk_update(changed, ["compatibility", "versions", "synced_at"], batch_size=1000)
    return SyncResult(subjects=len(states), versions=sum(len(s.versions) for s in states), removed=len(removed),
                      requests=client.requests)


def record_seen_schema_ids(cluster_id: int, counts: dict[tuple[str, int], int], now: datetime) -> None:
    """Add the header tap's counts of (topic, schema id) seen in one run: one upsert per pair."""
    from django.db.models import F

    from monitor.models import TopicSchemaId

    if not counts:
        return
    with transaction.atomic():
        existing = {(r.topic, r.schema_id): r for r in TopicSchemaId.objects.select_for_update().filter(
            cluster_id=cluster_id, topic__in={t for t, _ in counts})}
        new = []
        for (topic, schema_id), messages in counts.items():
            if (topic, schema_id) in existing:
                TopicSchemaId.objects.filter(pk=existing[(topic, schema_id)].pk).update(
                    messages=F("messages") + messages, last_seen_at=now)
            else:
                new.append(TopicSchemaId(cluster_id=cluster_id, topic=topic, schema_id=schema_id, messages=messages,
                                         first_seen_at=now, last_seen_at=now))
        TopicSchemaId.objects.bulk_create(new, ignore_conflicts=True)


def version_of_ids(cluster_id: int) -> dict[tuple[str, int], int]:
    """(topic, schema id) -> registered version, for topic-name-strategy value subjects."""
    from monitor.models import SchemaSubject

    mapping: dict[tuple[str, int], int] = {}
    for subject, versions in SchemaSubject.objects.filter(cluster_id=cluster_id).values_list("subject", "versions"):
        topic = topic_of_subject(subject)
        if topic is None or not subject.endswith("-value"):
            continue
        for entry in versions or ():
            mapping[(topic, int(entry["schema_id"]))] = int(entry["version"])
    return mapping
