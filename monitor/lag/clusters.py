"""Creating and updating clusters: the add_cluster command, MONITOR_BOOTSTRAP_CLUSTERS,
and the connection settings the poller derives from a cluster row."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from monitor.kafka.adapter import ConnectionSettings
from monitor.models import Cluster


class ClusterConfigError(ValueError):
    """Bad cluster settings; the message names the field."""


@dataclass(frozen=True)
class ClusterChange:
    cluster: Cluster
    action: str  # "created" | "updated" | "unchanged"
    changed_fields: tuple[str, ...] = ()


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def resolve_secret(value: str) -> str:
    """A stored secret may be ``${NAME}``: the environment variable NAME, read when used
    (the database then holds no secret, and rotating it needs no edit)."""
    match = _ENV_REFERENCE.fullmatch(value.strip()) if value else None
    return os.environ.get(match.group(1), "") if match else value


# Every field of a cluster holding a secret (SASL, OAuth, schema registry).
CLUSTER_SECRET_FIELDS = ("sasl_password", "oauth_client_secret", "schema_registry_password")


def cluster_secrets(cluster: Cluster) -> list[str]:
    """The secret values of ``cluster`` (as stored and as resolved from ``${ENV}``): cut
    out of every error the poller stores or logs, and of what the admin shows."""
    values: list[str] = []
    for name in CLUSTER_SECRET_FIELDS:
        stored = str(getattr(cluster, name, "") or "")
        values += [value for value in (stored, resolve_secret(stored)) if len(value) >= 3]
    return sorted(set(values), key=len, reverse=True)


def connection_settings(cluster: Cluster) -> ConnectionSettings:
    return ConnectionSettings(
        bootstrap_servers=cluster.bootstrap_list,
        security_protocol=cluster.security_protocol,
        sasl_mechanism=cluster.sasl_mechanism,
        sasl_username=cluster.sasl_username,
        sasl_password=resolve_secret(cluster.sasl_password),
        ssl_cafile=cluster.ssl_cafile,
        ssl_certfile=cluster.ssl_certfile,
        ssl_keyfile=cluster.ssl_keyfile,
        oauth_token_url=cluster.oauth_token_url,
        oauth_client_id=cluster.oauth_client_id,
        oauth_client_secret=resolve_secret(cluster.oauth_client_secret),
        oauth_scope=cluster.oauth_scope,
        aws_region=cluster.aws_region,
        sasl_kerberos_service_name=cluster.sasl_kerberos_service_name,
        timeout_seconds=float(settings.MONITOR_KAFKA_TIMEOUT_SECONDS),
    )


def _validation_message(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
    return " ".join(exc.messages)


def upsert_cluster(name: str, bootstrap_servers: list[str] | str, poll_interval_seconds: int | None = None) -> ClusterChange:
    """Create the cluster ``name`` or bring it to these settings; idempotent.

    Validates like the admin does (``full_clean``) and writes nothing when invalid.
    """
    if isinstance(bootstrap_servers, str):
        bootstrap_servers = [s.strip() for s in bootstrap_servers.split(",")]
    bootstrap = ",".join(s.strip() for s in bootstrap_servers if s.strip())
    with transaction.atomic():
        found = Cluster.objects.select_for_update().filter(name=name).first()
        created = found is None
        cluster = Cluster(name=name) if found is None else found
        wanted: dict[str, object] = {"bootstrap_servers": bootstrap}
        if poll_interval_seconds is not None:
            wanted["poll_interval_seconds"] = poll_interval_seconds
        changed = tuple(f for f, v in wanted.items() if getattr(cluster, f) != v)
        for field, value in wanted.items():
            setattr(cluster, field, value)
        try:
            cluster.full_clean(validate_unique=created)
        except ValidationError as exc:
            raise ClusterConfigError(_validation_message(exc)) from exc
        if created:
            cluster.save()
            return ClusterChange(cluster, "created", changed)
        if changed:
            cluster.save(update_fields=list(changed))
            return ClusterChange(cluster, "updated", changed)
        return ClusterChange(cluster, "unchanged")


def ensure_bootstrap_clusters() -> list[ClusterChange]:
    """Create the clusters named in MONITOR_BOOTSTRAP_CLUSTERS; an existing one gets the
    configured bootstrap servers (the environment is where they are maintained), its
    other settings stay as edited in the admin."""
    configured: dict[str, list[str]] = settings.MONITOR_BOOTSTRAP_CLUSTERS
    if not configured:
        return []
    existing = dict(Cluster.objects.filter(name__in=list(configured)).values_list("name", "bootstrap_servers"))
    changes = []
    for name, servers in configured.items():
        if existing.get(name) == ",".join(servers):
            continue
        changes.append(upsert_cluster(name, servers))
    return changes
