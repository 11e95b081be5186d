"""Static files: hashed names and far-future caching once ``collectstatic`` has run.

After ``python manage.py collectstatic`` every ``{% static %}`` URL carries a content hash
(``app.3f2a9c1b7e4d.js``) and WhiteNoise serves it compressed (gzip, and brotli with the
``Brotli`` package) with a one-year ``Cache-Control: immutable``. Without it (a development
checkout) the plain name is used and served with a short max-age: nothing breaks. The
systemd example, the Docker image and ``manage.py demo`` run ``collectstatic`` first.

Django uses hashed names only with DEBUG off; the demo runs with DEBUG on, so here they are
used whenever a manifest exists, DEBUG or not.
"""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

from django.conf import settings
from whitenoise.storage import CompressedManifestStaticFilesStorage  # type: ignore[import-untyped]


class HashedStaticFiles(CompressedManifestStaticFilesStorage):
    def url(self, name: str | None, force: bool = False) -> str:
        return str(super().url(name, force=force or bool(settings.DEBUG and self.hashed_files)))

    def stored_name(self, name: str) -> str:
        # Only names the manifest lists are hashed: a file missing from it (never
        # collected, or collected before hashing was on) keeps its plain name, which the
        # finders serve, instead of a hashed name that exists nowhere.
        path = urlsplit(unquote(name)).path.strip()
        if self.hashed_files.get(self.hash_key(self.clean_name(path))) is None:
            return name
        return str(super().stored_name(name))
