"""The cyclic garbage collector, run in small steps at times the scheduler chooses.

CPython starts a young collection when tracked allocations outnumber deallocations by 700.
A prober allocates and frees several small tuples per probe (matching keys, deadlines), so
the count barely moves while the young list grows by ~50,000 objects a second at 10,000
targets; the collection that finally comes walks them all at once and held the loop for
milliseconds, up to ~50 ms: it set the agent's scheduling lag p99 (2-16 ms at 10,000 echo
targets, against 0.3 ms with the collector off). Each small tuple is walked once, young,
and then no longer tracked; so walking the young generation often walks the same objects,
a few hundred at a time.

While the scheduler runs, automatic collection is off and `CollectionPacer` collects instead:
the young generation at every housekeeping turn (`young`), the middle one every
`MIDDLE_EVERY` of those, and the whole heap at the end of a window pass (`full`), when the
windows just handed out have gone, at most every FULL_EVERY_NS (it walks every open
window's tally: ~10 ms at 10,000 targets; CPython's own pacing ran one every ~30 s). What
is alive at the start (the plan: schedules, sessions, window builders) is frozen first, so
no collection walks it. Other threads' garbage is collected by the same steps: automatic
collection is process-wide.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

MIDDLE_EVERY = 10  # young collections per middle one, as CPython's own default threshold
FULL_EVERY_NS = 60_000_000_000


class CollectionPacer:
    """Between `start` and `stop`, collections happen when this pacer is told to."""

    __slots__ = ("_clock", "_was_enabled", "_young_since_middle", "_next_full_ns", "running")

    def __init__(self, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock = clock  # monotonic: a clock stepped back must not hold full collections off
        self._was_enabled = gc.isenabled()
        self._young_since_middle = 0
        self._next_full_ns = 0
        self.running = False

    def start(self) -> None:
        """Collect what start-up left (so no garbage is frozen), freeze the survivors, and
        take collection over from the allocation count."""
        self._was_enabled = gc.isenabled()
        gc.collect()
        gc.freeze()
        gc.disable()
        self._next_full_ns = self._clock() + FULL_EVERY_NS
        self.running = True

    def refreeze(self) -> None:
        """After a reload: the new plan's objects frozen as the first were. Unfrozen first, so
        that garbage frozen with the old plan is collected now rather than kept for good (the
        schedules a reload retires are still alive here: the scheduler breaks their cycle with
        their sessions once their windows are out, and reference counting frees them)."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    def young(self) -> None:
        """A step: the young generation, or every MIDDLE_EVERY steps the middle one with it."""
        self._young_since_middle += 1
        if self._young_since_middle >= MIDDLE_EVERY:
            self._young_since_middle = 0
            gc.collect(1)
        else:
            gc.collect(0)

    def full(self) -> None:
        """The whole heap, if FULL_EVERY_NS has passed since the last time."""
        now_ns = self._clock()
        if now_ns >= self._next_full_ns:
            gc.collect()
            self._young_since_middle = 0
            self._next_full_ns = now_ns + FULL_EVERY_NS

    def stop(self) -> None:
        """Back to CPython's own pacing, as it was before `start`; nothing stays frozen."""
        if not self.running:
            return
        self.running = False
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()
