"""Logging in through the real form on the real server."""
import pytest

from tests.e2e.conftest import PASSWORD, USERNAME, screenshot

pytestmark = pytest.mark.e2e


def test_a_wrong_password_shows_an_error_and_stays_on_the_login_page(anonymous_page, world):
    page = anonymous_page
    page.goto("/")
    assert page.url.startswith(world.url + "/login/")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    assert page.locator("p.error").inner_text().startswith("Your username and password didn't match")
    assert page.url.startswith(world.url + "/login/")
    screenshot(page, "login-error")


def test_the_right_password_lands_on_the_overview(anonymous_page, world):
    page = anonymous_page
    page.goto("/alerts/")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(world.url + "/alerts/")
    page.goto("/")
    assert page.locator("h1").inner_text() == "Consumer groups"
    assert page.locator(".topbar-right").inner_text().find(USERNAME) >= 0
