"""API tokens: only a SHA-256 hash is stored; the token itself is shown once."""
from __future__ import annotations

import hashlib
import secrets

from django.db import models
from django.utils import timezone

from monitor.choices import TokenScope

TOKEN_PREFIX = "kmon_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiToken(models.Model):
    name = models.CharField(max_length=100, unique=True, help_text="Who uses it, e.g. a service name")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=16, editable=False, help_text="First characters, to recognise it")
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def issue(cls, name: str, scopes: list[str]) -> tuple["ApiToken", str]:
        """Create (or rotate) the token called ``name``; returns it with its secret once."""
        unknown = set(scopes) - set(TokenScope.values)
        if unknown:
            raise ValueError(f"unknown scope(s): {', '.join(sorted(unknown))}")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token, _ = cls.objects.update_or_create(
            name=name,
            defaults={
                "token_hash": hash_token(secret),
                "prefix": secret[:12],
                "scopes": sorted(set(scopes)),
                "revoked_at": None,
            },
        )
        return token, secret

    @classmethod
    def authenticate(cls, secret: str) -> "ApiToken | None":
        token = cls.objects.filter(token_hash=hash_token(secret), revoked_at=None).first()
        if token is not None:
            now = timezone.now()
            # Recording every use would be a write per request; once a minute is enough.
            if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
                cls.objects.filter(pk=token.pk).update(last_used_at=now)
        return token

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes
