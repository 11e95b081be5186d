"""Fewer passes of Python's cyclic garbage collector while a big, short-lived object graph
is built: a poll cycle of 10,000 groups (millions of objects, a sixth of the cycle went to
the collector's passes) or the flow graph of 10,000 services (some 100,000 objects, 40 % of
the work). Those objects all live until the work ends and reference counting frees them
then, so the passes traverse them again and again and free nothing.

``fewer_collections()`` (a context manager and a decorator) raises the young generation's
threshold from Python's 700 allocations to :data:`THRESHOLD` while any such work of the
process runs (threads may do several at once) and restores it after the last. The
collector stays on: cyclic garbage is still collected, a little later.
"""
from __future__ import annotations

import gc
import threading
from contextlib import ContextDecorator

THRESHOLD = 50_000
"""Allocations between young-generation collections while the work runs."""

_lock = threading.Lock()
_running = 0
_saved: tuple[int, int, int] | None = None


class fewer_collections(ContextDecorator):  # noqa: N801 - used like a function, as contextlib's are
    def __enter__(self) -> "fewer_collections":
        global _running, _saved
        with _lock:
            if _running == 0:
                _saved = gc.get_threshold()
                gc.set_threshold(max(_saved[0], THRESHOLD), *_saved[1:])
            _running += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        global _running, _saved
        with _lock:
            _running -= 1
            if _running == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
