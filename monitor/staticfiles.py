"""Static files: hashed names and far-future caching once ``collectstatic`` has run.

After ``python manage.py collectstatic`` every ``{% static %}`` URL carries a content hash
(``app.3f2a9c1b7e4d.js``) and WhiteNoise serves it compressed with a one-year
``Cache-Control: immutable``. Without it (the demo, a development checkout) the plain name
is used and served with a short max-age: nothing breaks. The systemd example and the Docker
image run ``collectstatic`` before the web server starts.
"""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

from whitenoise.storage import CompressedManifestStaticFilesStorage  # type: ignore[import-untyped]


class HashedStaticFiles(CompressedManifestStaticFilesStorage):
    def stored_name(self, name: str) -> str:
        # Only names the manifest lists are hashed: a file missing from it (never
        # collected, or collected before hashing was on) keeps its plain name, which the
        # finders serve, instead of a hashed name that exists nowhere.
        path = urlsplit(unquote(name)).path.strip()
        if self.hashed_files.get(self.hash_key(self.clean_name(path))) is None:
            return name
        return str(super().stored_name(name))
