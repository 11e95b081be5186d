"""Celery beat's scheduler with a heartbeat and a lock (``beat_scheduler`` in
``monitor.celery``).

Every ``MONITOR_HEARTBEAT_INTERVAL_SECONDS`` the scheduler records its tick through
:func:`monitor.liveness.hold_scheduler_lock`. Only the beat holding that lock sends
tasks: a second beat started by mistake (or as a standby) sends nothing and takes over
three intervals after the first one stopped ticking. While the database cannot be
reached, a holder keeps sending until its own lease runs out (the tasks need the
database anyway; the lock must not make an outage worse).
"""
from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from typing import Any

from celery.beat import PersistentScheduler

log = logging.getLogger(__name__)


class LockedScheduler(PersistentScheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._holding = False
        self._announced = False
        self._held_until = 0.0  # monotonic: our own view of the lease
        self._next_check = 0.0
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        from monitor import liveness

        interval = liveness.interval_seconds()
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + interval
            self._refresh(now, interval)
        if not self._holding:
            return interval  # standby: another beat sends the tasks
        return min(super().tick(*args, **kwargs), max(self._next_check - time.monotonic(), 0.1))

    def close(self) -> None:
        super().close()
        if self._holding:
            from monitor import liveness

            try:
                liveness.release_scheduler_lock(self.owner)
            except Exception:  # noqa: BLE001 - the lease expires by itself
                log.warning("could not release the scheduler lock; another beat takes over after its lease")

    def _refresh(self, now: float, interval: float) -> None:
        from django.db import close_old_connections, connection

        from monitor import liveness

        try:
            close_old_connections()
            holding = liveness.hold_scheduler_lock(self.owner)
        except Exception as exc:  # noqa: BLE001 - the database may be away; keep ticking
            connection.close()
            holding = self._holding and now < self._held_until
            log.warning("scheduler heartbeat not recorded (%s); %s", type(exc).__name__,
                        "still sending until the lease ends" if holding else "not sending tasks")
            self._holding = holding
            return
        if holding != self._holding or not self._announced:
            log.warning("%s (%s)", "this beat holds the scheduler lock and sends the tasks" if holding else
                        "another beat holds the scheduler lock; this one sends nothing and waits", self.owner)
            self._announced = True
        if holding:
            self._held_until = now + liveness.STALE_AFTER_INTERVALS * interval
        self._holding = holding
