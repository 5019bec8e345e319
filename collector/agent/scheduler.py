"""The probe plan, running: every (target, slice, probe kind) on its own schedule.

One asyncio task and one heap of due times serve every schedule, so ten thousand targets
cost ten thousand heap entries, not ten thousand tasks. Each schedule's first probe is
placed at a stable, hash-spread point of its interval, so probes never leave in a burst and
keep their places across restarts. Probes go out up to EARLY_NS before their planned time:
the event loop's timers have millisecond granularity, and leaving a little early is
harmless where leaving late shows up as scheduling lag. The scheduler knows no probe kind:
each planned probe's kind names its prober in `collector.probes.registry`, which owns the
sockets (shared by every schedule of the kind) and hands each settled result to its
schedule. Results are folded into per-path windows (collector.agent.windows) that are
handed to `on_windows` once settled.
"""

from __future__ import annotations

import asyncio
import heapq
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from collector.agent.plan import PlannedProbe
from collector.agent.windows import WindowBuilder
from collector.contract.records import PathKey, PathWindow, ProbeResult
from collector.probes.base import Prober, ProberContext, ProbeSpec, ProbeTarget, ResultHandler
from collector.probes.registry import PROBERS
from collector.probes.summary import percentile
from collector.system.clock import ClockStatus, read_clock_status

EARLY_NS = 500_000
HOUSEKEEPING_NS = 100_000_000  # how often probers check their timeouts
CLOSE_CHUNK = 500  # window builders checked per turn of the loop, so closing never stalls probing
WindowHandler = Callable[[list[PathWindow]], None]


class SchedulerObserver(Protocol):
    """What a benchmark may watch of a running scheduler, besides its telemetry."""

    def on_result(self, result: ProbeResult) -> None:
        """Every settled result, as it reaches its window."""

    def on_windows_closed(self, windows: int, duration_ns: int) -> None:
        """A closing pass that handed out windows, and how long it held the loop."""


def schedule_key(probe: PlannedProbe) -> tuple:
    """What identifies a schedule across reloads: the same key keeps its counters."""
    t = probe.target
    return (t.name, t.address, t.port, probe.slice.name, probe.kind)


@dataclass(eq=False, slots=True)
class _Schedule:
    probe: PlannedProbe
    key: PathKey
    builder: WindowBuilder
    step_ns: int  # between two probes of this schedule
    next_due_ns: int
    target: ProbeTarget  # its share of its kind's prober
    retired: bool = False


@dataclass
class SchedulerTelemetry:
    """The scheduler's own health, read by the agent for CollectorHealth."""

    probes_sent: int = 0
    lag_samples: list[int] = field(default_factory=list)  # since the last take_lag()
    lag_p99_ns: int = 0
    lag_max_ns: int = 0

    def take_lag(self) -> None:
        samples = sorted(self.lag_samples)
        self.lag_samples = []
        self.lag_p99_ns = percentile(samples, 0.99) or 0
        self.lag_max_ns = samples[-1] if samples else 0


class Scheduler:
    def __init__(
        self,
        site: str,
        probes: Sequence[PlannedProbe],
        window_s: float,
        on_windows: WindowHandler,
        source_address: str | None = None,
        clock: ClockStatus | None = None,
        *,
        probers: Mapping[str, Callable[[ProberContext], Prober]] = PROBERS,
        observer: SchedulerObserver | None = None,
        slice_option_type: int | None = None,
    ) -> None:
        self.site = site
        self.window_ns = int(window_s * 1e9)
        self.on_windows = on_windows
        self.source_address = source_address
        self.clock = clock or read_clock_status()
        self.telemetry = SchedulerTelemetry()
        self.observer = observer
        # One prober per kind; each opens its sockets only with its first target.
        context = ProberContext(source_address, self.clock, slice_option_type)
        self.probers: dict[str, Prober] = {kind: make(context) for kind, make in probers.items()}
        self._schedules: dict[tuple, _Schedule] = {}
        self._heap: list[tuple[int, int, _Schedule]] = []
        self._counter = 0  # heap tie-breaker
        self._wake = asyncio.Event()
        self._retired_builders: list[WindowBuilder] = []
        # Windows end together (wall-clock aligned), so builders are checked once per window,
        # when the slowest to settle is due, a chunk per loop turn.
        self._next_close_ns = 0
        self._closing: list[_Schedule] = []
        self._max_settle_ns = 0
        for probe in probes:
            self._add(probe)

    # -- the plan ------------------------------------------------------------------------

    @property
    def sessions(self) -> int:
        return len(self._schedules)

    @property
    def send_errors(self) -> int:
        return sum(p.send_errors for p in self.probers.values())

    @property
    def receive_errors(self) -> int:
        """Replies that matched nothing of ours, or did not parse."""
        return sum(p.receive_errors for p in self.probers.values())

    def reload(self, probes: Sequence[PlannedProbe]) -> tuple[int, int]:
        """Apply a new plan: schedules that stay keep their sessions and open windows;
        removed ones stop and their windows are closed out. Returns (added, removed)."""
        wanted = {schedule_key(p): p for p in probes}
        removed = [k for k in self._schedules if k not in wanted]
        for key in removed:
            self._retire(self._schedules.pop(key))
        added = [p for k, p in wanted.items() if k not in self._schedules]
        for probe in added:
            self._add(probe)
        self._wake.set()
        return len(added), len(removed)

    def _add(self, probe: PlannedProbe) -> None:
        prober = self.probers.get(probe.kind)
        if prober is None:
            raise ValueError(f"unknown probe kind {probe.kind!r}")
        step_ns = max(1, int(probe.interval_s * 1e9 / max(1, probe.packets_per_interval)))
        timeout_ns = int(probe.timeout_s * 1e9)
        key = PathKey(self.site, probe.target.name, probe.slice.name, probe.kind)
        # Every probe settles within: its timeout, the wait for a later reply to tell the
        # loss direction (one more timeout), and our own check granularity (one step).
        settle_ns = 2 * timeout_ns + step_ns + HOUSEKEEPING_NS
        builder = WindowBuilder(key, probe.target.address, self.window_ns, settle_ns, probe.slice.dscp)
        self._max_settle_ns = max(self._max_settle_ns, settle_ns)
        spread = zlib.crc32(repr(schedule_key(probe)).encode()) % step_ns
        now = time.time_ns()
        first_due = now - now % step_ns + spread
        if first_due < now:
            first_due += step_ns
        spec = ProbeSpec(probe.target, probe.slice, probe.size, probe.flow_label, timeout_ns)
        target = prober.add(spec, self._result_handler(builder))
        schedule = _Schedule(probe, key, builder, step_ns, first_due, target)
        self._schedules[schedule_key(probe)] = schedule
        self._push(schedule)

    def _result_handler(self, builder: WindowBuilder) -> ResultHandler:
        observer = self.observer
        if observer is None:
            return builder.add

        def observed(result: ProbeResult) -> None:
            observer.on_result(result)
            builder.add(result)

        return observed

    def _retire(self, schedule: _Schedule) -> None:
        schedule.retired = True  # its heap entry is skipped when it comes up
        schedule.target.stop()
        self._retired_builders.append(schedule.builder)

    def _push(self, schedule: _Schedule) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (schedule.next_due_ns, self._counter, schedule))

    # -- running -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Probe until `stop` is set, then flush every session and hand out the last windows."""
        loop = asyncio.get_running_loop()
        for prober in self.probers.values():
            prober.attach(loop)
        self._skip_missed(time.time_ns())
        next_housekeeping = time.time_ns() + HOUSEKEEPING_NS
        try:
            while not stop.is_set():
                now = time.time_ns()
                self._fire_due(now)
                if now >= next_housekeeping:
                    for prober in self.probers.values():
                        prober.expire(now)
                    next_housekeeping = now + HOUSEKEEPING_NS
                self._close_windows(now)
                next_due = self._heap[0][0] if self._heap else now + HOUSEKEEPING_NS
                wait_ns = min(next_due - EARLY_NS, next_housekeeping, self._next_close_ns) - time.time_ns()
                if wait_ns > 0 and not self._closing:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), wait_ns / 1e9)
                    except TimeoutError:
                        pass
                else:
                    await asyncio.sleep(0)  # behind: still let replies in between bursts
        finally:
            for prober in self.probers.values():
                prober.detach(loop)
        self._shutdown()

    def _skip_missed(self, now: int) -> None:
        """Move every schedule's first probe to its next place at or after `now`. Schedules are
        placed when the plan is read, and the agent starts probing later (its start delay, its
        reflector and servers): probes planned before probing began were never due, so they
        are neither sent in a catch-up burst nor counted as scheduling lag."""
        for _due, _n, schedule in self._heap:
            if schedule.next_due_ns < now:
                behind = now - schedule.next_due_ns
                schedule.next_due_ns += -(-behind // schedule.step_ns) * schedule.step_ns
        self._heap = [(s.next_due_ns, n, s) for _due, n, s in self._heap]
        heapq.heapify(self._heap)

    def _fire_due(self, now: int) -> None:
        heap = self._heap
        horizon = now + EARLY_NS
        fired = 0
        while heap and heap[0][0] <= horizon and fired < 256:  # bounded, so replies are read too
            due, _n, schedule = heapq.heappop(heap)
            if schedule.retired:
                continue
            self._fire(schedule, due)
            schedule.next_due_ns = due + schedule.step_ns
            self._push(schedule)
            fired += 1

    def _fire(self, schedule: _Schedule, due_ns: int) -> None:
        now = time.time_ns()
        self.telemetry.lag_samples.append(max(0, now - due_ns))
        self.telemetry.probes_sent += 1
        schedule.target.send(now)

    def _close_windows(self, now: int) -> None:
        """Hand out settled windows: once per window length, CLOSE_CHUNK builders a turn."""
        if not self._closing and now < self._next_close_ns:
            return
        started_ns = time.perf_counter_ns() if self.observer is not None else 0
        if not self._closing:
            self._closing = list(self._schedules.values())
            # Windows become ready at (end of a window) + settle: the first such time after
            # now (settle may be longer than a window, so count from now - settle).
            settle = self._max_settle_ns
            self._next_close_ns = ((now - settle) // self.window_ns + 1) * self.window_ns + settle
        chunk, self._closing = self._closing[:CLOSE_CHUNK], self._closing[CLOSE_CHUNK:]
        windows: list[PathWindow] = []
        for schedule in chunk:
            windows += schedule.builder.close_ready(now)
        if not self._closing:
            for builder in self._retired_builders:
                windows += builder.close_all()
            self._retired_builders.clear()
        if windows:
            self.on_windows(windows)
            if self.observer is not None:
                self.observer.on_windows_closed(len(windows), time.perf_counter_ns() - started_ns)

    def _shutdown(self) -> None:
        windows: list[PathWindow] = []
        for prober in self.probers.values():
            prober.flush()
        for schedule in self._schedules.values():
            windows += schedule.builder.close_all()
        for builder in self._retired_builders:
            windows += builder.close_all()
        if windows:
            self.on_windows(windows)

    def set_fingerprint(self, target: str, slice_name: str, fingerprint: str) -> None:
        """The latest trace of a (target, slice): its windows carry the fingerprint."""
        for schedule in self._schedules.values():
            if schedule.probe.target.name == target and schedule.probe.slice.name == slice_name:
                schedule.builder.fingerprint = fingerprint

    def close(self) -> None:
        for prober in self.probers.values():
            prober.close()
