"""`add_cluster NAME --bootstrap HOST:PORT[,HOST:PORT] [--poll-interval S]`: create or
update a cluster; idempotent. Bad arguments exit 2 naming the field and change nothing."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitor.lag.clusters import ClusterConfigError, upsert_cluster


class Command(BaseCommand):
    help = "Create a Kafka cluster to monitor, or update its bootstrap servers and poll interval."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Cluster name: letters, digits, '.', '_' and '-'")
        parser.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT]")
        parser.add_argument("--poll-interval", type=int, default=None, metavar="S",
                            help="Seconds between polls (at least 5; default 30 for a new cluster)")

    def handle(self, *args: object, name: str, bootstrap: str, poll_interval: int | None,
               **options: object) -> None:
        try:
            change = upsert_cluster(name.strip(), bootstrap, poll_interval)
        except ClusterConfigError as exc:
            raise CommandError(f"invalid cluster: {exc}", returncode=2) from exc
        cluster = change.cluster
        detail = f"{cluster.bootstrap_servers}, poll every {cluster.poll_interval_seconds} s"
        if change.action == "updated":
            detail += f" (changed: {', '.join(change.changed_fields)})"
        self.stdout.write(f"{change.action} cluster {cluster.name}: {detail}")
