"""A small, dependency-free client that services copy to report their events.

Standard library only (urllib, json, threading): copy this one file into a service.

    reporter = EventReporter("https://monitor.example.com", token="kmon_...", service="billing")
    reporter.published("evt-1", "OrderPlaced", topic="orders", key="order-42", schema_version=2)
    reporter.processed("evt-1", "OrderPlaced", topic="orders", consumer_group="billing",
                       partition=0, offset=17, traceparent=headers.get("traceparent"))
    reporter.close()            # at shutdown: flushes what is queued, bounded by a timeout

Reporting never blocks the service for long: events go into a bounded in-memory queue
and a background thread sends them in batches (``POST /api/v1/events``). A failed send is
retried with exponential back-off and jitter; retries are safe because the server stores
a report sent again unchanged only once. While the server cannot take reports (it answers
503 with ``Retry-After`` when its database is away, or cannot be reached) the batch goes
back to the front of the queue and is tried again, however long the outage: nothing is
lost unless the queue overflows. When the queue is full the oldest reports are dropped
and counted in ``stats["dropped"]`` rather than slowing the service down.
"""
from __future__ import annotations

import datetime as _dt
import gzip
import json
import logging
import random
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from typing import Any

__all__ = ["EventReporter", "new_traceparent", "child_traceparent", "parse_traceparent"]

log = logging.getLogger("monitor.client")

STAGES = ("outbox", "published", "consumed", "processed", "failed", "dead_lettered")  # = monitor.choices.Stage (tested)
# Statuses worth retrying: the server or something in front of it is busy or restarting.
_RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _iso(value: Any) -> str:
    if value is None:
        return _now_iso()
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        return value.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, (int, float)):  # seconds since the epoch
        return _dt.datetime.fromtimestamp(value, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value)


def new_traceparent(sampled: bool = True) -> str:
    """A fresh W3C traceparent: a new trace with a new root span."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-{'01' if sampled else '00'}"


def parse_traceparent(traceparent: str) -> tuple[str, str, str] | None:
    """(trace_id, parent_id, flags) of a well-formed traceparent, else None."""
    parts = (traceparent or "").strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    return parts[1], parts[2], parts[3]


def child_traceparent(traceparent: str | None) -> str:
    """The traceparent to put on a message caused by ``traceparent``: same trace, new span.

    Starts a new trace when ``traceparent`` is missing or malformed.
    """
    parsed = parse_traceparent(traceparent or "")
    if parsed is None:
        return new_traceparent()
    trace_id, _, flags = parsed
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"


class EventReporter:
    """Batches event reports and sends them from a background thread.

    ``endpoint`` is the monitor's base URL (``/api/v1/events`` is appended) or the full
    URL of the events endpoint. Thread-safe; create one per process.
    """

    def __init__(
        self,
        endpoint: str,
        token: str,
        service: str,
        *,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        max_queue: int = 20_000,
        timeout: float = 5.0,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        gzip_body: bool = True,
    ) -> None:
        if not service:
            raise ValueError("service is required")
        endpoint = endpoint.rstrip("/")
        self.url = endpoint if endpoint.endswith("/api/v1/events") else endpoint + "/api/v1/events"
        self.service = service
        self.batch_size = max(1, min(batch_size, 1000))
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.gzip_body = gzip_body
        self._token = token
        self._queue: deque[dict[str, Any]] = deque()
        self._max_queue = max_queue
        self._lock = threading.Lock()
        self._wakeup = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closing = threading.Event()
        self._in_flight = 0
        self.stats = {"sent": 0, "duplicates": 0, "dropped": 0, "rejected": 0, "retries": 0}
        self._thread = threading.Thread(target=self._run, name="event-reporter", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:  # never show the token
        return f"EventReporter(url={self.url!r}, service={self.service!r})"

    # -- reporting -------------------------------------------------------------
    def report(
        self,
        event_id: str,
        type: str,  # noqa: A002 - the contract's field name
        stage: str,
        *,
        timestamp: Any = None,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        key: str | None = None,
        consumer_group: str | None = None,
        schema_version: int | None = None,
        traceparent: str | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
        parent_span_id: str | None = None,
        attributes: dict[str, Any] | None = None,
        service: str | None = None,
    ) -> None:
        """Queue one report; returns at once. Raises ValueError only for a bad ``stage``.

        ``parent_span_id``: on a publication, the span of the message that caused it
        (with ``child_traceparent`` for the new message), so the trace view draws a tree.
        """
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}")
        event: dict[str, Any] = {
            "event_id": str(event_id),
            "type": type,
            "service": service or self.service,
            "stage": stage,
            "timestamp": _iso(timestamp),
        }
        optional = {
            "topic": topic, "partition": partition, "offset": offset, "key": key,
            "consumer_group": consumer_group, "schema_version": schema_version,
            "traceparent": traceparent, "trace_id": trace_id, "span_id": span_id,
            "parent_span_id": parent_span_id, "attributes": attributes,
        }
        event.update({name: value for name, value in optional.items() if value is not None and value != ""})
        with self._lock:
            if len(self._queue) >= self._max_queue:
                self._queue.popleft()
                self.stats["dropped"] += 1
            self._queue.append(event)
            self._idle.clear()
            full = len(self._queue) >= self.batch_size
        if full:
            self._wakeup.set()

    def outbox(self, event_id: str, type: str, **fields: Any) -> None:  # noqa: A002
        """The event was written to this service's outbox table inside the business
        transaction; report ``published`` with the same ``event_id`` when the relay has
        sent it. Call it right after the transaction commits."""
        self.report(event_id, type, "outbox", **fields)

    def published(self, event_id: str, type: str, **fields: Any) -> None:  # noqa: A002
        self.report(event_id, type, "published", **fields)

    def consumed(self, event_id: str, type: str, **fields: Any) -> None:  # noqa: A002
        self.report(event_id, type, "consumed", **fields)

    def processed(self, event_id: str, type: str, **fields: Any) -> None:  # noqa: A002
        self.report(event_id, type, "processed", **fields)

    def failed(self, event_id: str, type: str, **fields: Any) -> None:  # noqa: A002
        self.report(event_id, type, "failed", **fields)

    def dead_lettered(self, event_id: str, type: str, **fields: Any) -> None:  # noqa: A002
        self.report(event_id, type, "dead_lettered", **fields)

    # -- lifecycle -------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far was sent (or given up); True if it was."""
        self._wakeup.set()
        return self._idle.wait(timeout)

    def close(self, timeout: float = 10.0) -> bool:
        """Send what is queued (waiting at most ``timeout``) and stop the thread."""
        flushed = self.flush(timeout)
        self._closing.set()
        self._wakeup.set()
        self._thread.join(timeout=1.0)
        return flushed

    def __enter__(self) -> "EventReporter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- background thread -----------------------------------------------------
    def _take_batch(self) -> list[dict[str, Any]]:
        with self._lock:
            count = min(self.batch_size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight = len(batch)
            return batch

    def _run(self) -> None:
        while not self._closing.is_set():
            self._wakeup.wait(self.flush_interval)
            self._wakeup.clear()
            while True:
                batch = self._take_batch()
                if not batch:
                    break
                keep = False
                try:
                    keep = not self._send_with_retries(batch)
                except Exception:  # noqa: BLE001 - the reporter must never kill its thread
                    log.exception("sending %d event reports failed", len(batch))
                    self.stats["dropped"] += len(batch)
                finally:
                    with self._lock:
                        self._in_flight = 0
                        if keep:
                            self._requeue(batch)
                if keep:
                    break  # the server is away: wait for the next flush, then start over
            with self._lock:
                if not self._queue and not self._in_flight:
                    self._idle.set()

    def _requeue(self, batch: list[dict[str, Any]]) -> None:
        """Put a batch the server could not take back in front (the lock is held)."""
        room = self._max_queue - len(self._queue)
        if room < len(batch):
            self.stats["dropped"] += len(batch) - max(room, 0)
            batch = batch[len(batch) - max(room, 0):]
        self._queue.extendleft(reversed(batch))

    def _send_with_retries(self, batch: list[dict[str, Any]]) -> bool:
        """True when the batch is done with (sent, rejected or dropped); False when the
        server stayed unavailable through every retry and the batch should be kept."""
        attempt = 0
        while True:
            status, body, retry_after = self._post(batch)
            if status == 202:
                result = json.loads(body or b"{}")
                self.stats["sent"] += int(result.get("accepted", 0))
                self.stats["duplicates"] += int(result.get("duplicates", 0))
                return True
            if status == 413 and len(batch) > 1:
                half = len(batch) // 2
                first = self._send_with_retries(batch[:half])
                second = first and self._send_with_retries(batch[half:])
                if first and not second:
                    batch[:] = batch[half:]  # the first half is stored: keep only the second
                return second
            if status is not None and status not in _RETRYABLE_STATUS:
                # 400/401/403/422: sending the same batch again cannot succeed.
                self.stats["rejected"] += len(batch)
                log.warning("event reports rejected with HTTP %s: %s", status, body[:500].decode(errors="replace"))
                return True
            attempt += 1
            if self._closing.is_set() and attempt > 1:
                self.stats["dropped"] += len(batch)
                log.warning("giving up on %d event reports at shutdown after %d attempts", len(batch), attempt)
                return True
            if attempt > self.max_retries:
                log.warning("the monitor did not take %d event reports after %d attempts; keeping them queued",
                            len(batch), attempt)
                return False
            self.stats["retries"] += 1
            delay = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
            if retry_after is not None:
                delay = min(self.backoff_max, max(retry_after, delay))
            self._closing.wait(delay * random.uniform(0.5, 1.0))

    def _post(self, batch: list[dict[str, Any]]) -> tuple[int | None, bytes, float | None]:
        body = json.dumps({"events": batch}, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self._token}"}
        if self.gzip_body:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read(), None
        except urllib.error.HTTPError as exc:
            retry_after = (exc.headers.get("Retry-After") or "") if exc.headers else ""
            return exc.code, exc.read() or b"", float(retry_after) if retry_after.isdigit() else None
        except (urllib.error.URLError, OSError) as exc:
            log.info("event report endpoint unreachable: %s", getattr(exc, "reason", exc))
            return None, b"", None
