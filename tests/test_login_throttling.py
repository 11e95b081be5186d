"""Login throttling (django-axes): repeated failures lock the username out from that
address with a message saying so; the right password then is refused too, other users
are not affected; a success before the limit resets the count."""
from __future__ import annotations

import pytest
from django.test import Client


@pytest.fixture
def browser():
    return Client(REMOTE_ADDR="203.0.113.7")


def attempt(client: Client, username: str, password: str):
    return client.post("/login/", {"username": username, "password": password, "next": "/"})


def test_repeated_failures_lock_the_account_out_with_a_message(browser, user, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = attempt(browser, "oncall", "wrong")
        assert response.status_code == 200 and "didn't match" in response.content.decode()
    locked = attempt(browser, "oncall", "wrong")
    assert locked.status_code == 429
    body = locked.content.decode()
    assert "Too many failed logins" in body and "Try again in 15 min" in body
    # Locked: even the right password is refused now.
    assert attempt(browser, "oncall", "correct horse battery").status_code == 429
    # Another user from the same address is not locked out.
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user(username="lead", password="another horse")
    assert attempt(browser, "lead", "another horse").status_code == 302


def test_a_successful_login_before_the_limit_resets_the_count(browser, user, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        attempt(browser, "oncall", "wrong")
    assert attempt(browser, "oncall", "correct horse battery").status_code == 302
    browser.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(browser, "oncall", "wrong").status_code == 200
