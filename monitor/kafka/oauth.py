"""OIDC client-credentials tokens for SASL/OAUTHBEARER (Confluent Cloud, Azure Event Hubs,
Keycloak, Okta ...), standard library only.

One provider per cluster connection: it fetches a token from the token endpoint
(``grant_type=client_credentials``, client id and secret as HTTP Basic auth, RFC 6749
section 2.3.1), keeps it, and fetches a new one once ``REFRESH_AT`` of its lifetime has
passed (or ``MIN_MARGIN_SECONDS`` before it expires, whichever is earlier), so a
reconnect never presents an expired token. Errors name the endpoint and the HTTP status,
never the secret or the response body (which may echo it).
"""
from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

REFRESH_AT = 0.8
MIN_MARGIN_SECONDS = 30.0
DEFAULT_LIFETIME_SECONDS = 300.0


class TokenError(Exception):
    """The token endpoint did not give a usable token."""


@dataclass(frozen=True)
class Token:
    value: str
    fetched_at: float
    expires_at: float

    def needs_refresh(self, now: float) -> bool:
        lifetime = self.expires_at - self.fetched_at
        refresh_at = min(self.fetched_at + lifetime * REFRESH_AT, self.expires_at - MIN_MARGIN_SECONDS)
        return now >= max(self.fetched_at, refresh_at)


class ClientCredentialsTokens:
    """Tokens from an OIDC token endpoint, fetched once and refreshed before expiry.

    ``clock`` (monotonic seconds) is injectable so refresh is tested without waiting."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, scope: str = "",
                 timeout_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not token_url.startswith(("https://", "http://")):
            raise TokenError("oauth_token_url must be an http(s) URL")
        self.token_url, self.client_id, self._secret, self.scope = token_url, client_id, client_secret, scope
        self.timeout_seconds = timeout_seconds
        self.clock = clock
        self.fetches = 0
        self._token: Token | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the secret
        return f"ClientCredentialsTokens(token_url={self.token_url!r}, client_id={self.client_id!r})"

    def token(self) -> str:
        with self._lock:
            now = self.clock()
            if self._token is None or self._token.needs_refresh(now):
                self._token = self._fetch(now)
            return self._token.value

    def _fetch(self, now: float) -> Token:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        basic = base64.b64encode(
            f"{urllib.parse.quote(self.client_id, safe='')}:{urllib.parse.quote(self._secret, safe='')}".encode()
        ).decode()
        request = urllib.request.Request(
            self.token_url, data=urllib.parse.urlencode(form).encode(), method="POST",
            headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded",
                     "Accept": "application/json"},
        )
        self.fetches += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:  # noqa: S310 - http(s) only
                body = json.loads(response.read(1_000_000) or b"{}")
        except urllib.error.HTTPError as exc:
            raise TokenError(f"token endpoint {self.token_url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TokenError(f"token endpoint {self.token_url} unreachable: {reason}") from None
        except ValueError:
            raise TokenError(f"token endpoint {self.token_url} did not answer JSON") from None
        value = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise TokenError(f"token endpoint {self.token_url} answered without an access_token")
        try:
            lifetime = float(body.get("expires_in", DEFAULT_LIFETIME_SECONDS))
        except (TypeError, ValueError):
            lifetime = DEFAULT_LIFETIME_SECONDS
        return Token(value=value, fetched_at=now, expires_at=now + max(lifetime, 1.0))
