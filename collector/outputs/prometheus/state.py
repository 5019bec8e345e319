"""What the agent's /metrics shows, held as one immutable snapshot.

The agent loop folds each interval's `PathWindow`s into per-path running totals (Prometheus
counters never go down) and records the latest self-telemetry and reflector counters. Every
change builds a new `MetricsSnapshot` and swaps one reference, so a scrape reads a
consistent picture without taking a lock, and a slow scrape never holds up the agent.

Paths that stop reporting are dropped after `stale_after_windows` of their own window
lengths (default 3: a removed target leaves /metrics within 30 s at the default 10 s
interval, while one late or missing window does not reset a path's counters). Staleness is
judged on the schedule, not the clock: a path is stale when the newest window the agent
closed on any path ended that long after the path's own newest. Under load windows close
late, all of them together; judged against the wall clock, every path would go at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from collector.contract.records import RTT_BUCKETS_NS, CollectorHealth, PathCounts, PathKey, PathWindow

if TYPE_CHECKING:  # the reflector module opens sockets; the metrics need only its counters
    from collector.reflector.session_reflector import ReflectorStats


def _empty() -> Mapping:
    return MappingProxyType({})  # read-only, so no snapshot can be changed after the swap


# PathCounts fields add up window by window; the RTT histogram adds up bucket by bucket.
_COUNTS = tuple(f.name for f in fields(PathCounts) if f.name != "rtt_buckets")


@dataclass(frozen=True, slots=True)
class PathTotals(PathCounts):
    """One path's counts since it was first seen (`PathCounts`, summed over its windows),
    and its latest gauges."""

    key: PathKey
    address: str
    fingerprint: str  # "" until the path has been traced
    last_seq: int
    window_ns: int  # length of the path's windows: the unit of staleness
    last_end_ns: int  # wall-clock end of the newest window folded in
    ipdv_ns: int | None  # of the newest window; None when it had too few replies
    pdv_p99_ns: int | None

    @classmethod
    def first(cls, window: PathWindow) -> PathTotals:
        return cls(
            **{name: getattr(window, name) for name in _COUNTS},
            rtt_buckets=tuple(window.rtt_buckets),
            key=window.key,
            address=window.target_address,
            fingerprint=window.path_fingerprint or "",
            last_seq=window.seq,
            window_ns=window.end_ns - window.start_ns,
            last_end_ns=window.end_ns,
            ipdv_ns=window.ipdv_mean_abs_ns,
            pdv_p99_ns=window.pdv_p99_ns,
        )

    def plus(self, window: PathWindow) -> PathTotals:
        return PathTotals(
            **{name: getattr(self, name) + getattr(window, name) for name in _COUNTS},
            rtt_buckets=tuple(a + b for a, b in zip(self.rtt_buckets, window.rtt_buckets)),
            key=self.key,
            address=window.target_address,
            # A window without a trace keeps the last known path rather than blanking it.
            fingerprint=window.path_fingerprint or self.fingerprint,
            last_seq=window.seq,
            window_ns=window.end_ns - window.start_ns,
            last_end_ns=max(self.last_end_ns, window.end_ns),
            ipdv_ns=window.ipdv_mean_abs_ns,
            pdv_p99_ns=window.pdv_p99_ns,
        )


@dataclass(frozen=True, slots=True)
class ReflectorCounters:
    """A copy of the reflector's running counters (`collector.reflector.session_reflector.ReflectorStats`)."""

    reflected: int = 0
    refused_not_allowed: int = 0
    refused_rate_limited: int = 0
    refused_global_rate_limited: int = 0
    refused_replay: int = 0
    refused_stale: int = 0
    send_errors: int = 0
    malformed: tuple[tuple[str, int], ...] = ()  # (kind, count), sorted by kind

    @classmethod
    def of(cls, stats: ReflectorStats) -> ReflectorCounters:
        """Copy a live `ReflectorStats`; its ints are written by the reflector thread alone."""
        return cls(
            reflected=stats.reflected,
            refused_not_allowed=stats.refused_not_allowed,
            refused_rate_limited=stats.refused_rate_limited,
            refused_global_rate_limited=stats.refused_global_rate_limited,
            refused_replay=stats.refused_replay,
            refused_stale=stats.refused_stale,
            send_errors=stats.send_errors,
            # dict() copies the Counter in one step under the GIL, even while the thread adds kinds
            malformed=tuple(sorted(dict(stats.malformed).items())),
        )


@dataclass(frozen=True, slots=True)
class OnDemandCounters:
    """The on-demand probes' counters (`collector.agent.on_demand`): requests finished by
    (kind, outcome), those running now, and errors its thread carried on after."""

    requests: Mapping[tuple[str, str], int] = field(default_factory=_empty)
    in_flight: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Everything one scrape renders. Never mutated: the state swaps in a new one."""

    paths: Mapping[PathKey, PathTotals] = field(default_factory=_empty)
    health: Mapping[str, CollectorHealth] = field(default_factory=_empty)  # by site
    reflector: ReflectorCounters | None = None  # None: this agent runs no reflector
    last_window_end_ns: Mapping[str, int] = field(default_factory=_empty)  # by source site
    ship_failures: Mapping[str, Mapping[str, int]] = field(default_factory=_empty)  # site -> reason -> POSTs
    errors: Mapping[str, Mapping[str, int]] = field(default_factory=_empty)  # site -> component -> errors survived
    marked_blocks_dropped: Mapping[str, int] = field(default_factory=_empty)  # site -> in-situ blocks the sink dropped
    on_demand: OnDemandCounters | None = None  # None: this agent answers no probe requests


class MetricsState:
    """Folds windows and telemetry into snapshots. Writers may call from any thread; they
    serialise on a lock. Readers take `snapshot` and never lock."""

    def __init__(self, *, stale_after_windows: int = 3) -> None:
        if stale_after_windows < 1:
            raise ValueError(f"stale_after_windows: expected at least 1, got {stale_after_windows}")
        self.stale_after_windows = stale_after_windows
        self._lock = threading.Lock()
        self._snapshot = MetricsSnapshot()

    @property
    def snapshot(self) -> MetricsSnapshot:
        return self._snapshot

    def apply(self, windows: Iterable[PathWindow]) -> None:
        """Fold one batch of windows (one interval's, ideally: each call copies the path
        table once) into the totals, then drop paths that have gone quiet: whose newest
        window ended `stale_after_windows` windows before the newest of all. A window whose
        `seq` is not above the last one folded for its path is a repeat and is ignored."""
        windows = list(windows)
        for window in windows:
            if len(window.rtt_buckets) != len(RTT_BUCKETS_NS) + 1:
                raise ValueError(
                    f"window of {window.key}: {len(window.rtt_buckets)} RTT buckets, "
                    f"expected {len(RTT_BUCKETS_NS) + 1} (RTT_BUCKETS_NS and +Inf)"
                )
        with self._lock:
            old = self._snapshot
            paths = dict(old.paths)
            last_end = dict(old.last_window_end_ns)
            for window in windows:
                totals = paths.get(window.key)
                if totals is None:
                    paths[window.key] = PathTotals.first(window)
                elif window.seq > totals.last_seq:
                    paths[window.key] = totals.plus(window)
                else:
                    continue
                source = window.key.source
                last_end[source] = max(last_end.get(source, 0), window.end_ns)
            schedule_ns = max((t.last_end_ns for t in paths.values()), default=0)
            paths = {key: t for key, t in paths.items() if not self._stale(t, schedule_ns)}
            self._swap(old, paths=MappingProxyType(paths), last_window_end_ns=MappingProxyType(last_end))

    def set_health(self, health: CollectorHealth) -> None:
        """Record the agent's latest self-telemetry (one per site the process probes from)."""
        with self._lock:
            old = self._snapshot
            health_by_site = dict(old.health)
            health_by_site[health.site] = health
            self._swap(old, health=MappingProxyType(health_by_site))

    def set_ship_failures(self, site: str, failures: Mapping[str, int]) -> None:
        """Record the sink's failed deliveries by reason (copied now)."""
        with self._lock:
            old = self._snapshot
            by_site = dict(old.ship_failures)
            by_site[site] = MappingProxyType(dict(failures))
            self._swap(old, ship_failures=MappingProxyType(by_site))

    def set_marked_blocks_dropped(self, site: str, dropped: int) -> None:
        """Record how many in-situ blocks the sink has dropped (spool bounds, unwritable spool)."""
        with self._lock:
            old = self._snapshot
            self._swap(old, marked_blocks_dropped=MappingProxyType({**old.marked_blocks_dropped, site: dropped}))

    def set_errors(self, site: str, errors: Mapping[str, int]) -> None:
        """Record the errors the agent's background loops survived, by component (copied now)."""
        with self._lock:
            old = self._snapshot
            by_site = dict(old.errors)
            by_site[site] = MappingProxyType(dict(errors))
            self._swap(old, errors=MappingProxyType(by_site))

    def set_reflector(self, stats: ReflectorStats | ReflectorCounters) -> None:
        """Record the reflector's counters: a `ReflectorStats` (copied now) or `ReflectorCounters`."""
        counters = stats if isinstance(stats, ReflectorCounters) else ReflectorCounters.of(stats)
        with self._lock:
            old = self._snapshot
            self._swap(old, reflector=counters)

    def set_on_demand(self, counters: OnDemandCounters) -> None:
        with self._lock:
            self._swap(self._snapshot, on_demand=counters)

    def _stale(self, totals: PathTotals, schedule_ns: int) -> bool:
        return schedule_ns - totals.last_end_ns > self.stale_after_windows * max(totals.window_ns, 1)

    def _swap(self, old: MetricsSnapshot, **changes) -> None:
        self._snapshot = replace(old, **changes)  # one reference store: readers see old or new
