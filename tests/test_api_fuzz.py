"""Schema-based fuzzing of the whole API from /api/v1/openapi.json (schemathesis):
generated requests, with a token holding the read, ingest and ack scopes, never get a
5xx and every answer matches the schema the document declares.

A bounded run: a few examples per operation keep it in ``make test``; ``bench/fuzz_api.py``
runs >= 10,000 requests against a real server.
"""
from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.specs.openapi import checks as openapi_checks

from monitor.events import store

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
CHECKS = [checks.not_a_server_error, openapi_checks.response_schema_conformance,
          openapi_checks.content_type_conformance]
EXAMPLES_PER_OPERATION = 15


@pytest.fixture
def all_scopes_token(db):
    from monitor.models import ApiToken

    store.forget_registry_cache()
    _, secret = ApiToken.issue("fuzzer", ["read", "ingest", "ack"])
    # As Django's test client does: the WSGI handler would close the test's connection
    # (and its transaction) after each request.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield secret
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_generated_requests_get_no_server_error_and_answers_match_the_schema(case, all_scopes_token):
    case.call_and_validate(headers={"Authorization": f"Bearer {all_scopes_token}"}, checks=CHECKS)
