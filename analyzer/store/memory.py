"""The analyzer's memory: path windows in, per-slice and per-path SLA trackers fed in order.

`WindowStore.ingest(batch, now_ns)` takes what an agent shipped (over HTTP or in-process):

- Duplicates go. Delivery is at least once, so a window whose (path, seq) was seen is
  dropped and counted. Per path the store keeps the highest seq and a 64-bit mask of the
  64 seqs below it (a path's windows arrive nearly in order: one agent's spool sends them
  in order); a window older than that horizon (64 intervals, ~10 min) can no longer be
  told apart from a duplicate nor enter a verdict, and is dropped as `stale`.
- A window starting more than `max_ahead_s` (default 5 min) after the analyzer's clock is
  dropped as `future` (an agent's clock is wrong): it would move every verdict's time.
- Windows are grouped per slice and interval (number = start_ns // interval). A slice's
  interval CLOSES when every path of the slice's previous closed interval has reported
  in it or later (usually at once, as a batch holds one interval of an agent), or when
  its end plus `grace_intervals` has passed; intervals close in order. (Before the first
  close, a slice's interval waits until all its known paths have moved past it.) Closing
  sums the windows with `IntervalStats.of` for the slice's tracker, and per path for each
  path's tracker. A window for an interval already closed is `late`: it stays in its
  path's history and feeds its path's tracker (when in order), not the slice's.
- A path's first `warm_up_windows` windows (deployments take `PATH_WARM_UP_WINDOWS`, 2)
  from the first one the store sees of it are its warm-up: neighbour discovery, a
  reflector starting, cold caches make the first probes of a path slow or lost, which
  says nothing about the network's SLA. They are kept in the path's history but feed no
  tracker, and are counted as `warm_up`. A path restored from a snapshot is not new.
- Verdicts are evaluated at `judged_through_ns`, the end of the newest closed interval,
  not at the wall clock (analyzer.sla.verdicts: an interval still being shipped is not missing).
- A stall of every agent at once (the machine they share, or this analyzer's intake, held
  up for a moment) is not a gap in the network's data: while no path at all has reported
  past an interval, closing by time waits up to `stall_intervals` more intervals
  (deployments take `SHARED_STALL_INTERVALS`, 5; the store's default is 0) before it
  closes that interval and the ones after it without their windows.
- After a start or restore, closing by time waits `catch_up_s` (default 45 s, longer than
  an agent's 30 s retry cap) so that agents draining their spools after an analyzer
  outage all get their windows into the intervals they belong to; meanwhile intervals
  close as they complete. The same holds while the windows' only way in is cut (the bus
  intake lost its server: `suspend_time_closing`): what does not arrive then waits in the
  agents' spools and is not missing, so closing by time stops until the way is back and
  then waits a catch-up again (`resume_time_closing`), renewed by every batch that brings
  windows from before the way came back: a long outage's spools take longer to drain than
  one catch-up, and an agent still draining is not gone.
- Only slices that have a policy are taken: a window of any other slice is refused and
  counted (`refused_counts()`, reason `unknown-slice`), and so is its observation. Inventing a
  permissive SLA would show "ok" for something nobody promised, and a stranger's made-up slice
  names would otherwise grow every read. A new path beyond `max_paths` is refused the same way
  (reason `too-many-paths`). `note_refused` counts refusals made before the store (an intake
  that binds windows to their site counts `source-mismatch`).

Bounded memory. Per path: its state (~0.3 KB), the last `history` windows (~0.8 KB each;
default 12, two minutes, for /paths and worst paths), its SLA tracker (a row of its slice's
columns, ~1 KB, analyzer.sla.path_trackers; ~5 KB more while a violation keeps it an object)
and references in the open intervals: ~10 KB a path in all, measured in
tests/analyzer/store/test_memory.py (so 100,000 paths take ~1 GB). Per slice: at most
`MAX_OPEN_S` seconds of open intervals, and at least `MAX_OPEN_INTERVALS` (then the oldest
closes): after a bus outage the agent that drained first has every interval of it open
until the slowest one has drained too. Paths silent for
`forget_after_s` (default 1 day) are forgotten, and so are observations and agents not heard of
for as long. Observations: the latest per (source, target, slice); health: the latest per site.

Reads that judge many slices or paths (`slice_verdicts`, `slice_verdict_map`, `path_verdicts`)
close what is due once and then evaluate each tracker once: a request costs one pass.

Thread safety: one lock around every method, so an in-process agent thread may ingest
while the API reads. Reads return fresh containers of immutable records.

Persistence across restarts (snapshot and restore) is `analyzer.store.snapshot`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from analyzer.insitu.segments import SegmentStore
from analyzer.sla.path_trackers import PathTrackers
from analyzer.sla.series import IntervalStats, window_stats
from collector.contract.records import CollectorHealth, PathKey, PathObservation, PathWindow
from collector.contract.shipment import ShipmentBatch

# Why windows are refused before the store takes them -> the counter that counts them.
REFUSAL_COUNTERS = {
    "source-mismatch": "windows_refused_source_mismatch",  # a path source other than the sending site
    "malformed": "windows_refused_malformed",  # a body the codec refuses
    "unknown-slice": "windows_refused_unknown_slice",  # no SLA policy names its slice
    "too-many-paths": "windows_refused_too_many_paths",  # a new path beyond the store's max_paths
}


class TrackerType(Protocol):
    """What the store needs of its tracker class: analyzer.sla.verdicts.SlaTracker, or a stand-in."""

    def __call__(self, policy: Any, interval_s: float, path: PathKey | None = None) -> Any: ...

    def from_state(self, state: dict, policy: Any) -> Any: ...


DEDUP_HORIZON = 64  # seqs below a path's newest that are remembered (bits of the mask)
_MASK = (1 << DEDUP_HORIZON) - 1
HISTORY_WINDOWS = 12
MAX_OPEN_INTERVALS = 64
MAX_OPEN_S = 640.0  # 64 intervals of 10 s: a bus outage of ten minutes, less its catch-up
PATH_WARM_UP_WINDOWS = 2  # what deployments leave out of a new path's verdicts (the store's default is 0)
SHARED_STALL_INTERVALS = 5  # how long deployments wait out a stall of every agent (the store's default is 0)
MAX_PATHS = 200_000  # ~2 GB at ~10 KB a path: beyond, new paths are refused (reason too-many-paths)
UNKNOWN_SLICE = "unknown-slice"
TOO_MANY_PATHS = "too-many-paths"
SOURCE_MISMATCH = "source-mismatch"  # a site's window for another site's path (counted by the intake)


@dataclass(slots=True)
class IngestResult:
    """What one batch did. `accepted` windows are new (late ones included)."""

    accepted: int = 0
    duplicates: int = 0  # seen before: at-least-once delivery
    stale: int = 0  # older than the dedup horizon of their path: dropped
    late: int = 0  # accepted after their slice interval closed: in path views, not the slice verdict
    future: int = 0  # starting implausibly far ahead of the analyzer's clock: dropped
    warm_up: int = 0  # a new path's first windows: in path views, not in verdicts
    refused: int = 0  # of a slice without a policy, or a new path beyond the bound: dropped, counted by reason
    observations: int = 0
    health: bool = False


@dataclass(frozen=True, slots=True)
class AgentSeen:
    site: str
    last_batch_ns: int  # when the analyzer last received a batch from it (its own clock)
    health: CollectorHealth | None


class _PathState:
    __slots__ = (
        "key",
        "recent",
        "latest",
        "interval",
        "max_seq",
        "seen_mask",
        "fed",
        "tracker",
        "last_seen_ns",
        "warm_until_seq",
    )

    def __init__(self, key: PathKey, history: int, tracker) -> None:
        self.key = key
        self.recent: deque[PathWindow] = deque(maxlen=history)
        self.latest: PathWindow | None = None  # the window with the highest seq
        self.interval = -1  # the interval number of `latest`: the path is done with older ones
        self.max_seq = -1
        self.seen_mask = 0  # bit i: seq max_seq - i was seen
        self.fed = -1  # last interval number given to the tracker
        self.tracker = tracker
        self.last_seen_ns = 0  # store clock of the latest accepted window: for forgetting
        self.warm_until_seq = -1  # windows below this seq are the path's warm-up


class _SliceState:
    __slots__ = (
        "name",
        "policy",
        "tracker",
        "path_trackers",
        "paths",
        "pending",
        "expected",
        "closed_upto",
        "watched",
        "passed",
    )

    def __init__(self, name: str, policy, tracker, path_trackers: PathTrackers | None) -> None:
        self.name = name
        self.policy = policy
        self.tracker = tracker
        # The paths' trackers as columns (analyzer.sla.path_trackers), fed an interval at a
        # time; None when the store was given a tracker type (one object per path).
        self.path_trackers = path_trackers
        # Sets of path states, not PathKeys: identity hashing is cheaper than hashing the key's
        # four strings, and this runs several times per window.
        self.paths: set[_PathState] = set()
        # open interval number -> (its windows, their paths' states)
        self.pending: dict[int, tuple[list[PathWindow], list[_PathState]]] = {}
        self.expected: frozenset[_PathState] = frozenset()  # paths of the latest closed interval
        self.closed_upto = -1  # every interval up to this number is closed
        self.watched: int | None = None  # the oldest open interval, which `passed` is about
        self.passed: set[_PathState] = set()  # paths done with the watched interval


class WindowStore:
    """See the module docstring. `policies` maps slice name -> SlaPolicy. `tracker_type`
    is `analyzer.sla.verdicts.SlaTracker` unless given (tests give stand-ins); unless given,
    the paths' trackers of a slice are columns (`analyzer.sla.path_trackers.PathTrackers`)
    with the same verdicts, else one `tracker_type` object per path."""

    def __init__(
        self,
        policies: Mapping[str, object] | None = None,
        *,
        interval_s: float = 10.0,
        grace_intervals: float = 1.5,
        catch_up_s: float = 45.0,
        history: int = HISTORY_WINDOWS,
        forget_after_s: float = 86_400.0,
        max_ahead_s: float = 300.0,
        warm_up_windows: int = 0,
        stall_intervals: int = 0,
        max_paths: int = MAX_PATHS,
        tracker_type: TrackerType | None = None,
        slice_closed: Callable[[str, IntervalStats], None] | None = None,
    ) -> None:
        self.path_columns = tracker_type is None
        if tracker_type is None:
            from analyzer.sla.verdicts import SlaTracker

            tracker_type = SlaTracker
        self.policies = dict(policies or {})
        self.interval_s = interval_s
        self.interval_ns = round(interval_s * 1e9)
        self.grace_ns = round(grace_intervals * self.interval_ns)
        self.catch_up_ns = round(catch_up_s * 1e9)
        self.history = history
        self.forget_after_ns = round(forget_after_s * 1e9)
        self.max_ahead_ns = round(max_ahead_s * 1e9)
        self.max_paths = max_paths
        self.tracker_type = tracker_type
        self.warm_up_windows = warm_up_windows
        self.stall_intervals = stall_intervals
        # Told each slice interval as it closes (under the lock): a partition of a partitioned
        # analysis passes its partial sums on (analyzer.partials).
        self.slice_closed = slice_closed
        self._newest_interval = -1  # the newest interval any path has reported in
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "batches_accepted",
                "batches_rejected",
                "windows_ingested",
                "windows_duplicate",
                "windows_stale",
                "windows_late",
                "windows_future",
                "windows_warm_up",
                "intervals_closed",
                "paths_forgotten",
                *REFUSAL_COUNTERS.values(),
            ),
            0,
        )
        self._lock = threading.RLock()
        self._paths: dict[PathKey, _PathState] = {}
        self._slices: dict[str, _SliceState] = {}
        self._observations: dict[tuple[str, str, str], PathObservation] = {}
        self._observation_seen_ns: dict[tuple[str, str, str], int] = {}  # store clock, for forgetting
        self._agents: dict[str, AgentSeen] = {}
        self._time_closing_from_ns: int | None = None  # set by the first call that tells the time
        self._time_closing_suspended = False  # the windows' way in is cut: nothing is missing
        self._kept_before_ns: int | None = None  # windows older than this were kept while it was cut
        self._kept_catch_up_ns = 0  # how long closing by time waits after each batch of them
        self.max_open_intervals = max(MAX_OPEN_INTERVALS, -(-round(MAX_OPEN_S * 1e9) // self.interval_ns))
        # Trackers judge "now" as the end of the newest closed interval, not the wall clock:
        # an interval still being shipped must not count as missing (see analyzer.sla.verdicts).
        self._judged_through_ns = 0
        self._next_forget_ns = 0
        self.segments = SegmentStore()  # in-situ flow telemetry: marked blocks paired into segments

    # -- ingest -----------------------------------------------------------------------------

    def ingest(self, batch: ShipmentBatch, now_ns: int) -> IngestResult:
        """Take one agent batch; `now_ns` is the analyzer's wall clock."""
        with self._lock:
            result = self._add_windows(batch.windows, now_ns)
            if batch.marked_blocks:
                self.segments.add(batch.marked_blocks, now_ns)
            if self._kept_before_ns is not None and any(w.start_ns < self._kept_before_ns for w in batch.windows):
                # an agent is still draining what it kept: it is not gone
                self._time_closing_from_ns = max(self._time_closing_from_ns or 0, now_ns + self._kept_catch_up_ns)
            for observation in batch.observations:
                if observation.slice in self.policies:
                    key = (observation.source, observation.target, observation.slice)
                    self._observations[key] = observation
                    self._observation_seen_ns[key] = now_ns
                    result.observations += 1
            previous = self._agents.get(batch.site)
            health = batch.health if batch.health is not None else (previous.health if previous is not None else None)
            self._agents[batch.site] = AgentSeen(batch.site, now_ns, health)
            result.health = batch.health is not None
            self.counters["batches_accepted"] += 1
            self._advance(now_ns)
            return result

    def ingest_windows(self, windows: Iterable[PathWindow], now_ns: int) -> IngestResult:
        """Windows without a batch around them (all-in-one mode may feed them directly)."""
        with self._lock:
            result = self._add_windows(windows, now_ns)
            self._advance(now_ns)
            return result

    def note_refused(self, reason: str, windows: int) -> None:
        """Windows refused on their way in (`REFUSAL_COUNTERS` names the reasons)."""
        with self._lock:
            self.counters[REFUSAL_COUNTERS[reason]] += windows

    def note_rejected(self) -> None:
        """A batch refused before it reached the store (bad token, malformed, too large)."""
        with self._lock:
            self.counters["batches_rejected"] += 1

    def refused_counts(self) -> dict[str, int]:
        """Windows refused so far, by reason (xnet_analyzer_windows_refused_total)."""
        with self._lock:
            return {reason: self.counters[counter] for reason, counter in REFUSAL_COUNTERS.items()}

    def _add_windows(self, windows: Iterable[PathWindow], now_ns: int) -> IngestResult:
        result = IngestResult()
        paths = self._paths
        interval_ns = self.interval_ns
        latest_start_ns = now_ns + self.max_ahead_ns
        for window in windows:
            if window.start_ns > latest_start_ns:
                result.future += 1
                continue
            path = paths.get(window.key)
            if path is None:
                refusal = self._refusal(window.key)
                if refusal is not None:
                    self.counters[REFUSAL_COUNTERS[refusal]] += 1
                    result.refused += 1
                    continue
                path = self._new_path(window.key)
            seq = window.seq
            behind = path.max_seq - seq
            if behind >= 0:  # not newer than the newest: a duplicate, a straggler or too old
                if behind >= DEDUP_HORIZON:
                    result.stale += 1
                    continue
                bit = 1 << behind
                if path.seen_mask & bit:
                    result.duplicates += 1
                    continue
                path.seen_mask |= bit
            else:
                if path.max_seq < 0:  # the first window of a path new to the store
                    path.warm_until_seq = seq + self.warm_up_windows
                shift = -behind
                path.seen_mask = ((path.seen_mask << shift) | 1) & _MASK if shift < DEDUP_HORIZON else 1
                path.max_seq = seq
                path.latest = window
                path.interval = window.start_ns // interval_ns
                if path.interval > self._newest_interval:
                    self._newest_interval = path.interval
            path.recent.append(window)
            path.last_seen_ns = now_ns
            result.accepted += 1
            if seq < path.warm_until_seq:
                result.warm_up += 1
                continue
            slice_state = self._slices[window.key.slice]
            number = window.start_ns // interval_ns
            if number <= slice_state.closed_upto:
                result.late += 1
                self._feed_path(path, number, [window], _unavailable_loss(slice_state.policy))
                continue
            pending = slice_state.pending.get(number)
            if pending is None:
                pending = slice_state.pending[number] = ([], [])
            pending[0].append(window)
            pending[1].append(path)
            self._close_complete(slice_state, path)
        counters = self.counters
        counters["windows_ingested"] += result.accepted
        counters["windows_duplicate"] += result.duplicates
        counters["windows_stale"] += result.stale
        counters["windows_late"] += result.late
        counters["windows_future"] += result.future
        counters["windows_warm_up"] += result.warm_up
        return result

    def _refusal(self, key: PathKey) -> str | None:
        """Why a window of a path not yet known is refused, or None to take it."""
        if key.slice not in self.policies:
            return UNKNOWN_SLICE
        if len(self._paths) >= self.max_paths:
            return TOO_MANY_PATHS
        return None

    def _new_path(self, key: PathKey) -> _PathState:
        slice_state = self._slice(key.slice)
        policy = slice_state.policy
        if policy is None:
            tracker = None
        elif slice_state.path_trackers is not None:
            tracker = slice_state.path_trackers.new(key)
        else:
            tracker = self.tracker_type(policy, self.interval_s, path=key)
        path = self._paths[key] = _PathState(key, self.history, tracker)
        slice_state.paths.add(path)
        return path

    def _slice(self, name: str) -> _SliceState:
        """The slice's state, made (with its policy's tracker) when the name is first seen."""
        slice_state = self._slices.get(name)
        if slice_state is None:
            policy = self.policies.get(name)
            tracker = None if policy is None else self.tracker_type(policy, self.interval_s)
            columns = PathTrackers(policy, self.interval_s) if policy is not None and self.path_columns else None  # type: ignore[arg-type]
            slice_state = self._slices[name] = _SliceState(name, policy, tracker, columns)
        return slice_state

    # -- closing intervals ------------------------------------------------------------------

    def suspend_time_closing(self) -> None:
        """The windows' only way in is cut (the bus intake lost its server): agents keep
        what they close meanwhile, so an interval without windows now is late, not empty.
        Until `resume_time_closing`, intervals close only as they complete."""
        with self._lock:
            self._time_closing_suspended = True

    def resume_time_closing(self, now_ns: int, catch_up_s: float) -> None:
        """The way in is back: closing by time waits `catch_up_s` more, as after a start,
        so that the windows the agents kept meanwhile enter the intervals they belong to; each
        batch that brings some of them renews the wait."""
        with self._lock:
            self._time_closing_suspended = False
            self._kept_before_ns = now_ns
            self._kept_catch_up_ns = round(catch_up_s * 1e9)
            self._time_closing_from_ns = max(self._time_closing_from_ns or 0, now_ns + self._kept_catch_up_ns)

    def advance(self, now_ns: int) -> None:
        """Close the intervals whose time is up. `ingest` and the verdict reads call it; a
        service also calls it periodically so that verdicts move when no agent reports."""
        with self._lock:
            self._advance(now_ns)

    def _advance(self, now_ns: int) -> None:
        if self._time_closing_from_ns is None:
            self._time_closing_from_ns = now_ns + self.catch_up_ns
        by_time = not self._time_closing_suspended and now_ns >= self._time_closing_from_ns
        # Interval n ends at (n + 1) * interval; it is due once its grace has passed too.
        due = (now_ns - self.grace_ns) // self.interval_ns - 1
        if 0 <= self._newest_interval < due < self._newest_interval + self.stall_intervals:
            due = self._newest_interval  # every agent is behind: a stall they share, not the network
        for slice_state in self._slices.values():
            if by_time and slice_state.closed_upto < due:
                self._close_through(slice_state, due)
            while len(slice_state.pending) > self.max_open_intervals:
                self._close_through(slice_state, min(slice_state.pending))
        if by_time:
            self._kept_before_ns = None  # the catch-up is over: whatever comes now is late
            self._judged_through_ns = max(self._judged_through_ns, (due + 1) * self.interval_ns)
        if now_ns >= self._next_forget_ns:
            self._forget_silent_paths(now_ns)
            self._next_forget_ns = now_ns + self.interval_ns

    def _close_complete(self, slice_state: _SliceState, path: _PathState) -> None:
        """Close the oldest open intervals while they are complete: every path of the
        previous closed interval has reported in it or later. Before any interval closed,
        the slice's known paths must all have moved past it (a later interval), so that a
        first batch alone does not close the first interval for every agent."""
        while slice_state.pending:
            oldest = min(slice_state.pending)
            expected = slice_state.expected or slice_state.paths
            lowest = oldest if slice_state.expected else oldest + 1
            if slice_state.watched != oldest:  # once per interval: scan the expected paths
                slice_state.watched = oldest
                slice_state.passed = {p for p in expected if p.interval >= lowest}
            elif path in expected and path.interval >= lowest:
                slice_state.passed.add(path)
            if len(slice_state.passed) < len(expected):
                return
            self._close_through(slice_state, oldest)

    def _close_through(self, slice_state: _SliceState, number: int) -> None:
        """Close every open interval of the slice up to `number`, oldest first."""
        for n in sorted(n for n in slice_state.pending if n <= number):
            windows, paths = slice_state.pending.pop(n)
            if slice_state.tracker is not None:
                stats = IntervalStats.of(windows, _unavailable_loss(slice_state.policy))
                slice_state.tracker.add(stats)
                if self.slice_closed is not None:
                    self.slice_closed(slice_state.name, stats)
            unavailable_loss = _unavailable_loss(slice_state.policy)
            expected = frozenset(paths)
            if len(expected) == len(windows) and slice_state.path_trackers is not None:
                fed_rows, fed_windows = [], []  # one window a path, as agents ship them
                for window, path in zip(windows, paths):
                    if path.tracker is not None and n > path.fed:
                        fed_rows.append(path.tracker.row)
                        fed_windows.append(window)
                        path.fed = n
                slice_state.path_trackers.add_interval(fed_rows, fed_windows)
            elif len(expected) == len(windows):
                for window, path in zip(windows, paths):
                    if path.tracker is not None and n > path.fed:
                        path.tracker.add(window_stats(window, unavailable_loss))
                        path.fed = n
            else:
                by_path: dict[_PathState, list[PathWindow]] = {}
                for window, path in zip(windows, paths):
                    by_path.setdefault(path, []).append(window)
                for path, path_windows in by_path.items():
                    self._feed_path(path, n, path_windows, unavailable_loss)
            slice_state.expected = expected
            self.counters["intervals_closed"] += 1
        slice_state.closed_upto = max(slice_state.closed_upto, number)
        self._judged_through_ns = max(self._judged_through_ns, (number + 1) * self.interval_ns)

    def add_slice_interval(self, name: str, stats: IntervalStats) -> bool:
        """One closed interval of a slice summed elsewhere (a combiner's merge of its
        partitions' partial sums): into the slice's tracker as if its windows had closed here.
        False when the slice has no policy or the interval is not after the last one closed."""
        with self._lock:
            if name not in self.policies:
                return False
            slice_state = self._slice(name)
            number = stats.start_ns // self.interval_ns
            if number <= slice_state.closed_upto or slice_state.tracker is None:
                return False
            slice_state.tracker.add(stats)
            slice_state.closed_upto = number
            self._judged_through_ns = max(self._judged_through_ns, (number + 1) * self.interval_ns)
            self.counters["intervals_closed"] += 1
            return True

    def closed_through(self) -> dict[str, int]:
        """Per slice with a policy, the interval number up to which it is closed: no window
        will feed its verdict up to there any more. A slice without a window yet is closed as
        far as the newest closed interval of any slice."""
        with self._lock:
            frontier = self._judged_through_ns // self.interval_ns - 1
            return {
                name: state.closed_upto if (state := self._slices.get(name)) else frontier for name in self.policies
            }

    @staticmethod
    def _feed_path(path: _PathState, number: int, windows: list[PathWindow], unavailable_loss: float) -> None:
        if path.tracker is not None and number > path.fed:
            if len(windows) == 1:
                stats = window_stats(windows[0], unavailable_loss)
            else:
                stats = IntervalStats.of(windows, unavailable_loss)
            path.tracker.add(stats)
            path.fed = number

    def _forget_silent_paths(self, now_ns: int) -> None:
        """Paths, observations and agents not heard of for `forget_after_s`."""
        oldest_ns = now_ns - self.forget_after_ns
        silent = [key for key, path in self._paths.items() if path.last_seen_ns < oldest_ns]
        for key in silent:
            path = self._paths.pop(key)
            slice_state = self._slices[key.slice]
            if slice_state.path_trackers is not None and path.tracker is not None:
                path.tracker.release()
            slice_state.paths.discard(path)
            slice_state.expected = slice_state.expected - {path}
            slice_state.watched = None  # recount what the oldest open interval waits for
        self.counters["paths_forgotten"] += len(silent)
        seen = self._observation_seen_ns
        for traced in [k for k in self._observations if seen.setdefault(k, now_ns) < oldest_ns]:
            del self._observations[traced], seen[traced]
        for site in [site for site, agent in self._agents.items() if agent.last_batch_ns < oldest_ns]:
            del self._agents[site]

    # -- reads ------------------------------------------------------------------------------

    def slice_names(self) -> list[str]:
        """Slices that have a policy (or, after a restore under other policies, were seen), sorted."""
        with self._lock:
            return sorted(set(self._slices) | set(self.policies))

    def slice_verdict(self, name: str, now_ns: int):
        """The slice's SlaVerdict, or None when it has no policy (or is unknown). Verdicts are
        evaluated at `judged_through_ns`, the end of the newest closed interval (what the
        trackers expect), after closing what `now_ns` makes due."""
        with self._lock:
            self._advance(now_ns)
            return self._slice_verdict(name)

    def _slice_verdict(self, name: str):
        slice_state = self._slices.get(name)
        if slice_state is None:
            policy = self.policies.get(name)
            # A slice with a policy but no window yet: a fresh tracker says "no-data".
            if policy is None:
                return None
            return self.tracker_type(policy, self.interval_s).verdict(self._judged_through_ns)
        return None if slice_state.tracker is None else slice_state.tracker.verdict(self._judged_through_ns)

    def slice_verdict_map(self, now_ns: int) -> dict[str, object]:
        """Slice name -> SlaVerdict or None, for every slice of `slice_names()`, in one pass."""
        with self._lock:
            self._advance(now_ns)
            return {name: self._slice_verdict(name) for name in self.slice_names()}

    def slice_verdicts(self, now_ns: int) -> list:
        """Every slice with a policy: its SlaVerdict (what the Prometheus exporter shows)."""
        return [v for v in self.slice_verdict_map(now_ns).values() if v is not None]

    def path_verdict(self, key: PathKey, now_ns: int):
        return self.path_verdicts([key], now_ns)[key]

    def path_verdicts(self, keys: Iterable[PathKey], now_ns: int) -> dict[PathKey, object]:
        """Path -> SlaVerdict or None (unknown path, or no policy), in one pass."""
        with self._lock:
            self._advance(now_ns)
            through = self._judged_through_ns
            found = {}
            for key in keys:
                path = self._paths.get(key)
                found[key] = None if path is None or path.tracker is None else path.tracker.verdict(through)
            return found

    def verdicts(self, now_ns: int) -> tuple[dict[str, object], dict[PathKey, object]]:
        """(slice name -> SlaVerdict or None, path -> SlaVerdict or None) for everything known."""
        with self._lock:
            return self.slice_verdict_map(now_ns), self.path_verdicts(list(self._paths), now_ns)

    @property
    def judged_through_ns(self) -> int:
        """End of the newest closed interval: the time verdicts are evaluated at."""
        return self._judged_through_ns

    def path_keys(self, slice_name: str | None = None) -> list[PathKey]:
        with self._lock:
            if slice_name is None:
                return list(self._paths)
            slice_state = self._slices.get(slice_name)
            return [] if slice_state is None else [p.key for p in slice_state.paths]

    def latest_window(self, key: PathKey) -> PathWindow | None:
        with self._lock:
            path = self._paths.get(key)
            return None if path is None else path.latest

    def latest_windows(self, slice_name: str | None = None) -> list[PathWindow]:
        """Each known path's newest window (of the slice, if named)."""
        with self._lock:
            keys = self._paths if slice_name is None else self.path_keys(slice_name)
            return [w for w in (self._paths[k].latest for k in keys) if w is not None]

    def target_addresses(self) -> set[str]:
        """The addresses the agents probe (their windows' target_address)."""
        with self._lock:
            return {p.latest.target_address for p in self._paths.values() if p.latest is not None}

    def recent_windows(self, key: PathKey) -> list[PathWindow]:
        """The path's last `history` windows, oldest first."""
        with self._lock:
            path = self._paths.get(key)
            return [] if path is None else sorted(path.recent, key=lambda w: w.seq)

    def observations(self) -> list[PathObservation]:
        """The latest traced path per (source, target, slice)."""
        with self._lock:
            return list(self._observations.values())

    def observation(self, source: str, target: str, slice_name: str) -> PathObservation | None:
        with self._lock:
            return self._observations.get((source, target, slice_name))

    def agents(self) -> list[AgentSeen]:
        with self._lock:
            return sorted(self._agents.values(), key=lambda a: a.site)

    def stats(self) -> dict[str, int]:
        """Sizes and counters, for /healthz and the exporter."""
        with self._lock:
            return {
                "paths": len(self._paths),
                "slices": len(self._slices),
                "windows_held": sum(len(p.recent) for p in self._paths.values()),
                "open_intervals": sum(len(s.pending) for s in self._slices.values()),
                "observations": len(self._observations),
                "agents": len(self._agents),
                "windows_refused": sum(self.counters[c] for c in REFUSAL_COUNTERS.values()),
                **self.counters,
            }


def _unavailable_loss(policy) -> float:
    """The loss above which a path's interval counts as unavailable, as the policy says."""
    return getattr(policy, "unavailable_loss", 0.75)
