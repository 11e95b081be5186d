"""The migrations describe the models exactly: a model change without its migration fails here."""
from io import StringIO

from django.core.management import call_command


def test_models_and_migrations_are_in_step(db):
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    assert "No changes detected" in out.getvalue()
