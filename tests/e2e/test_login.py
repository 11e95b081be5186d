"""Logging in through the real form on the real server."""
import pytest

from tests.e2e.browser import screenshot
from tests.e2e.world import PASSWORD, USERNAME

pytestmark = pytest.mark.e2e


def log_in(page, password: str) -> None:
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_a_wrong_password_shows_an_error_and_stays_on_the_login_page(anonymous_page, world):
    page = anonymous_page
    page.goto("/")
    assert page.url.startswith(world.url + "/login/")
    log_in(page, "not-the-password")
    assert page.locator("p.error").inner_text().startswith("Your username and password didn't match")
    assert page.url.startswith(world.url + "/login/")
    assert page.locator("nav").count() == 0  # nothing of the dashboard before logging in
    screenshot(page, "login-error")


def test_the_right_password_lands_on_the_overview(anonymous_page, world):
    page = anonymous_page
    page.goto("/login/")
    log_in(page, PASSWORD)
    page.wait_for_url(world.url + "/")
    assert page.locator("h1").inner_text() == "Consumer groups"
    assert USERNAME in page.locator(".topbar-right").inner_text()


def test_a_deep_link_opens_after_logging_in(anonymous_page, world):
    page = anonymous_page
    page.goto(f"/alerts/{world.firing_alert_id}/")
    assert page.url.startswith(world.url + "/login/?next=")
    log_in(page, PASSWORD)
    page.wait_for_url(f"{world.url}/alerts/{world.firing_alert_id}/")
