"""Static files are hashed and cached for a year once collected, and still served before."""
from __future__ import annotations

import re

from django.core.management import call_command
from django.test import Client


def test_collected_static_files_have_hashed_names_and_far_future_caching(settings, tmp_path, user):
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", "--noinput", "--verbosity", "0", "--ignore", "plotly*")
    client = Client()
    client.force_login(user)
    page = client.get("/").content.decode()
    [css] = re.findall(r'/static/[^"]*\.css', page)[:1]
    assert re.search(r"\.[0-9a-f]{12}\.css$", css), css
    response = Client().get(css)
    assert response.status_code == 200
    assert "max-age=315360000" in response["Cache-Control"] and "immutable" in response["Cache-Control"]


def test_without_collectstatic_pages_still_render_with_plain_names(logged_in_client, settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "never-collected"
    page = logged_in_client.get("/").content.decode()
    assert re.search(r'/static/[a-z_/.-]+\.css"', page)


def test_files_collected_before_hashing_was_on_keep_their_plain_names(logged_in_client, settings, tmp_path):
    """An old STATIC_ROOT without a manifest must not produce hashed names that exist nowhere."""
    settings.STATIC_ROOT = tmp_path / "old"
    call_command("collectstatic", "--noinput", "--verbosity", "0", "--ignore", "plotly*", "--no-post-process")
    page = logged_in_client.get("/").content.decode()
    css = re.findall(r'/static/[^"]*\.css', page)
    assert css and not any(re.search(r"\.[0-9a-f]{12}\.css$", c) for c in css)
    assert all(logged_in_client.get(c).status_code == 200 for c in css)
