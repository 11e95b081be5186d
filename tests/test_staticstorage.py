"""Static files (monitor/staticstorage.py): hashed names, gzip and brotli copies, served
compressed and cached for a year by whitenoise."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import RequestFactory, override_settings

STORAGE = {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
           "staticfiles": {"BACKEND": "monitor.staticstorage.StaticStorage"}}


@pytest.fixture
def collected(tmp_path: Path):
    with override_settings(STORAGES=STORAGE, STATIC_ROOT=str(tmp_path)):
        call_command("collectstatic", interactive=False, verbosity=0)
        yield tmp_path


def test_collectstatic_writes_hashed_gzip_and_brotli_copies_of_the_chart_bundle(collected):
    bundles = sorted(p.name for p in (collected / "vendor").iterdir() if p.name.startswith("plotly-basic.min."))
    hashed = [name for name in bundles if name.endswith(".js") and name != "plotly-basic.min.js"]
    assert len(hashed) == 1
    assert f"{hashed[0]}.gz" in bundles and f"{hashed[0]}.br" in bundles
    original = (collected / "vendor" / hashed[0]).stat().st_size
    assert (collected / "vendor" / f"{hashed[0]}.br").stat().st_size < original / 3


def test_pages_name_the_hashed_file_even_in_debug_when_a_manifest_exists(collected):
    from django.contrib.staticfiles.storage import staticfiles_storage

    with override_settings(STORAGES=STORAGE, STATIC_ROOT=str(collected), DEBUG=True):
        url = staticfiles_storage.url("vendor/plotly-basic.min.js")
        assert url.startswith("/static/vendor/plotly-basic.min.") and url != "/static/vendor/plotly-basic.min.js"
        # A file collectstatic has not seen yet keeps its plain name (the finders serve it).
        assert staticfiles_storage.url("js/not-collected-yet.js") == "/static/js/not-collected-yet.js"


def test_whitenoise_serves_the_hashed_bundle_brotli_compressed_and_cached_for_a_year(collected):
    from django.contrib.staticfiles.storage import staticfiles_storage
    from whitenoise.middleware import WhiteNoiseMiddleware

    with override_settings(STORAGES=STORAGE, STATIC_ROOT=str(collected), DEBUG=False, WHITENOISE_USE_FINDERS=False):
        url = staticfiles_storage.url("vendor/plotly-basic.min.js")
        middleware = WhiteNoiseMiddleware(lambda request: None)
        response = middleware(RequestFactory().get(url, HTTP_ACCEPT_ENCODING="gzip, br"))
        assert response.status_code == 200
        assert response["Content-Encoding"] == "br"
        assert "max-age=315360000" in response["Cache-Control"] and "immutable" in response["Cache-Control"]
        response = middleware(RequestFactory().get(url, HTTP_ACCEPT_ENCODING="gzip"))
        assert response["Content-Encoding"] == "gzip"
