"""monitor/collector.py: the cyclic collector runs less often during big, short-lived work
(a poll cycle, the flow graph) and is restored after the last such work of the process."""
from __future__ import annotations

import gc
import weakref

from monitor.collector import THRESHOLD, fewer_collections
from monitor.flow.graph import build_flow_graph


def test_the_collector_is_restored_only_when_the_last_of_overlapping_works_ends():
    before = gc.get_threshold()
    first, second = fewer_collections(), fewer_collections()
    first.__enter__()
    second.__enter__()
    try:
        assert gc.get_threshold() == (max(before[0], THRESHOLD), *before[1:])
        first.__exit__(None, None, None)
        first = None
        assert gc.get_threshold()[0] >= THRESHOLD  # the second still runs
    finally:  # never leave a work counted as running for the tests after this one
        for still in (first, second):
            if still is not None:
                still.__exit__(None, None, None)
    assert gc.get_threshold() == before and gc.isenabled()


def test_the_collector_is_restored_when_the_work_raises():
    before = gc.get_threshold()

    @fewer_collections()
    def fails() -> None:
        raise ValueError("broken input")

    try:
        fails()
    except ValueError:
        pass
    assert gc.get_threshold() == before


def test_the_flow_graph_is_built_with_fewer_collections():
    seen: list[tuple[int, int, int]] = []

    def publishes():  # read by the build: the threshold as the build sees it
        seen.append(gc.get_threshold())
        yield from ()

    build_flow_graph(publishes(), [], 10.0)
    assert seen and seen[0][0] >= THRESHOLD and gc.get_threshold()[0] < THRESHOLD


def test_memory_goes_back_to_the_system_once_when_the_last_work_that_asked_for_it_ends(monkeypatch):
    from monitor import collector

    assert collector.give_memory_back() is True  # glibc (Debian: CI and the Docker image): called for real
    calls = []
    real = collector._malloc_trim

    def recording(pad: int) -> int:
        calls.append(pad)
        return real(pad)

    monkeypatch.setattr(collector, "_malloc_trim", recording)
    poll, graph = fewer_collections(give_back=True), fewer_collections()
    poll.__enter__()
    graph.__enter__()
    poll.__exit__(None, None, None)
    assert calls == []  # the flow graph still runs
    graph.__exit__(None, None, None)
    assert calls == [0]
    with fewer_collections():
        pass
    assert calls == [0]  # work that did not ask gives nothing back


def test_a_poll_cycle_gives_memory_back_after_it(monkeypatch, db):
    from monitor import collector
    from monitor.lag.poll import poll_cluster

    calls = []
    monkeypatch.setattr(collector, "_malloc_trim", lambda pad: calls.append(pad) or 1)
    assert poll_cluster(10 ** 9) is None  # no such cluster: the cycle ends at once
    assert calls == [0]


def test_cyclic_garbage_the_work_left_is_collected_before_memory_goes_back():
    """Garbage in reference cycles that reached the oldest generation (as a closed Kafka
    client's connections do during a long cycle) waits for a full pass, which may be many
    cycles away: the work that gives memory back collects it first."""

    class Node:
        def __init__(self) -> None:
            self.me = self
            self.payload = bytearray(1 << 20)

    with fewer_collections(give_back=True):
        node = Node()
        gone = weakref.ref(node)
        gc.collect()  # it survives a full pass: now in the oldest generation
        del node  # unreachable, held only by its own cycle
        gc.collect(0)  # young passes do not look at the oldest generation
        assert gone() is not None
    assert gone() is None


def test_work_that_does_not_give_memory_back_does_not_force_a_full_collection():
    class Node:
        def __init__(self) -> None:
            self.me = self

    with fewer_collections():
        node = Node()
        gone = weakref.ref(node)
        gc.collect()
        del node
    assert gone() is not None  # left to the collector's own passes (the flow graph's work)
    gc.collect()


def test_the_heap_alive_after_the_first_work_that_gives_memory_back_is_frozen_once(monkeypatch):
    """What is alive once the process's first poll has ended and been collected (modules,
    Django, long-lived caches) is frozen, so the full pass at the end of each later cycle
    skips it; cyclic garbage made after the freeze is still collected."""
    from monitor import collector

    freezes = []
    monkeypatch.setattr(collector, "_frozen", False)
    real_freeze = gc.freeze
    monkeypatch.setattr(gc, "freeze", lambda: freezes.append(1) or real_freeze())
    before = gc.get_freeze_count()
    with fewer_collections():
        pass
    assert freezes == []  # only a work that gives memory back freezes
    with fewer_collections(give_back=True):
        pass
    assert len(freezes) == 1 and gc.get_freeze_count() > before
    frozen = gc.get_freeze_count()

    class Node:
        def __init__(self) -> None:
            self.me = self

    with fewer_collections(give_back=True):
        node = Node()
        gone = weakref.ref(node)
        gc.collect()
        del node
    assert len(freezes) == 1  # once per process
    assert gone() is None  # made after the freeze: collected as before
    assert gc.get_freeze_count() == frozen
