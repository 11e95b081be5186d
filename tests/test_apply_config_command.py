"""`manage.py apply_config FILE.yaml [--dry-run]` as a user runs it."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from monitor.models import AlertRule, Channel, Cluster
from tests.test_alert_config import CONTRACT_EXAMPLE


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("apply_config", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "monitor.yaml"
    path.write_text(CONTRACT_EXAMPLE)
    return path


def test_applying_creates_everything_and_a_second_run_changes_nothing(db, config_file):
    output = run(str(config_file))
    assert output.splitlines() == [
        "created cluster 'prod'", "created channel 'oncall-slack'", "created channel 'team-email'",
        "created rule 'billing falls behind'", "4 created, 0 updated, 0 unchanged",
    ]
    assert run(str(config_file)).splitlines() == ["0 created, 0 updated, 4 unchanged"]


def test_a_dry_run_shows_what_would_change_and_changes_nothing(db, config_file):
    run(str(config_file))
    config_file.write_text(CONTRACT_EXAMPLE.replace("severity: critical", "severity: warning"))
    output = run(str(config_file), "--dry-run")
    assert output.splitlines() == [
        "would update rule 'billing falls behind': severity 'critical' -> 'warning'",
        "dry run: 0 to create, 1 to update, 3 unchanged; nothing was changed",
    ]
    assert AlertRule.objects.get().severity == "critical"


def test_a_bad_file_exits_2_naming_line_and_field_and_changes_nothing(db, config_file):
    config_file.write_text(CONTRACT_EXAMPLE.replace("threshold: 1000", "threshold: -1").replace(
        "channels: [oncall-slack, team-email]", "channels: [oncall-slack, nobody]"))
    with pytest.raises(CommandError) as error:
        run(str(config_file))
    assert error.value.returncode == 2
    message = str(error.value)
    assert f"{config_file}:19: rules[0].threshold: must not be negative (got -1)" in message
    assert f"{config_file}:24: rules[0].channels[1]: unknown channel 'nobody'" in message
    assert not Cluster.objects.exists() and not Channel.objects.exists() and not AlertRule.objects.exists()


def test_a_missing_file_exits_2(db, tmp_path):
    with pytest.raises(CommandError, match="cannot read") as error:
        run(str(tmp_path / "nope.yaml"))
    assert error.value.returncode == 2


def test_secrets_are_never_printed(db, config_file):
    output = run(str(config_file))
    config_file.write_text(CONTRACT_EXAMPLE.replace("XXXX", "NEW-SECRET"))
    output += run(str(config_file), "--verbosity", "2")
    assert "XXXX" not in output and "NEW-SECRET" not in output
    assert "updated channel 'oncall-slack': webhook_url changed" in output
    assert "unchanged rule billing falls behind" in output


def test_the_command_exits_2_from_the_shell(db, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: r, metric: nope, threshold: 1}\n")
    database = connection.settings_dict
    credentials = quote(database["USER"]) + (f":{quote(database['PASSWORD'])}" if database["PASSWORD"] else "")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "DATABASE_URL": f"postgres://{credentials}@{database['HOST']}:{database['PORT']}/{database['NAME']}"}
    completed = subprocess.run([sys.executable, "manage.py", "apply_config", str(bad), "--dry-run"],
                               capture_output=True, text=True, env=env, cwd=settings.BASE_DIR, timeout=60)
    assert completed.returncode == 2
    assert f"{bad}:2: rules[0].metric: unknown metric 'nope'" in completed.stderr


def test_a_webhook_resolving_to_an_internal_address_exits_2_naming_the_field(db, config_file, settings):
    settings.MONITOR_ALLOW_PRIVATE_WEBHOOKS = False
    config_file.write_text(CONTRACT_EXAMPLE.replace("https://hooks.slack.com/services/T000/B000/XXXX",
                                                    "http://169.254.169.254/latest/meta-data/"))
    with pytest.raises(CommandError) as error:
        run(str(config_file))
    assert error.value.returncode == 2
    assert "channels[0].webhook_url" in str(error.value) and "internal address 169.254.169.254" in str(error.value)
    assert not Channel.objects.exists()


def test_clusters_take_every_auth_method_with_secrets_from_the_environment_or_files(db, tmp_path, monkeypatch):
    monkeypatch.setenv("OIDC_SECRET", "oidc-s3cret")
    (tmp_path / "registry-password").write_text("registry-s3cret\n")
    config = tmp_path / "clusters.yaml"
    config.write_text(f"""
clusters:
  - name: cloud
    bootstrap: ["pkc-1.example.cloud:9092"]
    security_protocol: SASL_SSL
    sasl_mechanism: OAUTHBEARER
    oauth_token_url: https://idp.example/oauth2/token
    oauth_client_id: kafka-monitor
    oauth_client_secret: ${{OIDC_SECRET}}
    oauth_scope: kafka
    schema_registry_url: https://registry.example
    schema_registry_username: monitor
    schema_registry_password_file: {tmp_path / "registry-password"}
  - name: msk
    bootstrap: ["b-1.demo.abc.c2.kafka.eu-west-1.amazonaws.com:9098"]
    security_protocol: SASL_SSL
    sasl_mechanism: AWS_MSK_IAM
    aws_region: eu-west-1
  - name: kerberos
    bootstrap: ["kafka-1.corp:9093"]
    security_protocol: SASL_SSL
    sasl_mechanism: GSSAPI
    sasl_kerberos_service_name: kafka-prod
  - name: mtls
    bootstrap: ["kafka-1.internal:9093"]
    security_protocol: SSL
    ssl_cafile: /etc/kafka-monitor/ca.pem
    ssl_certfile: /etc/kafka-monitor/client.pem
    ssl_keyfile: /etc/kafka-monitor/client.key
""")
    output = run(str(config))
    assert "oidc-s3cret" not in output and "registry-s3cret" not in output
    cloud = Cluster.objects.get(name="cloud")
    assert (cloud.sasl_mechanism, cloud.oauth_client_secret, cloud.schema_registry_password) == (
        "OAUTHBEARER", "oidc-s3cret", "registry-s3cret")
    assert Cluster.objects.get(name="msk").aws_region == "eu-west-1"
    assert Cluster.objects.get(name="kerberos").sasl_kerberos_service_name == "kafka-prod"
    assert Cluster.objects.get(name="mtls").ssl_keyfile == "/etc/kafka-monitor/client.key"
    monkeypatch.setenv("OIDC_SECRET", "rotated-s3cret")
    output = run(str(config))
    assert "updated cluster 'cloud': oauth_client_secret changed" in output and "rotated" not in output


def test_a_secret_file_that_cannot_be_read_exits_2_naming_the_field(db, tmp_path):
    config = tmp_path / "clusters.yaml"
    config.write_text(f"""
clusters:
  - name: cloud
    bootstrap: ["pkc-1.example.cloud:9092"]
    sasl_mechanism: OAUTHBEARER
    oauth_client_secret_file: {tmp_path / "missing"}
""")
    with pytest.raises(CommandError) as error:
        run(str(config))
    assert error.value.returncode == 2
    assert "clusters[0].oauth_client_secret_file: cannot read" in str(error.value)
    assert not Cluster.objects.exists()
