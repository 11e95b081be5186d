"""``manage.py check_cluster NAME``: the connection tried step by step (DNS, TCP, TLS,
SASL, metadata, offsets); exit 0 when every step passes, 1 otherwise, 2 for an unknown
cluster."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitor.kafka.check import check_connection
from monitor.lag.clusters import connection_settings
from monitor.models import Cluster


class Command(BaseCommand):
    help = "Try a cluster's connection step by step and say which step failed and why."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the cluster's name")

    def handle(self, *args: Any, **options: Any) -> None:
        cluster = Cluster.objects.filter(name=options["name"]).first()
        if cluster is None:
            raise CommandError(f"no cluster named {options['name']!r}", returncode=2)
        report = check_connection(cluster.name, connection_settings(cluster))
        for line in report.lines():
            self.stdout.write(line)
        failed = report.failed_step
        if failed is not None:
            self.stdout.write(f"{cluster.name}: {failed.step} failed: {failed.detail}")
            raise SystemExit(1)
        self.stdout.write(f"{cluster.name}: every step passed")
