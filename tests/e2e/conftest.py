"""End-to-end fixtures: the world (tests/e2e/world.py) built once per run of this package,
and a browser (tests/e2e/browser.py) logged in as an on-call engineer.

The world's data is committed, because the web server is another process; it is flushed
when the package is done so the rest of the suite starts from an empty database again.
"""
from __future__ import annotations

import shutil
import threading

import pytest

from tests.e2e.browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS_DIR, new_page
from tests.e2e.world import (
    ARTIFACTS_DIR, CLUSTER, PASSWORD, USERNAME, World, database_url, run_traffic, seed_configuration, settle,
    start_web_server,
)


@pytest.fixture(scope="package")
def e2e_database(django_db_setup, django_db_blocker):
    """The test database. pytest-django creates it only when a collected test is marked
    for database access; when only this package runs, nothing is, so create it here."""
    from django.db import connection
    from django.test.utils import setup_databases, teardown_databases

    if connection.settings_dict["NAME"] == connection.creation._get_test_db_name():
        yield connection.settings_dict["NAME"]
        return
    with django_db_blocker.unblock():
        created = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    try:
        yield connection.settings_dict["NAME"]
    finally:
        with django_db_blocker.unblock():
            teardown_databases(created, verbosity=0)


@pytest.fixture(scope="package")
def world(e2e_database, django_db_blocker, broker):
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from monitor.models import Cluster

    shutil.rmtree(SCREENSHOTS_DIR, ignore_errors=True)
    SCREENSHOTS_DIR.mkdir(parents=True, exist_ok=True)
    server = None
    with django_db_blocker.unblock():
        try:
            token = seed_configuration(broker.bootstrap)
            server = start_web_server(database_url(connection.settings_dict), settings.REDIS_URL,
                                      ARTIFACTS_DIR / "web-server.log")
            built = World(server=server)
            built.notes.update(run_traffic(broker.bootstrap, server.url, token,
                                           Cluster.objects.get(name=CLUSTER).id))
            settle(built)
        except BaseException:
            if server is not None:
                server.stop()
            call_command("flush", interactive=False, verbosity=0)
            raise
    try:
        yield built
    finally:
        server.stop()
        with django_db_blocker.unblock():
            call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(scope="package")
def browser(world):
    """Started after the world is built and stopped before it is flushed: while Playwright's
    event loop runs in this thread, Django refuses database work here (see ``database``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="package")
def signed_in_state(browser, world):
    """The session cookie of one real login through the form, reused by every test."""
    context, page, _ = new_page(browser, world)
    page.goto("/login/")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(world.url + "/")
    state = context.storage_state()
    context.close()
    return state


@pytest.fixture
def anonymous_page(browser, world):
    context, page, watch = new_page(browser, world)
    page.watch = watch
    yield page
    context.close()
    assert not watch.problems(), "\n".join(watch.problems())


@pytest.fixture
def page(browser, world, signed_in_state):
    """A logged-in tab; the test fails if the page logged an error or left the machine."""
    context, page, watch = new_page(browser, world, signed_in_state)
    page.watch = watch
    yield page
    context.close()
    assert not watch.problems(), "\n".join(watch.problems())


@pytest.fixture
def database(django_db_blocker):
    """Runs a function with database access in a worker thread (Playwright's sync API keeps
    an event loop running in the test's thread, where Django forbids database work)."""

    def run(function):
        from django.db import connections

        outcome: dict[str, object] = {}

        def target() -> None:
            try:
                with django_db_blocker.unblock():
                    outcome["value"] = function()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
                outcome["error"] = exc
            finally:
                connections.close_all()

        worker = threading.Thread(target=target, name="e2e-database")
        worker.start()
        worker.join(timeout=30)
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]
        return outcome.get("value")

    return run
