"""The cluster admin: every auth method's fields, write-only secrets, and the "Test
connection" button running check_cluster's steps against the real test broker."""
from __future__ import annotations

from django.forms.models import model_to_dict

from monitor.models import Cluster, PollRun
from tests.services import free_port

SECRETS = {"sasl_password": "sasl-s3cret", "oauth_client_secret": "oidc-s3cret",
           "schema_registry_password": "registry-s3cret"}


def _form_data(cluster: Cluster, **changes: object) -> dict[str, object]:
    data = {k: ("" if v is None else v) for k, v in model_to_dict(cluster).items() if k != "id"}
    for secret in SECRETS:
        data[secret] = ""
    data.update(changes)
    return data


def test_secrets_are_never_shown_back_and_an_empty_field_keeps_them(admin_client, cluster):
    Cluster.objects.filter(pk=cluster.pk).update(sasl_mechanism="OAUTHBEARER", security_protocol="SASL_SSL",
                                                 oauth_token_url="https://idp.example/token", **SECRETS)
    url = f"/admin/monitor/cluster/{cluster.pk}/change/"
    page = admin_client.get(url).content.decode()
    for field, secret in SECRETS.items():
        assert secret not in page
        assert f'name="{field}"' in page
    for field in ("oauth_token_url", "oauth_client_id", "oauth_scope", "aws_region", "sasl_kerberos_service_name",
                  "ssl_certfile", "ssl_keyfile", "schema_registry_url"):
        assert f'name="{field}"' in page, field

    cluster.refresh_from_db()
    response = admin_client.post(url, _form_data(cluster, oauth_scope="kafka"))
    assert response.status_code == 302, response.content.decode()[:2000]
    cluster.refresh_from_db()
    assert cluster.oauth_scope == "kafka"
    assert {field: getattr(cluster, field) for field in SECRETS} == SECRETS


def test_test_connection_shows_every_step_of_a_reachable_cluster(admin_client, cluster):
    page = admin_client.get(f"/admin/monitor/cluster/{cluster.pk}/change/").content.decode()
    assert 'id="test-connection"' in page
    response = admin_client.post(f"/admin/monitor/cluster/{cluster.pk}/test-connection/", follow=True)
    html = response.content.decode()
    assert "Test connection: Every step passed." in html
    assert "[ok  ] metadata" in html and "[ok  ] offsets" in html


def test_test_connection_says_which_step_failed(admin_client, db):
    cluster = Cluster.objects.create(name="closed", bootstrap_servers=f"127.0.0.1:{free_port()}")
    response = admin_client.post(f"/admin/monitor/cluster/{cluster.pk}/test-connection/", follow=True)
    html = response.content.decode()
    assert "Test connection: TCP failed: no bootstrap server accepts connections" in html
    assert "[skip] metadata" in html


def test_the_last_error_is_shown_without_the_clusters_secrets(admin_client, cluster, monkeypatch):
    monkeypatch.setenv("KAFKA_SASL_PW", "env-sasl-s3cret")
    Cluster.objects.filter(pk=cluster.pk).update(
        sasl_mechanism="PLAIN", sasl_username="monitor", sasl_password="${KAFKA_SASL_PW}",
        oauth_client_secret="oidc-s3cret",
        last_error="SaslAuthenticationFailed: password env-sasl-s3cret rejected; oauth oidc-s3cret")
    page = admin_client.get(f"/admin/monitor/cluster/{cluster.pk}/change/").content.decode()
    assert "env-sasl-s3cret" not in page and "oidc-s3cret" not in page
    assert "SaslAuthenticationFailed: password •••••• rejected; oauth ••••••" in page
    assert 'name="last_error"' not in page


def test_a_poll_failure_stores_its_error_without_the_clusters_secrets(cluster):
    from django.utils import timezone

    from monitor.lag.poll import _record_failure

    Cluster.objects.filter(pk=cluster.pk).update(sasl_password="sasl-s3cret")
    cluster.refresh_from_db()
    _record_failure(cluster, timezone.now(), 0.0, 1, "SaslAuthenticationFailed: sasl-s3cret is wrong")
    cluster.refresh_from_db()
    assert cluster.last_error == "SaslAuthenticationFailed: •••••• is wrong"
    assert "sasl-s3cret" not in PollRun.objects.get(cluster=cluster).error
