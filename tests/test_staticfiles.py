"""Static files are hashed and cached for a year once collected, and still served before."""
from __future__ import annotations

import re

from django.core.management import call_command
from django.test import Client, RequestFactory
from django.utils.functional import empty


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


def test_the_partial_plotly_bundle_is_collected_with_gzip_and_brotli_copies_and_served_as_brotli(
        settings, tmp_path, user):
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", "--noinput", "--verbosity", "0")
    vendor = settings.STATIC_ROOT / "vendor"
    [hashed] = [p.name for p in vendor.iterdir() if re.fullmatch(r"plotly-basic\.min\.[0-9a-f]{12}\.js", p.name)]
    assert (vendor / f"{hashed}.gz").exists() and (vendor / f"{hashed}.br").exists()
    assert (vendor / f"{hashed}.br").stat().st_size < (vendor / hashed).stat().st_size / 3
    from whitenoise.middleware import WhiteNoiseMiddleware

    settings.WHITENOISE_USE_FINDERS = False
    middleware = WhiteNoiseMiddleware(lambda request: None)
    response = middleware(RequestFactory().get(f"/static/vendor/{hashed}", HTTP_ACCEPT_ENCODING="gzip, br"))
    assert response.status_code == 200 and response["Content-Encoding"] == "br"
    assert "immutable" in response["Cache-Control"]


def test_in_debug_pages_use_the_hashed_names_once_collected(settings, tmp_path, user):
    from django.contrib.staticfiles.storage import staticfiles_storage

    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", "--noinput", "--verbosity", "0", "--ignore", "plotly*")
    staticfiles_storage._wrapped = empty  # read the new manifest
    settings.DEBUG = True
    try:
        assert re.fullmatch(r"/static/css/base\.[0-9a-f]{12}\.css", staticfiles_storage.url("css/base.css"))
        assert staticfiles_storage.url("js/not-collected.js") == "/static/js/not-collected.js"
    finally:
        staticfiles_storage._wrapped = empty


def test_files_collected_before_hashing_was_on_keep_their_plain_names(logged_in_client, settings, tmp_path):
    """An old STATIC_ROOT without a manifest must not produce hashed names that exist nowhere."""
    settings.STATIC_ROOT = tmp_path / "old"
    call_command("collectstatic", "--noinput", "--verbosity", "0", "--ignore", "plotly*", "--no-post-process")
    page = logged_in_client.get("/").content.decode()
    css = re.findall(r'/static/[^"]*\.css', page)
    assert css and not any(re.search(r"\.[0-9a-f]{12}\.css$", c) for c in css)
    assert all(logged_in_client.get(c).status_code == 200 for c in css)
