"""`manage.py apply_config FILE.yaml [--dry-run]`: clusters, channels and alert rules
from a file. Prints what changed; a bad file changes nothing and exits 2 naming the
line and field of every problem."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitor.alerts import config


class Command(BaseCommand):
    help = "Create or update clusters, notification channels and alert rules from a YAML file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the YAML file")
        parser.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")

    def handle(self, *args: object, file: str, dry_run: bool = False, **options: object) -> None:
        path = Path(file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {file}: {exc}", returncode=2) from None
        try:
            document = config.load(text, source=file)
        except config.ConfigError as exc:
            raise CommandError(f"{file} is not valid; nothing was changed:\n{exc}", returncode=2) from None
        changes = config.apply(document, dry_run=dry_run)
        for change in changes:
            if change.action != "unchanged" or int(options.get("verbosity", 1)) > 1:  # type: ignore[call-overload]
                self.stdout.write(change.format(dry_run))
        counts = {action: sum(1 for c in changes if c.action == action) for action in ("create", "update", "unchanged")}
        if dry_run:
            self.stdout.write(f"dry run: {counts['create']} to create, {counts['update']} to update, "
                              f"{counts['unchanged']} unchanged; nothing was changed")
        else:
            self.stdout.write(
                f"{counts['create']} created, {counts['update']} updated, {counts['unchanged']} unchanged")
