"""`manage.py evaluate_alerts --once`: evaluate every enabled rule, then deliver what is due.

Without ``--once`` it repeats every MONITOR_EVALUATE_INTERVAL_SECONDS until stopped
(a beat-less alternative for small installations).
"""
from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from django.utils import timezone

from monitor.alerts.engine import evaluate
from monitor.pathways.updater import update as update_pathways
from monitor.notify.delivery import sweep_due


class Command(BaseCommand):
    help = "Evaluate every enabled alert rule once, then deliver due notifications."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one evaluation and delivery, then exit")
        parser.add_argument("--no-deliver", action="store_true", help="evaluate only; leave delivery to the workers")

    def handle(self, *args: object, once: bool = False, no_deliver: bool = False, **options: object) -> None:
        while True:
            self._cycle(deliver=not no_deliver)
            if once:
                return
            time.sleep(settings.MONITOR_EVALUATE_INTERVAL_SECONDS)

    def _cycle(self, deliver: bool) -> None:
        derived = update_pathways(timezone.now())
        self.stdout.write(f"pathways: {derived.events} new events, {derived.traces} traces, "
                          f"{derived.transactions} transactions")
        result = evaluate()
        self.stdout.write(f"evaluated {result.summary()}")
        for error in result.errors:
            self.stderr.write(f"error: {error}")
        if deliver:
            sweep = sweep_due()
            self.stdout.write(f"delivered: {sweep.summary()}")
