"""The collector paced by the scheduler: automatic collection off while it runs, young
steps with a middle one every MIDDLE_EVERY, a full one at most every FULL_EVERY_NS, and
CPython's own pacing back afterwards with nothing left frozen."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from collector.agent.gc_pacing import FULL_EVERY_NS, MIDDLE_EVERY, CollectionPacer


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generation of every collection while the test runs."""
    seen: list[int] = []

    def note(phase: str, info: dict) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(note)
    try:
        yield seen
    finally:
        gc.callbacks.remove(note)
        gc.unfreeze()
        gc.enable()


def test_while_running_only_the_pacer_collects_and_afterwards_cpython_does_again(collections):
    pacer = CollectionPacer()
    pacer.start()
    assert not gc.isenabled() and gc.get_freeze_count() > 0  # what start-up left alive is frozen
    assert collections == [2]  # start-up's garbage collected before the freeze
    collections.clear()
    garbage = [[] for _ in range(10_000)]
    for item in garbage:
        item.append(item)  # cycles: only a collection frees them
    del garbage
    assert collections == []  # ten thousand allocations started none
    for _ in range(2 * MIDDLE_EVERY):
        pacer.young()
    assert collections == ([0] * (MIDDLE_EVERY - 1) + [1]) * 2
    pacer.stop()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_full_collection_comes_at_most_every_full_every_ns_of_the_monotonic_clock(collections):
    now = [0]
    pacer = CollectionPacer(clock=lambda: now[0])
    pacer.start()
    collections.clear()
    for now[0] in (FULL_EVERY_NS - 1, FULL_EVERY_NS, FULL_EVERY_NS + 1):
        pacer.full()
    assert collections == [2]
    now[0] = 2 * FULL_EVERY_NS
    pacer.full()
    assert collections == [2, 2]
    pacer.stop()


def test_stop_leaves_automatic_collection_off_if_it_was_off_before(collections):
    gc.disable()
    pacer = CollectionPacer()
    pacer.start()
    pacer.stop()
    pacer.stop()  # a second stop changes nothing
    assert not gc.isenabled() and gc.get_freeze_count() == 0


class _InCycle:
    """An object of the old plan in a reference cycle."""

    def __init__(self) -> None:
        self.me = self


def test_a_refreeze_collects_garbage_frozen_with_the_old_plan(collections):
    """What the old plan froze and has become garbage since goes at the refreeze (the
    scheduler's own retired schedules are freed by reference counting: test_scheduler)."""
    old = _InCycle()
    gone = weakref.ref(old)
    pacer = CollectionPacer()
    pacer.start()  # the first plan, frozen
    del old  # garbage since, in a cycle
    pacer.refreeze()
    assert gone() is None  # frozen garbage would be kept for good
    assert gc.get_freeze_count() > 0  # the new plan frozen
    pacer.stop()
