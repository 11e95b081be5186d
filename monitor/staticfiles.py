"""Static files: hashed names and far-future caching once ``collectstatic`` has run.

After ``python manage.py collectstatic`` every ``{% static %}`` URL carries a content hash
(``app.3f2a9c1b7e4d.js``) and WhiteNoise serves it compressed with a one-year
``Cache-Control: immutable``. Without it (the demo, a development checkout) the plain name
is used and served with a short max-age: nothing breaks. The systemd example and the Docker
image run ``collectstatic`` before the web server starts.
"""
from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage  # type: ignore[import-untyped]


class HashedStaticFiles(CompressedManifestStaticFilesStorage):
    def stored_name(self, name: str) -> str:
        try:
            return super().stored_name(name)
        except ValueError:  # not collected: the unhashed name, which the finders serve
            return name
