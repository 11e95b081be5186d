"""The one redaction rule: a secret never reaches a page, an API answer, a log line or a
stored error. Callers pass the secrets they know of (a cluster's SASL password, a
channel's webhook URL); :func:`redact` cuts each out of free text.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

REDACTED = "••••••"


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced: error messages must never carry a password."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


# Attribute names that look secret: their values are never shown (pages, API, exports).
SECRET_WORDS = ("password", "passwd", "secret", "token", "authorization", "api_key", "apikey", "credential")


def is_secret_name(name: str) -> bool:
    return any(word in name.lower().replace("-", "_") for word in SECRET_WORDS)


def redact_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """Attribute values whose names look secret are replaced, at any depth."""
    shown: dict[str, Any] = {}
    for name, value in (attributes or {}).items():
        if is_secret_name(str(name)):
            shown[name] = REDACTED
        elif isinstance(value, Mapping):
            shown[name] = redact_attributes(value)
        else:
            shown[name] = value
    return shown
