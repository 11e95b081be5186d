"""`issue_token NAME --scopes read,ingest,ack`: create (or rotate) an API token and print it once.

Only the token is written to stdout, so scripts can capture it
(``TOKEN=$(python manage.py issue_token billing --scopes ingest)``); only its hash is stored.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitor.choices import TokenScope
from monitor.models import ApiToken


def parse_scopes(text: str) -> list[str]:
    scopes = sorted({s.strip() for s in text.split(",") if s.strip()})
    if not scopes:
        raise ValueError("give at least one scope")
    unknown = [s for s in scopes if s not in TokenScope.values]
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; choose from {', '.join(TokenScope.values)}")
    return scopes


class Command(BaseCommand):
    help = "Create an API token (or rotate the one with this name) and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Who uses the token, e.g. a service name")
        parser.add_argument(
            "--scopes", required=True, help=f"Comma-separated: {', '.join(TokenScope.values)}"
        )

    def handle(self, *args: object, name: str, scopes: str, **options: object) -> None:
        name = name.strip()
        if not name or len(name) > (ApiToken._meta.get_field("name").max_length or 100):
            raise CommandError("NAME must be 1 to 100 characters", returncode=2)
        try:
            scope_list = parse_scopes(scopes)
        except ValueError as exc:
            raise CommandError(f"--scopes: {exc}", returncode=2) from exc
        rotated = ApiToken.objects.filter(name=name).exists()
        token, secret = ApiToken.issue(name, scope_list)
        self.stdout.write(secret)
        verb = "Rotated" if rotated else "Created"
        self.stderr.write(
            f"{verb} token {token.name!r} ({token.prefix}…) with scopes {', '.join(token.scopes)}. "
            "It is shown only now; store it safely."
            + (" The previous token with this name no longer works." if rotated else "")
        )
