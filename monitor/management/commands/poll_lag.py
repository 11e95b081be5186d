"""`poll_lag [--cluster NAME] --once`: one synchronous poll cycle of every enabled
cluster (or the one named), one line each. Exit 0 even when a cluster is unreachable
(it is marked so); exit 2 on bad arguments."""
from __future__ import annotations

import logging
import time

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitor.lag.clusters import ensure_bootstrap_clusters
from monitor.lag.poll import poll_cluster
from monitor.models import Cluster

log = logging.getLogger(__name__)

PROGRESS_EVERY_SECONDS = 2.0


class Command(BaseCommand):
    help = "Poll consumer-group lag once, synchronously, and print one line per cluster."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--cluster", metavar="NAME", help="Poll only this cluster (also when disabled)")
        parser.add_argument("--once", action="store_true",
                            help="Run one cycle and exit (required; continuous polling is Celery beat's job)")

    def handle(self, *args: object, cluster: str | None, once: bool, **options: object) -> None:
        if not once:
            raise CommandError("--once is required: poll_lag runs one cycle; the Celery beat polls continuously",
                               returncode=2)
        ensure_bootstrap_clusters()
        if cluster is not None:
            found = Cluster.objects.filter(name=cluster).first()
            if found is None:
                known = ", ".join(Cluster.objects.values_list("name", flat=True)) or "none"
                raise CommandError(f"--cluster: no cluster named {cluster!r} (known: {known})", returncode=2)
            targets = [found]
        else:
            targets = list(Cluster.objects.filter(enabled=True).order_by("name"))
            if not targets:
                self.stderr.write("no enabled clusters; add one with add_cluster or MONITOR_BOOTSTRAP_CLUSTERS")
        failed = []
        for target in targets:
            # Clusters are polled one after the other; one failing never stops the rest.
            try:
                outcome = poll_cluster(target.id, progress=self._progress_printer(target.name))
            except Exception as exc:  # noqa: BLE001 - report, then poll the others
                log.exception("polling %s failed", target.name)
                failed.append(target.name)
                self.stdout.write(f"{target.name}: failed ({type(exc).__name__}: {exc})")
                continue
            if outcome is not None:
                self.stdout.write(outcome.summary())
        if failed:
            raise CommandError(f"polling failed for {', '.join(failed)}; see the log", returncode=1)

    def _progress_printer(self, name: str):
        started = time.monotonic()
        last = [started]

        def progress(message: str) -> None:
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY_SECONDS:
                last[0] = now
                self.stderr.write(f"{name}: {message} ({now - started:.1f} s)")

        return progress
