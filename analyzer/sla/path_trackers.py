"""The per-path SLA trackers of one slice, kept as columns and updated an interval at a time.

A slice's paths close their intervals together (analyzer.store.memory), and nearly every
path is healthy in nearly every interval. One `analyzer.sla.verdicts.SlaTracker` object per
path judged them one by one (~10 us a path and interval); here every path of the slice is a
row (a slot) of numpy columns, and `add_interval` judges and counts all the rows of one
interval together.

Rows hold *clean* trackers only: no bad interval and no unavailability anywhere in their
lookbacks, and no violation waiting on an unresolved pool (`events_bad`). For such a tracker
a lookback is only its counts of judged intervals, the status of an interval is `ok` (or
`no-data` without probes), and its state is a few numbers, the pooled events of its
unresolved intervals (analyzer.sla.resolution) and its newest interval, kept for the
objective verdicts built when read. Anything else goes through a real `SlaTracker`:

- a row whose interval is bad, unavailable, or comes after missing interval slots, and an
  interval fed alone (`add`: a late window, or several windows of a path in one interval),
  is *promoted*: its state becomes an `SlaTracker` that takes the interval and is kept
  while it is not clean (a path with a violation keeps its object until the violation has
  left its 30-day window);
- a promoted tracker that is clean again is taken back into its row.

Reads (`verdict`, `to_state`) build the row's `SlaTracker` and ask it, so verdicts and
snapshots are those of `SlaTracker`, with one definition of each;
tests/analyzer/sla/test_path_trackers.py feeds random intervals through both and compares
verdicts and states after every interval.

Memory per path: the judged counts of 5 burn lookbacks and the compliance window as 16-bit
counters (~840 bytes at 10 s intervals with the default policy), ~100 bytes of numbers, and
references to its newest window and pool: ~1.1 KB, against ~5.3 KB of an `SlaTracker`.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import numpy as np

from analyzer.sla.hysteresis import Hysteresis
from analyzer.sla.policies import AVAILABILITY, LOSS, TWO_WAY_DELAY, SlaPolicy
from analyzer.sla.series import MIN_P99_REPLIES, IntervalStats, window_stats
from analyzer.sla.verdicts import (
    EVENT_OBJECTIVES,
    Events,
    ObjectiveVerdict,
    PooledEvents,
    SlaTracker,
    SlaVerdict,
    _delay_percentile,
    _events_of,
    _observed,
)
from collector.contract.records import RTT_BUCKETS_NS, PathKey, PathWindow

NO_VALUE = np.iinfo(np.int64).min  # an unset time or lookback head (None in SlaTracker)
# Status codes in the order of severity, then no-data; "" is a hysteresis without a run.
STATUS_NAMES = ("ok", "at-risk", "breached", "no-data", "")
OK, NO_DATA, NO_RUN = 0, 3, 4
KIND_NAMES = ("", "worse", "better", "to-no-data", "from-no-data")
WORSE, BETTER, TO_NO_DATA, FROM_NO_DATA = 1, 2, 3, 4
_STATUS_CODE = {name: code for code, name in enumerate(STATUS_NAMES)}
_KIND_CODE = {name: code for code, name in enumerate(KIND_NAMES)}
_RTT_UPPER_NS = np.array(RTT_BUCKETS_NS, np.int64)
FIRST_ROWS = 64


def _optional(value: np.int64) -> int | None:
    return None if value == NO_VALUE else int(value)


def _stored(value: int | None) -> int:
    return NO_VALUE if value is None else value


class _JudgedCounts:
    """One lookback's judged intervals per row (a clean tracker's only counts)."""

    __slots__ = ("slot_ns", "slots", "typecode", "head", "judged", "total")

    def __init__(self, geometry, rows: int) -> None:
        self.slot_ns: int = geometry.slot_ns
        self.slots: int = geometry.slots
        self.typecode: str = geometry.judged.typecode
        self.head = np.full(rows, NO_VALUE, np.int64)
        self.judged = np.zeros((rows, self.slots), np.uint16 if self.typecode == "H" else np.uint32)
        self.total = np.zeros(rows, np.int64)

    def grow(self, rows: int) -> None:
        extra = rows - len(self.head)
        self.head = np.concatenate((self.head, np.full(extra, NO_VALUE, np.int64)))
        self.judged = np.concatenate((self.judged, np.zeros((extra, self.slots), self.judged.dtype)))
        self.total = np.concatenate((self.total, np.zeros(extra, np.int64)))

    def clear(self, row: int) -> None:
        self.head[row] = NO_VALUE
        self.judged[row] = 0
        self.total[row] = 0

    def count(self, rows: np.ndarray, starts: np.ndarray, judged: np.ndarray) -> None:
        """`analyzer.sla.lookback.count_interval` for each row (each at most once), with
        neither bad intervals nor unavailability to count."""
        buckets = starts // self.slot_ns
        head = self.head[rows]
        fresh = head == NO_VALUE
        steps = np.minimum(buckets - np.where(fresh, buckets, head), self.slots)
        moving = steps > 0
        if moving.any():  # buckets now past the far edge: their slots are reused
            moving_rows, moving_head, moving_steps = rows[moving], head[moving], steps[moving]
            for k in range(1, int(moving_steps.max()) + 1):
                chosen = moving_steps >= k
                at, slot = moving_rows[chosen], (moving_head[chosen] + k) % self.slots
                self.total[at] -= self.judged[at, slot]
                self.judged[at, slot] = 0
        self.head[rows] = np.where(moving | fresh, buckets, head)
        counted = rows[judged]
        slot = buckets[judged] % self.slots
        self.judged[counted, slot] += 1
        self.total[counted] += 1


class PathTrackers:
    """The path trackers of one slice under `policy`: `new(path)` gives a path its row."""

    def __init__(self, policy: SlaPolicy, interval_s: float) -> None:
        template = SlaTracker(policy, interval_s)  # the geometry and constants, defined once
        self._template = template  # never fed: each row's tracker object is made `fresh` from it
        self.policy = policy
        self.interval_s = interval_s
        self.interval_ns = template.interval_ns
        self.unavailable_loss = policy.unavailable_loss
        self._hold = policy.hysteresis_intervals
        self._pool_limit = template._pool_limit
        self._counts = tuple(_JudgedCounts(lookback, FIRST_ROWS) for lookback in template._lookbacks)
        rows = FIRST_ROWS
        self.last_start = np.full(rows, NO_VALUE, np.int64)
        self.last_end = np.full(rows, NO_VALUE, np.int64)
        self.first_start = np.full(rows, NO_VALUE, np.int64)
        self.intervals = np.zeros(rows, np.int64)
        self.pooled_count = np.zeros(rows, np.int64)
        self.status = np.full(rows, NO_DATA, np.int8)
        self.since = np.zeros(rows, np.int64)
        self.run_kind = np.zeros(rows, np.int8)
        self.run_status = np.full(rows, NO_RUN, np.int8)
        self.run_start = np.zeros(rows, np.int64)
        self.run_count = np.zeros(rows, np.int64)
        self.pooled: list[PooledEvents | None] = [None] * rows
        # the newest interval: its window (judged on its own stats), or (stats, events) it was
        # judged on, or its objective verdicts once built (a restored tracker's)
        self.latest: list[PathWindow | tuple[IntervalStats, Events] | tuple[ObjectiveVerdict, ...] | None]
        self.latest = [None] * rows
        self.paths: list[PathKey | None] = [None] * rows
        self.promoted: dict[int, SlaTracker] = {}  # rows whose tracker is not clean, as objects
        self._free: list[int] = []
        self._used = 0
        self._delay = policy.objective(TWO_WAY_DELAY)
        self._loss = policy.objective(LOSS)
        availability = policy.objective(AVAILABILITY)
        # an available interval (every clean row's) meets availability unless its bound is above 1
        self._available_is_bad = availability is not None and not availability.bound <= 1.0
        # one-way delay and delay variation count only with enough replies for a p99
        self._p99_objectives = tuple(o for o in policy.objectives if o.name not in (*EVENT_OBJECTIVES, AVAILABILITY))

    # -- rows ------------------------------------------------------------------------------

    def new(self, path: PathKey | None) -> PathTracker:
        """A fresh tracker's row for `path`."""
        if self._free:
            row = self._free.pop()
        else:
            if self._used == len(self.last_start):
                self._grow(2 * self._used)
            row = self._used
            self._used += 1
        self.paths[row] = path
        return PathTracker(self, row)

    def release(self, row: int) -> None:
        """The row's path is forgotten: the row is cleared for another."""
        self._reset(row)
        self.paths[row] = None
        self._free.append(row)

    def _reset(self, row: int) -> None:
        """The row as a new path's: nothing counted, not promoted."""
        self.promoted.pop(row, None)
        for counts in self._counts:
            counts.clear(row)
        for unset in (self.last_start, self.last_end, self.first_start):
            unset[row] = NO_VALUE
        for column in (self.intervals, self.pooled_count, self.since, self.run_kind, self.run_start, self.run_count):
            column[row] = 0
        self.status[row], self.run_status[row] = NO_DATA, NO_RUN
        self.pooled[row] = self.latest[row] = None

    def _grow(self, rows: int) -> None:
        extra = rows - len(self.last_start)
        for name, fill in (
            ("last_start", NO_VALUE),
            ("last_end", NO_VALUE),
            ("first_start", NO_VALUE),
            ("intervals", 0),
            ("pooled_count", 0),
            ("status", NO_DATA),
            ("since", 0),
            ("run_kind", 0),
            ("run_status", NO_RUN),
            ("run_start", 0),
            ("run_count", 0),
        ):
            column = getattr(self, name)
            setattr(self, name, np.concatenate((column, np.full(extra, fill, column.dtype))))
        for counts in self._counts:
            counts.grow(rows)
        self.pooled.extend([None] * extra)
        self.latest.extend([None] * extra)
        self.paths.extend([None] * extra)

    # -- intervals -------------------------------------------------------------------------

    def add(self, row: int, stats: IntervalStats) -> None:
        """One interval of one row alone, through its tracker object (`SlaTracker.add`)."""
        tracker = self._promote(row)
        tracker.add(stats)
        self._demote_if_clean(row, tracker)

    def add_interval(self, rows: Sequence[int], windows: Sequence[PathWindow]) -> None:
        """One interval of several rows, one window each (a row at most once): what
        `SlaTracker.add(window_stats(window))` does on each row's tracker."""
        if self.promoted:
            promoted = self.promoted
            apart = [i for i, row in enumerate(rows) if row in promoted]
            if apart:
                kept = [i for i, row in enumerate(rows) if row not in promoted]
                for i in apart:  # may go back into their rows: fed apart from the others
                    self.add(rows[i], window_stats(windows[i], self.unavailable_loss))
                rows = [rows[i] for i in kept]
                windows = [windows[i] for i in kept]
        if rows:
            self._add_clean(np.array(rows, np.int64), windows)

    def _add_clean(self, rows: np.ndarray, windows: Sequence[PathWindow]) -> None:
        n = len(windows)
        starts = np.fromiter((w.start_ns for w in windows), np.int64, n)
        last_start = self.last_start[rows]
        newer = (last_start == NO_VALUE) | (starts > last_start)  # an older interval is ignored
        last_end = self.last_end[rows]
        after_gap = (last_end != NO_VALUE) & (starts - last_end >= self.interval_ns)
        sent = np.fromiter((w.sent for w in windows), np.int64, n)
        lost = np.fromiter((w.lost_forward + w.lost_reverse + w.lost_unknown for w in windows), np.int64, n)
        judged = sent > 0
        ratio = np.divide(lost, sent, out=np.zeros(n), where=judged)
        unavailable = judged & (ratio > self.unavailable_loss)
        bad = np.zeros(n, bool) if not self._available_is_bad else judged.copy()
        unresolved = np.zeros(n, bool)
        if self._loss is not None:
            above = judged & (ratio > self._loss.bound)
            self._judge_events(np.flatnonzero(above), windows, self._loss.name, bad, unresolved)
        if self._delay is not None:
            self._judge_delay(windows, judged, bad, unresolved)
        if self._p99_objectives:
            received = np.fromiter((w.received for w in windows), np.int64, n)
            for i in np.flatnonzero(judged & (received >= MIN_P99_REPLIES)).tolist():
                stats = window_stats(windows[i], self.unavailable_loss)
                if any(_observed(self.policy, o, stats, stats)[1] is False for o in self._p99_objectives):
                    bad[i] = True
        pooled_list = self.pooled
        was_pooled = np.fromiter((pooled_list[row] is not None for row in rows.tolist()), bool, n)
        slow = newer & (after_gap | unavailable | (bad & ~was_pooled))
        latest: list = list(windows)
        new_pools: dict[int, PooledEvents | None] = {}
        for i in np.flatnonzero(newer & judged & was_pooled & ~slow).tolist():  # a pool goes on
            row = int(rows[i])
            stats = window_stats(windows[i], self.unavailable_loss)
            events = pooled_list[row].plus(stats)  # type: ignore[union-attr]
            verdicts = [_observed(self.policy, o, stats, events) for o in self.policy.objectives]
            if any(met is False for _, met in verdicts):
                slow[i] = True
                continue
            still = any(
                met is None and observed is not None and o.name in EVENT_OBJECTIVES
                for o, (observed, met) in zip(self.policy.objectives, verdicts)
            )
            count = int(self.pooled_count[row]) + 1
            new_pools[i] = events if still and count < self._pool_limit else None
            latest[i] = (stats, events)
        for i in np.flatnonzero(slow).tolist():
            self.add(int(rows[i]), window_stats(windows[i], self.unavailable_loss))
        fast = newer & ~slow
        if not fast.any():
            return
        for i in np.flatnonzero(fast & judged & ~was_pooled & unresolved).tolist():  # a pool starts
            new_pools[i] = _events_of(window_stats(windows[i], self.unavailable_loss))
        for i, events in new_pools.items():
            pooled_list[int(rows[i])] = events
        index = np.flatnonzero(fast)
        rows, starts, judged = rows[index], starts[index], judged[index]
        ends = np.fromiter((windows[i].end_ns for i in index.tolist()), np.int64, len(index))
        pooling = np.fromiter((pooled_list[row] is not None for row in rows.tolist()), bool, len(index))
        counted = self.pooled_count[rows]
        self.pooled_count[rows] = np.where(pooling, np.where(judged, counted + 1, counted), 0)
        first = self.first_start[rows]
        self.first_start[rows] = np.where(judged & (first == NO_VALUE), starts, first)
        for counts in self._counts:
            counts.count(rows, starts, judged)
        for row, i in zip(rows.tolist(), index.tolist()):
            self.latest[row] = latest[i]
        self.last_start[rows] = starts
        self.last_end[rows] = np.maximum(ends, starts + 1)
        self.intervals[rows] += 1
        self._step(rows, np.where(judged, OK, NO_DATA).astype(np.int8), starts)

    def _judge_events(
        self, indices: np.ndarray, windows: Sequence[PathWindow], name: str, bad: np.ndarray, unresolved: np.ndarray
    ) -> None:
        """Rows whose loss (or delay) reads above its bound: violated or unresolved, as
        `_observed` says (analyzer.sla.resolution)."""
        objective = self.policy.objective(name)
        for i in indices.tolist():
            stats = window_stats(windows[i], self.unavailable_loss)
            observed, met = _observed(self.policy, objective, stats, stats)  # type: ignore[arg-type]
            if met is False:
                bad[i] = True
            elif met is None and observed is not None:
                unresolved[i] = True

    def _judge_delay(
        self, windows: Sequence[PathWindow], judged: np.ndarray, bad: np.ndarray, unresolved: np.ndarray
    ) -> None:
        """Two-way delay: the rows whose percentile's bucket lies within the bound meet it;
        the others are judged by `_delay_percentile` itself."""
        objective = self._delay
        assert objective is not None
        buckets = np.array([w.rtt_buckets for w in windows], np.int64).reshape(len(windows), -1)
        total = buckets.sum(axis=1)
        share = (objective.percentile or 100.0) / 100
        needed = share * total.astype(float) * (1 - 1e-12)
        reached = np.cumsum(buckets[:, : len(RTT_BUCKETS_NS)], axis=1) >= needed[:, None]
        within = reached.any(axis=1) & (_RTT_UPPER_NS[reached.argmax(axis=1)] <= round(objective.bound * 1e9))
        for i in np.flatnonzero(judged & (total > 0) & ~within).tolist():
            _, met = _delay_percentile(windows[i].rtt_buckets, objective.percentile, objective.bound)
            if met is False:
                bad[i] = True
            else:
                unresolved[i] = True

    def _step(self, rows: np.ndarray, raw: np.ndarray, starts: np.ndarray) -> None:
        """`Hysteresis.step(raw, start)` on each row."""
        status = self.status[rows]
        self.run_count[rows[raw == status]] = 0
        differ = raw != status
        if not differ.any():
            return
        rows, raw, starts, status = rows[differ], raw[differ], starts[differ], status[differ]
        kind = np.where(
            raw == NO_DATA, TO_NO_DATA, np.where(status == NO_DATA, FROM_NO_DATA, np.where(raw > status, WORSE, BETTER))
        ).astype(np.int8)
        count, run_status = self.run_count[rows], self.run_status[rows]
        going_on = (count > 0) & (kind == self.run_kind[rows])
        run_status = np.where(
            going_on,
            np.where(
                kind == BETTER,
                np.maximum(run_status, raw),
                np.where(kind == TO_NO_DATA, run_status, np.minimum(run_status, raw)),
            ),
            raw,
        ).astype(np.int8)
        run_start = np.where(going_on, self.run_start[rows], starts)
        count = np.where(going_on, count + 1, 1)
        kind = np.where(going_on, self.run_kind[rows], kind).astype(np.int8)
        held = count >= self._hold
        self.status[rows] = np.where(held, run_status, status)
        self.since[rows] = np.where(held, run_start, self.since[rows])
        self.run_count[rows] = np.where(held, 0, count)
        self.run_kind[rows], self.run_status[rows], self.run_start[rows] = kind, run_status, run_start

    # -- a row as a tracker object ----------------------------------------------------------

    def tracker(self, row: int) -> SlaTracker:
        """The row's tracker: its promoted object, or one built from the row (not kept)."""
        promoted = self.promoted.get(row)
        return promoted if promoted is not None else self._built(row)

    def verdict(self, row: int, now_ns: int) -> SlaVerdict:
        return self.tracker(row).verdict(now_ns)

    def restore(self, row: int, state: dict) -> None:
        """The row continues from `SlaTracker.to_state()`'s `state` (raises as `from_state`)."""
        tracker = SlaTracker.from_state(state, self.policy)
        tracker.path = self.paths[row]
        self.promoted[row] = tracker
        try:
            self._demote_if_clean(row, tracker)
        except (KeyError, OverflowError, TypeError, ValueError) as exc:  # a value the columns cannot hold
            self._reset(row)  # not half written: the path starts afresh
            raise ValueError(f"a state the path's columns cannot hold: {exc!r}") from exc

    def _promote(self, row: int) -> SlaTracker:
        tracker = self.promoted.get(row)
        if tracker is None:
            tracker = self.promoted[row] = self._built(row)
        return tracker

    def _built(self, row: int) -> SlaTracker:
        tracker = self._template.fresh(self.paths[row])
        tracker._intervals = int(self.intervals[row])
        tracker._last_start_ns = _optional(self.last_start[row])
        tracker._last_end_ns = _optional(self.last_end[row])
        tracker._first_start_ns = _optional(self.first_start[row])
        pooled = self.pooled[row]
        tracker._pooled, tracker._pooled_count = pooled, int(self.pooled_count[row]) if pooled is not None else 0
        latest = self.latest[row]
        if isinstance(latest, PathWindow):
            stats = window_stats(latest, self.unavailable_loss)
            tracker._latest_judged_on = (stats, stats)
        elif latest and isinstance(latest[0], IntervalStats):
            tracker._latest_judged_on = latest
        elif latest is not None:
            tracker._latest = latest
        tracker._hysteresis = Hysteresis(
            self._hold,
            STATUS_NAMES[self.status[row]],
            int(self.since[row]),
            KIND_NAMES[self.run_kind[row]],
            STATUS_NAMES[self.run_status[row]],
            int(self.run_start[row]),
            int(self.run_count[row]),
        )
        for lookback, counts in zip(tracker._lookbacks, self._counts):
            lookback.head = _optional(counts.head[row])
            lookback.judged = array(counts.typecode, counts.judged[row].tobytes())  # same item size
            lookback.total_judged = int(counts.total[row])
        return tracker

    def _demote_if_clean(self, row: int, tracker: SlaTracker) -> None:
        """Back into the row once nothing but judged intervals is counted."""
        compliance = tracker._compliance
        clean = (
            not tracker._events_bad
            and all(lookback.total_bad == 0 and not any(lookback.bad) for lookback in tracker._lookbacks)
            and compliance.total_unavailable == 0
            and compliance.unavailable is not None
            and not any(compliance.unavailable)
        )
        if not clean:
            return
        del self.promoted[row]
        self.intervals[row] = tracker._intervals
        self.last_start[row] = _stored(tracker._last_start_ns)
        self.last_end[row] = _stored(tracker._last_end_ns)
        self.first_start[row] = _stored(tracker._first_start_ns)
        self.pooled[row] = tracker._pooled
        self.pooled_count[row] = tracker._pooled_count
        self.latest[row] = tracker._latest if tracker._latest is not None else tracker._latest_judged_on
        machine = tracker._hysteresis
        self.status[row], self.since[row] = _STATUS_CODE[machine.status], machine.since_ns
        self.run_kind[row], self.run_status[row] = _KIND_CODE[machine.run_kind], _STATUS_CODE[machine.run_status]
        self.run_start[row], self.run_count[row] = machine.run_start_ns, machine.run_count
        for lookback, counts in zip(tracker._lookbacks, self._counts):
            counts.head[row] = _stored(lookback.head)
            counts.judged[row] = lookback.judged
            counts.total[row] = lookback.total_judged

    def nbytes(self) -> int:
        """Bytes of the columns (every row, used or not)."""
        columns = [counts.judged for counts in self._counts] + [counts.head for counts in self._counts]
        columns += [counts.total for counts in self._counts]
        columns += [self.last_start, self.last_end, self.first_start, self.intervals, self.pooled_count]
        columns += [self.status, self.since, self.run_kind, self.run_status, self.run_start, self.run_count]
        return sum(column.nbytes for column in columns)


class PathTracker:
    """One path's tracker in its slice's `PathTrackers`: what the store holds per path, with
    `SlaTracker`'s interface (`add`, `verdict`, `to_state`) and `restore`, `release`."""

    __slots__ = ("trackers", "row")

    def __init__(self, trackers: PathTrackers, row: int) -> None:
        self.trackers = trackers
        self.row = row

    def add(self, stats: IntervalStats) -> None:
        self.trackers.add(self.row, stats)

    def verdict(self, now_ns: int) -> SlaVerdict:
        return self.trackers.verdict(self.row, now_ns)

    def to_state(self) -> dict:
        return self.trackers.tracker(self.row).to_state()

    def restore(self, state: dict) -> None:
        self.trackers.restore(self.row, state)

    def release(self) -> None:
        self.trackers.release(self.row)
