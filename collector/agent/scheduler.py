"""The probe plan, running: every (target, slice, probe kind) on its own schedule.

One heap of due times and one wake-up timer (collector.agent.wakeup: microseconds, where the
event loop's own timers are milliseconds) serve every schedule, so ten thousand targets
cost ten thousand heap entries, not ten thousand tasks. Each schedule's first probe is
placed at a stable, hash-spread point of its interval, so probes never leave in a burst and
keep their places across restarts. Probes go out up to EARLY_NS before their planned time:
a wake-up may come late (the machine's own scheduling latency), and leaving a little early
is harmless where leaving late shows up as scheduling lag. The scheduler knows no probe kind:
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

from collector.agent.gc_pacing import CollectionPacer
from collector.agent.plan import PlannedProbe
from collector.agent.wakeup import WakeupTimer
from collector.agent.windows import PathWindows
from collector.contract.records import PathKey, PathWindow, ProbeResult
from collector.probes.base import Prober, ProberContext, ProbeSpec, ProbeTarget
from collector.probes.registry import PROBERS
from collector.probes.summary import percentile
from collector.system.clock import ClockStatus, read_clock_status

EARLY_NS = 500_000
# Turns are at least this far apart while nothing is behind: at 10,000 probes a second a
# turn sends the few due within it, not one probe per wake-up (less than EARLY_NS, so that
# no probe leaves late for it).
TICK_NS = 250_000
# How often probers check their timeouts: often enough that one check has little to do (at
# 10,000 echo targets a check every 100 ms went through ~1,000 deadlines, holding the loop up
# to 2.6 ms when they were losses).
HOUSEKEEPING_NS = 20_000_000
FIRE_BATCH = 256  # probes sent per turn at most, so that replies are read between bursts
# Closing windows holds the loop at most about this long per turn (the clock read every
# CLOSE_CLOCK_EVERY builders), so a probe due meanwhile leaves no later than that.
CLOSE_SLICE_NS = 250_000
CLOSE_CLOCK_EVERY = 8
CLOSE_BATCH = 500  # windows per `on_windows` call (the agent ships each call as one batch)
# A heap entry is one int, (due ns << SLOT_BITS) | the schedule's slot: a tuple holding the
# schedule would be a tracked object, and 10,000 of them, each replaced every second, kept
# the garbage collector's young and middle generations full (collector.agent.gc_pacing).
SLOT_BITS = 24
SLOT_MASK = (1 << SLOT_BITS) - 1
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


class _Schedule(PathWindows):
    """One probe schedule: its planned probe, when it is due next, its share of its kind's
    prober, and, as the PathWindows it is, its path's open windows (the prober hands it each
    settled result)."""

    __slots__ = ("site", "probe", "step_ns", "next_due_ns", "slot", "target", "retired")

    target: ProbeTarget  # set once its prober has taken it

    def __init__(
        self,
        site: str,
        probe: PlannedProbe,
        window_ns: int,
        settle_ns: int,
        step_ns: int,
        first_due_ns: int,
        slot: int,
    ) -> None:
        super().__init__(probe.target.address, window_ns, settle_ns, probe.slice.dscp)
        self.site = site
        self.probe = probe
        self.step_ns = step_ns  # between two probes of this schedule
        self.next_due_ns = first_due_ns
        self.slot = slot  # its place in the scheduler's slots, the low bits of its heap entry
        self.retired = False

    def path_key(self) -> PathKey:
        """Made when windows close (once a window), not kept: a PathKey per pair is 64 bytes."""
        probe = self.probe
        return PathKey(self.site, probe.target.name, probe.slice.name, probe.kind)


class _ObservedSchedule(_Schedule):
    """A schedule whose results a benchmark watches on their way to its windows."""

    __slots__ = ("observer",)

    observer: SchedulerObserver

    def add(self, result: ProbeResult) -> None:
        self.observer.on_result(result)
        super().add(result)

    __call__ = add


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
        self._schedules: list[_Schedule] = []  # in the order they were added
        self._heap: list[int] = []  # (due ns << SLOT_BITS) | slot
        self._slots: list[_Schedule | None] = []
        self._free_slots: list[int] = []  # of retired schedules whose heap entry has gone
        # One int object per value that many schedules share (intervals, timeouts, settle
        # delays): 10,000 schedules of one interval hold one, not 10,000.
        self._ints: dict[int, int] = {}
        self._collections = CollectionPacer()
        self._timer: WakeupTimer | None = None  # while running
        self._failure: asyncio.Future[None] | None = None  # while running: a turn's error
        self._next_housekeeping_ns = 0
        self._retired: list[_Schedule] = []  # their windows are still to be handed out
        # Windows end together (wall-clock aligned), so builders are checked once per window,
        # when the slowest to settle is due, a time slice per turn.
        self._next_close_ns = 0
        self._closing: list[_Schedule] = []  # this pass's schedules still to check, last first
        self._closed: list[PathWindow] = []  # this pass's windows not handed out yet
        self._max_settle_ns = 0
        for probe in {schedule_key(p): p for p in probes}.values():  # one schedule per key, as a reload keeps
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
        current = {schedule_key(s.probe): s for s in self._schedules}
        removed = [s for k, s in current.items() if k not in wanted]
        for schedule in removed:
            self._retire(schedule)
        self._schedules = [s for s in self._schedules if not s.retired]
        added = [p for k, p in wanted.items() if k not in current]
        for probe in added:
            self._add(probe)
        if self._timer is not None:
            self._collections.refreeze()  # the new schedules, as at the start of the run
            self._timer.arm(0)  # new schedules may be due before the time the timer has
        return len(added), len(removed)

    def _add(self, probe: PlannedProbe) -> None:
        prober = self.probers.get(probe.kind)
        if prober is None:
            raise ValueError(f"unknown probe kind {probe.kind!r}")
        step_ns = self._shared(max(1, int(probe.interval_s * 1e9 / max(1, probe.packets_per_interval))))
        timeout_ns = self._shared(int(probe.timeout_s * 1e9))
        # Every probe settles within: its timeout, the wait for a later reply to tell the
        # loss direction (one more timeout), and our own check granularity (one step).
        settle_ns = self._shared(2 * timeout_ns + step_ns + HOUSEKEEPING_NS)
        self._max_settle_ns = max(self._max_settle_ns, settle_ns)
        spread = zlib.crc32(repr(schedule_key(probe)).encode()) % step_ns
        now = time.time_ns()
        first_due = now - now % step_ns + spread
        if first_due < now:
            first_due += step_ns
        if self._free_slots:
            slot = self._free_slots.pop()
        elif len(self._slots) <= SLOT_MASK:
            slot = len(self._slots)
            self._slots.append(None)
        else:
            raise ValueError(f"more than {SLOT_MASK + 1} schedules")
        if self.observer is None:
            schedule = _Schedule(self.site, probe, self.window_ns, settle_ns, step_ns, first_due, slot)
        else:
            schedule = _ObservedSchedule(self.site, probe, self.window_ns, settle_ns, step_ns, first_due, slot)
            schedule.observer = self.observer
        spec = ProbeSpec(probe.target, probe.slice, probe.size, probe.flow_label, timeout_ns)
        schedule.target = prober.add(spec, schedule)  # the schedule takes its results
        self._schedules.append(schedule)
        self._slots[slot] = schedule
        heapq.heappush(self._heap, first_due << SLOT_BITS | slot)

    def _shared(self, value: int) -> int:
        return self._ints.setdefault(value, value)

    def _retire(self, schedule: _Schedule) -> None:
        schedule.retired = True  # its heap entry is skipped when it comes up
        schedule.target.stop()
        self._retired.append(schedule)

    # -- running -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Probe until `stop` is set, then flush every session and hand out the last windows.

        The work runs in turns, each started by the wake-up timer: send what is due, let the
        probers check their timeouts when that is due, close a slice of the settled windows,
        and arm the timer for the next thing due. Between two turns the loop reads replies."""
        loop = asyncio.get_running_loop()
        for prober in self.probers.values():
            prober.attach(loop)
        # The plan's objects (schedules, sessions, window builders: most of what an agent with
        # 10,000 targets holds) live as long as the run: frozen, a full garbage collection no
        # longer walks them all, which held the loop ~90 ms at 10,000 STAMP targets. Garbage of
        # the start-up is collected first, so none of it is frozen, and before the schedules
        # are placed, so that pause is no probe's lag. From then on the turns pace collection.
        self._collections.start()
        try:
            now = time.time_ns()
            self._skip_missed(now)
            self._next_housekeeping_ns = now + HOUSEKEEPING_NS
            self._failure = loop.create_future()
            stopping = asyncio.ensure_future(stop.wait())
            with WakeupTimer() as timer:
                self._timer = timer
                loop.add_reader(timer.fileno(), self._turn)
                timer.arm(0)
                try:
                    await asyncio.wait((stopping, self._failure), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopping.cancel()
                    loop.remove_reader(timer.fileno())
                    self._timer = None
                    for prober in self.probers.values():
                        prober.detach(loop)
        finally:
            self._collections.stop()  # also when the run is cancelled or its set-up failed
        if self._failure.done():
            self._failure.result()  # a turn failed: the run ends with its error
        self._shutdown()

    def _turn(self) -> None:
        assert self._timer is not None  # only while running
        try:
            now = time.time_ns()
            behind = self._fire_due(now)
            if now >= self._next_housekeeping_ns:
                for prober in self.probers.values():
                    prober.expire(now)
                self._collections.young()
                self._next_housekeeping_ns = now + HOUSEKEEPING_NS
            closing = self._close_windows(now)
        except Exception as exc:  # a bug: end the run with it rather than stop probing silently
            if self._failure is not None and not self._failure.done():
                self._failure.set_exception(exc)
            return
        if behind:
            self._timer.arm(0)  # again at once, after the replies waiting meanwhile are read
            return
        next_due = (self._heap[0] >> SLOT_BITS) - EARLY_NS if self._heap else now + HOUSEKEEPING_NS
        # A closing pass goes on a tick later: at most half the loop's time, the rest is
        # left to replies.
        next_close = now if closing else self._next_close_ns
        wake_ns = max(min(next_due, self._next_housekeeping_ns, next_close), now + TICK_NS)
        self._timer.arm(wake_ns - time.time_ns())

    def _skip_missed(self, now: int) -> None:
        """Move every schedule's first probe to its next place at or after `now`. Schedules are
        placed when the plan is read, and the agent starts probing later (its start delay, its
        reflector and servers): probes planned before probing began were never due, so they
        are neither sent in a catch-up burst nor counted as scheduling lag."""
        heap = []
        for entry in self._heap:
            slot = entry & SLOT_MASK
            schedule = self._slots[slot]
            assert schedule is not None  # a slot is free only once its entry is gone
            if schedule.next_due_ns < now:
                behind = now - schedule.next_due_ns
                schedule.next_due_ns += -(-behind // schedule.step_ns) * schedule.step_ns
            heap.append(schedule.next_due_ns << SLOT_BITS | slot)
        heapq.heapify(heap)
        self._heap = heap

    def _fire_due(self, now: int) -> bool:
        """Send what is due; True if more is due than one turn sends."""
        heap, slots = self._heap, self._slots
        horizon = (now + EARLY_NS) << SLOT_BITS | SLOT_MASK
        telemetry = self.telemetry
        fired = 0
        while heap and heap[0] <= horizon:
            if fired == FIRE_BATCH:  # bounded, so replies are read in between
                return True
            entry = heap[0]
            slot = entry & SLOT_MASK
            schedule = slots[slot]
            assert schedule is not None  # a slot is free only once its entry is gone
            if schedule.retired:
                heapq.heappop(heap)
                slots[slot] = None
                self._free_slots.append(slot)
                continue
            due = entry >> SLOT_BITS
            sent_ns = time.time_ns()
            telemetry.lag_samples.append(max(0, sent_ns - due))
            telemetry.probes_sent += 1
            schedule.target.send(sent_ns)
            schedule.next_due_ns = due + schedule.step_ns
            heapq.heapreplace(heap, schedule.next_due_ns << SLOT_BITS | slot)  # one sift, not two
            fired += 1
        return False

    def _close_windows(self, now: int) -> bool:
        """Hand out settled windows: one pass over every builder per window length (windows
        end together, on the wall clock), CLOSE_SLICE_NS of it per turn, so that no turn holds
        the loop longer than that; windows go to `on_windows` once CLOSE_BATCH (or more) have
        gathered, the rest when the pass ends. True while the pass goes on."""
        if not self._closing and now < self._next_close_ns:
            return False
        started_ns = time.perf_counter_ns()
        if not self._closing:
            self._closing = self._schedules[::-1]  # taken from the end: in the order the schedules were added
            # Windows become ready at (end of a window) + settle: the first such time after
            # now (settle may be longer than a window, so count from now - settle).
            settle = self._max_settle_ns
            self._next_close_ns = ((now - settle) // self.window_ns + 1) * self.window_ns + settle
        closing, closed = self._closing, self._closed
        deadline_ns = started_ns + CLOSE_SLICE_NS
        while closing:
            closed += closing.pop().close_ready(now)
            if len(closing) % CLOSE_CLOCK_EVERY == 0 and time.perf_counter_ns() >= deadline_ns:
                break
        if not closing:
            for schedule in self._retired:
                closed += schedule.close_all()
                # Its session calls it back: without that cycle it goes by reference counting
                # once its heap entry is popped, frozen or not (CollectionPacer).
                del schedule.target
            self._retired.clear()
        if len(closed) >= CLOSE_BATCH or (closed and not closing):
            self._closed = []
            self.on_windows(closed)
            if self.observer is not None:
                self.observer.on_windows_closed(len(closed), time.perf_counter_ns() - started_ns)
        if not closing and self._collections.running:
            # The pass is over and its windows handed out: the heap holds the least it will
            # hold until the next pass, when a full collection has least to walk.
            self._collections.full()
        return bool(closing)

    def _shutdown(self) -> None:
        windows, self._closed = self._closed, []
        self._closing = []  # a pass cut short by the stop: its builders are closed below
        for prober in self.probers.values():
            prober.flush()
        for schedule in self._schedules:
            windows += schedule.close_all()
        for schedule in self._retired:
            windows += schedule.close_all()
        if windows:
            self.on_windows(windows)

    def set_fingerprint(self, target: str, slice_name: str, fingerprint: str) -> None:
        """The latest trace of a (target, slice): its windows carry the fingerprint."""
        for schedule in self._schedules:
            if schedule.probe.target.name == target and schedule.probe.slice.name == slice_name:
                schedule.fingerprint = fingerprint

    def close(self) -> None:
        for prober in self.probers.values():
            prober.close()
