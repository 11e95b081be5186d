"""Static files as browsers should get them: content-hashed names cached for a year
(whitenoise marks hashed files immutable), with gzip and brotli copies written by
``collectstatic`` and served to browsers that accept them.

Django uses the hashed names only when DEBUG is off; the demo runs with DEBUG on, so
here the hashed names are used whenever a manifest exists (``manage.py demo`` runs
``collectstatic`` first). A file added since the last ``collectstatic`` falls back to its
plain name in DEBUG (served by the finders); without DEBUG a missing entry is an error,
as in Django.
"""
from __future__ import annotations

from django.conf import settings
from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    def url(self, name: str | None, force: bool = False) -> str:
        if settings.DEBUG and not force and self.hashed_files:
            try:
                return super().url(name, force=True)
            except ValueError:
                pass
        return super().url(name, force=force)
