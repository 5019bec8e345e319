"""Counts of judged and bad intervals over a sliding lookback, in bounded memory.

An SLA tracker needs, per path, counts over lookbacks from minutes to a 30-day compliance
window. One entry per interval would be 259,200 entries per path at 10 s; instead each
lookback keeps at most `SLOTS` buckets, each covering a whole number of intervals:

    lookback   5m    30m   1h    6h     3d      30d        (10 s intervals)
    bucket     10s   30s   60s   6min   72min   12h
    slots      30    60    60    60     60      60

A lookback ending at `now` is the bucket holding `now` plus the `slots - 1` before it, so
its far edge is exact to one bucket (1/60 of its length; exact per interval for 5 m at
10 s). Buckets are unsigned 16-bit counters whenever a bucket cannot hold more than 65,535
intervals (always, at 10 s and up to a 30-day window), else 32-bit. Running totals make
reading the lookback that ends at the newest interval O(1).
"""

from __future__ import annotations

import math
from array import array

SLOTS = 60


class Lookback:
    """Judged intervals, bad intervals and (optionally) unavailable share over `length_ns`."""

    __slots__ = (
        "length_ns",
        "slot_ns",
        "slots",
        "head",
        "judged",
        "bad",
        "unavailable",
        "total_judged",
        "total_bad",
        "total_unavailable",
    )

    def __init__(self, length_ns: int, interval_ns: int, track_unavailable: bool = False) -> None:
        intervals = max(1, round(length_ns / interval_ns))
        per_slot = max(1, math.ceil(intervals / SLOTS))
        self.length_ns = length_ns
        self.slot_ns = per_slot * interval_ns
        self.slots = math.ceil(intervals / per_slot)
        code = "H" if per_slot <= 0xFFFF else "I"
        self.head: int | None = None  # bucket number (time // slot_ns) of the newest interval
        self.judged = array(code, bytes(self.slots * array(code).itemsize))
        self.bad = array(code, bytes(self.slots * array(code).itemsize))
        self.unavailable = array("d", bytes(self.slots * 8)) if track_unavailable else None
        self.total_judged = 0
        self.total_bad = 0
        self.total_unavailable = 0.0

    def fresh(self) -> Lookback:
        """An empty lookback of the same geometry."""
        lookback = Lookback.__new__(Lookback)
        lookback.length_ns, lookback.slot_ns, lookback.slots = self.length_ns, self.slot_ns, self.slots
        lookback.head = None
        lookback.judged = array(self.judged.typecode, bytes(len(self.judged) * self.judged.itemsize))
        lookback.bad = array(self.bad.typecode, bytes(len(self.bad) * self.bad.itemsize))
        lookback.unavailable = None if self.unavailable is None else array("d", bytes(self.slots * 8))
        lookback.total_judged = lookback.total_bad = 0
        lookback.total_unavailable = 0.0
        return lookback

    def add(self, start_ns: int, judged: bool, bad: int, unavailable: float) -> None:
        """Count one interval (intervals come in time order); `bad` is how many bad intervals
        it settles (more than 1 for an interval judged with unresolved ones before it)."""
        count_interval((self,), start_ns, judged, bad, unavailable)

    def totals(self, now_ns: int) -> tuple[int, int, float]:
        """(judged, bad, unavailable share summed) over the lookback ending at `now_ns`."""
        if self.head is None:
            return 0, 0, 0.0
        bucket = (now_ns - 1) // self.slot_ns
        gone = min(bucket - self.head, self.slots)
        if gone <= 0:
            return self.total_judged, self.total_bad, self.total_unavailable
        judged, bad, unavailable = self.total_judged, self.total_bad, self.total_unavailable
        for b in range(self.head + 1, self.head + 1 + gone):  # buckets now past the far edge
            i = b % self.slots
            judged -= self.judged[i]
            bad -= self.bad[i]
            if self.unavailable is not None:
                unavailable -= self.unavailable[i]
        return judged, bad, max(unavailable, 0.0)

    def _advance(self, bucket: int) -> None:
        if self.head is None:
            self.head = bucket
            return
        steps = min(bucket - self.head, self.slots)
        for b in range(self.head + 1, self.head + 1 + steps):  # reuse the oldest slots
            i = b % self.slots
            self.total_judged -= self.judged[i]
            self.total_bad -= self.bad[i]
            self.judged[i] = 0
            self.bad[i] = 0
            if self.unavailable is not None:
                self.total_unavailable -= self.unavailable[i]
                self.unavailable[i] = 0.0
        if steps > 0:
            self.head = bucket
        if self.total_unavailable < 1e-9:  # float subtraction leaves dust; keep zero at zero
            self.total_unavailable = 0.0

    def nbytes(self) -> int:
        """Bytes of the counters themselves (the object adds about 300)."""
        arrays = [self.judged, self.bad] + ([self.unavailable] if self.unavailable is not None else [])
        return sum(a.itemsize * len(a) for a in arrays)

    # -- snapshot --------------------------------------------------------------------

    def to_state(self) -> dict:
        return {
            "length_ns": self.length_ns,
            "slot_ns": self.slot_ns,
            "head": self.head,
            "judged": self.judged.tolist(),
            "bad": self.bad.tolist(),
            "unavailable": None if self.unavailable is None else self.unavailable.tolist(),
            "totals": [self.total_judged, self.total_bad, self.total_unavailable],
        }

    def restore(self, state: dict) -> bool:
        """Take the counts of a snapshot with the same geometry; False (and nothing taken) otherwise."""
        same = (
            state.get("length_ns") == self.length_ns
            and state.get("slot_ns") == self.slot_ns
            and len(state.get("judged", ())) == self.slots
            and (state.get("unavailable") is None) == (self.unavailable is None)
        )
        if not same:
            return False
        self.head = state["head"]
        self.judged = array(self.judged.typecode, state["judged"])
        self.bad = array(self.bad.typecode, state["bad"])
        if self.unavailable is not None:
            self.unavailable = array("d", state["unavailable"])
        # The running totals themselves, not re-summed: a restored tracker continues bit for bit.
        self.total_judged, self.total_bad, self.total_unavailable = state["totals"]
        return True


def count_interval(lookbacks: tuple[Lookback, ...], start_ns: int, judged: bool, bad: int, unavailable: float) -> None:
    """`Lookback.add` on each of `lookbacks` in one call: a tracker counts every interval in
    all of its lookbacks, once per path and interval."""
    for lookback in lookbacks:
        bucket = start_ns // lookback.slot_ns
        if bucket != lookback.head:
            lookback._advance(bucket)
        if not judged:
            continue
        i = bucket % lookback.slots
        lookback.judged[i] += 1
        lookback.total_judged += 1
        if bad:
            lookback.bad[i] += bad
            lookback.total_bad += bad
        if unavailable and lookback.unavailable is not None:
            lookback.unavailable[i] += unavailable
            lookback.total_unavailable += unavailable
