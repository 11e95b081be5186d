"""Fewer passes of Python's cyclic garbage collector while a big, short-lived object graph
is built: a poll cycle of 10,000 groups (millions of objects, a sixth of the cycle went to
the collector's passes) or the flow graph of 10,000 services (some 100,000 objects, 40 % of
the work). Those objects all live until the work ends and reference counting frees them
then, so the passes traverse them again and again and free nothing.

``fewer_collections()`` (a context manager and a decorator) raises the young generation's
threshold from Python's 700 allocations to :data:`THRESHOLD` while any such work of the
process runs (threads may do several at once) and restores it after the last. The
collector stays on: cyclic garbage is still collected, a little later.

``fewer_collections(give_back=True)`` (the poll cycle) also hands the memory the work freed
back to the system when the last such work ends, in two steps:

- a full collection first: the work leaves cyclic garbage behind (each cycle's closed Kafka
  client is ~300 objects in cycles: its connections, selector, protocol buffers and
  metrics), which reference counting never frees and which, left to the collector's rare
  full passes, stayed resident across cycles while the next ones allocated around it. A
  10,000-group worker's RSS kept rising for ~20 cycles after its data stopped growing and
  settled ~30 MiB higher; with the collection it is flat once the status history is full.
  It runs only when the last overlapping work of the process ends, and then covers the
  whole process (in a worker that runs other tasks on threads beside the polls, a pass over
  their objects too). A pass over the process's long-lived heap (Django and the libraries
  alone are ~87,000 tracked objects, scattered in memory: 30-50 ms on the 2-core machine,
  whatever the cluster's size, a sixth of a 50-group cycle) would repeat at every cycle, so
  after the first one that heap is frozen (``gc.freeze()``, once per process: what is
  alive when the first such work has ended and been collected lives as long as the
  process); later passes cover only what came after it. Objects frozen then are never
  collected as cyclic garbage, should they become some: a one-off, at most that heap.
- then the C allocator's freed heap pages go back to the system (glibc's ``malloc_trim``;
  a few milliseconds; nothing where the C library has no such call): it keeps them for
  reuse, and a worker that builds and frees hundreds of megabytes each cycle otherwise
  holds on to whatever the heap's holes add up to.
"""
from __future__ import annotations

import ctypes
import gc
import threading
from collections.abc import Callable
from contextlib import ContextDecorator
from typing import cast

THRESHOLD = 50_000
"""Allocations between young-generation collections while the work runs."""

_lock = threading.Lock()
_running = 0
_saved: tuple[int, int, int] | None = None
_give_back_at_end = False


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the interpreter runs on
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return cast(Callable[[int], int], trim)


_malloc_trim = _find_malloc_trim()


def give_memory_back() -> bool:
    """Free heap pages back to the system; False where the C library cannot."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True


class fewer_collections(ContextDecorator):  # noqa: N801 - used like a function, as contextlib's are
    def __init__(self, give_back: bool = False) -> None:
        self.give_back = give_back

    def __enter__(self) -> "fewer_collections":
        global _running, _saved, _give_back_at_end
        with _lock:
            if _running == 0:
                _saved = gc.get_threshold()
                gc.set_threshold(max(_saved[0], THRESHOLD), *_saved[1:])
            _running += 1
            _give_back_at_end = _give_back_at_end or self.give_back
        return self

    def __exit__(self, *exc_info: object) -> None:
        global _running, _saved, _give_back_at_end
        with _lock:
            _running -= 1
            last = _running == 0
            if last and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
            give_back = last and _give_back_at_end
            if last:
                _give_back_at_end = False
        if give_back:
            gc.collect()  # the work's cyclic garbage first: what it frees can then go back too
            _freeze_once()
            give_memory_back()


_frozen = False


def _freeze_once() -> None:
    """After the process's first full collection at the end of a work: what is alive then
    (modules, Django, the caches the first cycle filled) lives as long as the process, and
    moves to the collector's permanent generation, which its full passes skip."""
    global _frozen
    with _lock:
        if _frozen:
            return
        _frozen = True
    gc.freeze()
