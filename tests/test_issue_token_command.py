"""`issue_token NAME --scopes ...` prints a working token once and stores only its hash."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from monitor.models import ApiToken
from monitor.models.tokens import hash_token

ROOT = Path(__file__).resolve().parent.parent


def issue(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("issue_token", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_prints_only_the_token_and_stores_only_its_hash(db):
    out, err = issue("billing", "--scopes", "ingest,read")
    secret = out.strip()
    assert out.count("\n") == 1 and secret.startswith("kmon_")
    token = ApiToken.objects.get(name="billing")
    assert token.token_hash == hash_token(secret)
    assert secret not in str(ApiToken.objects.filter(name="billing").values().first())
    assert secret not in err
    assert "shown only now" in err


def test_token_has_exactly_the_requested_scopes(db):
    secret = issue("collector", "--scopes", " ingest , ingest ")[0].strip()
    token = ApiToken.authenticate(secret)
    assert token is not None
    assert token.scopes == ["ingest"]
    assert token.has_scope("ingest") and not token.has_scope("read")


def test_issuing_again_rotates_the_token(db):
    old = issue("billing", "--scopes", "read")[0].strip()
    new, err = issue("billing", "--scopes", "read")
    assert ApiToken.authenticate(old) is None
    assert ApiToken.authenticate(new.strip()) is not None
    assert "no longer works" in err


@pytest.mark.parametrize("scopes", ["admin", "read,write", " , "])
def test_unknown_or_empty_scopes_exit_2_and_create_nothing(db, scopes):
    with pytest.raises(CommandError, match="--scopes") as caught:
        issue("billing", "--scopes", scopes)
    assert caught.value.returncode == 2
    assert not ApiToken.objects.exists()


def test_the_command_line_prints_a_token_the_api_accepts(transactional_db, client):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        # The subprocess must write to this test's database.
        "DATABASE_URL": "postgres://{USER}@{HOST}:{PORT}/{NAME}".format(**connection.settings_dict),
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "issue_token", "dashboards", "--scopes", "read"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    response = client.get("/api/v1/clusters", headers={"Authorization": f"Bearer {done.stdout.strip()}"})
    assert response.status_code == 200


def test_missing_scopes_is_a_usage_error_with_exit_2(db):
    done = subprocess.run(
        [sys.executable, "manage.py", "issue_token", "billing"],
        cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "--scopes" in done.stderr
    assert done.stdout == ""
