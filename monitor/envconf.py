"""Reading settings from environment variables, failing loudly on bad values.

Every getter accepts ``NAME_FILE`` as an alternative to ``NAME`` so secrets can come
from mounted files (Docker/Kubernetes secrets).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import overload

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@overload
def env_str(name: str) -> str | None: ...
@overload
def env_str(name: str, default: str) -> str: ...
@overload
def env_str(name: str, default: None) -> str | None: ...
def env_str(name: str, default: str | None = None) -> str | None:
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_name!r} cannot be read: {exc}") from exc
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    value = env_str(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use true/false)")


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    value = env_str(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from exc
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} must be at least {minimum}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = env_str(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_bootstrap_clusters(value: str) -> dict[str, list[str]]:
    """Parse ``name=host:port,host:port;name2=...`` (MONITOR_BOOTSTRAP_CLUSTERS)."""
    clusters: dict[str, list[str]] = {}
    for chunk in value.split(";"):
        chunk = chunk.strip()
        if not chunk:
            continue
        name, sep, servers = chunk.partition("=")
        name = name.strip()
        hosts = [s.strip() for s in servers.split(",") if s.strip()]
        if not sep or not name or not hosts:
            raise ImproperlyConfigured(
                f"MONITOR_BOOTSTRAP_CLUSTERS entry {chunk!r} must look like name=host:port[,host:port]"
            )
        for host in hosts:
            _, colon, port = host.rpartition(":")
            if not colon or not port.isdigit():
                raise ImproperlyConfigured(
                    f"MONITOR_BOOTSTRAP_CLUSTERS entry {chunk!r}: {host!r} is not host:port"
                )
        clusters[name] = hosts
    return clusters
