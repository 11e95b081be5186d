"""OIDC client-credentials tokens for OAUTHBEARER against a real local token endpoint
(an HTTP server in the test answering like Keycloak/Okta/Entra do)."""
from __future__ import annotations

import base64
import urllib.parse

import pytest

from monitor.kafka.adapter import ConnectionSettings, OidcTokenProvider
from monitor.kafka.oauth import ClientCredentialsTokens, TokenError
from tests.json_http import JsonHandler, serve


class TokenEndpoint:
    """Issues ``token-1``, ``token-2`` ... to client ``monitor`` / ``s3cret`` only."""

    def __init__(self, expires_in: int = 300) -> None:
        self.expires_in = expires_in
        self.requests: list[dict[str, str]] = []
        endpoint = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:  # noqa: N802
                form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
                endpoint.requests.append(form)
                expected = "Basic " + base64.b64encode(b"monitor:s3cret").decode()
                if self.headers.get("Authorization") != expected or form.get("grant_type") != "client_credentials":
                    self.answer(401, {"error": "invalid_client", "echo": self.headers.get("Authorization")})
                    return
                self.answer(200, {"access_token": f"token-{len(endpoint.requests)}", "token_type": "Bearer",
                                   "expires_in": endpoint.expires_in})

        self.server = serve(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/token"

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def endpoint():
    running = TokenEndpoint()
    yield running
    running.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_fetched_once_with_basic_auth_and_scope_then_reused(endpoint):
    tokens = ClientCredentialsTokens(endpoint.url, "monitor", "s3cret", scope="kafka read", clock=Clock())
    assert tokens.token() == "token-1"
    assert tokens.token() == "token-1"
    assert endpoint.requests == [{"grant_type": "client_credentials", "scope": "kafka read"}]


def test_the_token_is_refreshed_before_it_expires_not_after(endpoint):
    clock = Clock()
    tokens = ClientCredentialsTokens(endpoint.url, "monitor", "s3cret", clock=clock)
    assert tokens.token() == "token-1"  # valid 300 s: refreshed from 240 s on (80 %)
    clock.now += 239
    assert tokens.token() == "token-1"
    clock.now += 1
    assert tokens.token() == "token-2"
    assert len(endpoint.requests) == 2


def test_a_refused_client_is_an_error_naming_the_endpoint_and_status_never_the_secret(endpoint):
    tokens = ClientCredentialsTokens(endpoint.url, "monitor", "wrong-secret", clock=Clock())
    with pytest.raises(TokenError) as raised:
        tokens.token()
    assert str(raised.value) == f"token endpoint {endpoint.url} answered HTTP 401"
    assert "wrong-secret" not in str(raised.value) and "wrong-secret" not in repr(tokens)


def test_an_unreachable_endpoint_is_an_error():
    from tests.services import free_port

    url = f"http://127.0.0.1:{free_port()}/token"
    with pytest.raises(TokenError, match="unreachable"):
        ClientCredentialsTokens(url, "monitor", "s3cret", timeout_seconds=2).token()


def test_the_kafka_client_config_carries_a_shared_provider_for_the_cluster(endpoint):
    settings = ConnectionSettings(["broker:9093"], security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER",
                                  oauth_token_url=endpoint.url, oauth_client_id="monitor", oauth_client_secret="s3cret")
    first, second = settings.client_config(), settings.client_config()
    provider = first["sasl_oauth_token_provider"]
    assert isinstance(provider, OidcTokenProvider) and provider is second["sasl_oauth_token_provider"]
    assert provider.token() == "token-1" and provider.token() == "token-1"
    assert "sasl_plain_password" not in first
