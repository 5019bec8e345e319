"""The scheduler through its seams, without sockets: any kind its probers table gives it
runs on the same ticks and windows, and an observer sees every result and closing pass."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable

import pytest

from collector.agent import scheduler as scheduler_module
from collector.agent.plan import PlannedProbe
from collector.agent.scheduler import Scheduler
from collector.contract.records import PathWindow, ProbeResult, Slice, Target
from collector.probes.base import ProberContext, ProbeSpec, ResultHandler
from collector.system.clock import shared_host_clock

VIDEO = Slice("video", 34, 1)


class LoopbackProber:
    """A made-up kind that answers every request at once, 1 ms after it left."""

    kind = "loopback"
    title = "loopback"
    minimum_size = 0
    uses_port = False
    send_errors = 0
    receive_errors = 0

    def __init__(self, context: ProberContext) -> None:
        self.context = context
        self.targets: dict[str, _LoopbackTarget] = {}
        self.attached: list[asyncio.AbstractEventLoop] = []
        self.detached: list[asyncio.AbstractEventLoop] = []
        self.flushes = 0
        self.closed = False
        self.sent = asyncio.Event()  # set at each send, for tests to wait on

    def add(self, spec: ProbeSpec, on_result: ResultHandler) -> _LoopbackTarget:
        target = self.targets[spec.target.name] = _LoopbackTarget(self, spec, on_result)
        return target

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.attached.append(loop)

    def detach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.detached.append(loop)

    def expire(self, now_ns: int) -> None:
        pass

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True


class _LoopbackTarget:
    def __init__(self, prober: LoopbackProber, spec: ProbeSpec, on_result: ResultHandler) -> None:
        self.prober, self.spec, self.on_result = prober, spec, on_result
        self.sends = 0
        self.sends_after_stop = 0
        self.stopped = 0

    def send(self, now_ns: int) -> None:
        if self.stopped:
            self.sends_after_stop += 1
        self.sends += 1
        self.on_result(ProbeResult(self.spec.target.name, self.spec.slice.name, self.sends, now_ns, 1_000_000))
        self.prober.sent.set()

    def stop(self) -> None:
        self.stopped += 1


def planned(name: str, kind: str = "loopback") -> PlannedProbe:
    return PlannedProbe(Target(name, "::1", 9), VIDEO, kind, 0.02, 1, 0.05, None, None)


def scheduler_of(probes: list[PlannedProbe], on_windows: Callable[[list[PathWindow]], None], **kw) -> Scheduler:
    return Scheduler(
        "here", probes, 0.2, on_windows, clock=shared_host_clock(), probers={"loopback": LoopbackProber}, **kw
    )


def run(scheduler: Scheduler, script: Callable[[], Awaitable[None]]) -> None:
    """Run the scheduler while `script` runs, then stop it."""

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(scheduler.run(stop))
        try:
            await script()
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    asyncio.run(main())


async def sends_until(prober: LoopbackProber, condition: Callable[[], bool]) -> None:
    while not condition():
        prober.sent.clear()
        await asyncio.wait_for(prober.sent.wait(), 10)


def test_a_kind_from_the_probers_table_runs_on_the_shared_ticks_and_windows():
    windows: list[PathWindow] = []
    scheduler = scheduler_of([planned("a"), planned("b")], windows.extend)
    prober = scheduler.probers["loopback"]
    assert prober.context.clock is scheduler.clock
    a, b = prober.targets["a"], prober.targets["b"]

    async def script() -> None:
        await sends_until(prober, lambda: a.sends >= 10 and b.sends >= 10)
        scheduler.reload([planned("a")])
        await sends_until(prober, lambda: a.sends >= b.sends + 10)

    try:
        run(scheduler, script)
    finally:
        scheduler.close()
    assert (b.stopped, b.sends_after_stop, a.stopped) == (1, 0, 0)
    assert len(prober.attached) == 1 and prober.detached == prober.attached and prober.flushes == 1 and prober.closed
    assert {w.key.kind for w in windows} == {"loopback"}
    for name, target in (("a", a), ("b", b)):
        path = [w for w in windows if w.key.target == name]
        assert sum(w.sent for w in path) == sum(w.received for w in path) == target.sends  # every result, once
    assert scheduler.telemetry.probes_sent == a.sends + b.sends


def test_a_kind_missing_from_the_probers_table_is_refused():
    with pytest.raises(ValueError, match="unknown probe kind 'nope'"):
        scheduler_of([planned("a", kind="nope")], lambda w: None)


def test_an_observer_sees_every_result_and_every_closing_pass():
    class Observer:
        def __init__(self) -> None:
            self.results: list[ProbeResult] = []
            self.passes: list[tuple[int, int]] = []

        def on_result(self, result: ProbeResult) -> None:
            self.results.append(result)

        def on_windows_closed(self, windows: int, duration_ns: int) -> None:
            self.passes.append((windows, duration_ns))

    batches: list[list[PathWindow]] = []
    observer = Observer()
    scheduler = scheduler_of([planned("a"), planned("b")], batches.append, observer=observer)
    try:
        run(scheduler, lambda: sends_until(scheduler.probers["loopback"], lambda: len(observer.passes) >= 2))
    finally:
        scheduler.close()
    # Every batch but the last, which the shutdown hands out, came from a closing pass.
    assert [n for n, _ in observer.passes] == [len(b) for b in batches[:-1]]
    assert all(duration > 0 for _, duration in observer.passes)
    assert len(observer.results) == sum(w.sent for b in batches for w in b) == scheduler.telemetry.probes_sent


def test_a_closing_pass_is_cut_into_turns_and_lets_the_loop_run_between_them(monkeypatch):
    # Every clock read is past the slice: a turn closes CLOSE_CLOCK_EVERY builders, then
    # yields; with a batch of 1 each turn hands its windows out at once.
    monkeypatch.setattr(scheduler_module, "CLOSE_SLICE_NS", 0)
    monkeypatch.setattr(scheduler_module, "CLOSE_BATCH", 1)
    names = [f"t{i}" for i in range(5 * scheduler_module.CLOSE_CLOCK_EVERY)]
    batches: list[list[PathWindow]] = []
    loop_ran_between: list[bool] = []
    ran = [True]

    def on_windows(windows: list[PathWindow]) -> None:
        batches.append(windows)
        loop_ran_between.append(ran[0])
        ran[0] = False
        asyncio.get_running_loop().call_soon(ran.__setitem__, 0, True)

    scheduler = scheduler_of([planned(n) for n in names], on_windows)
    try:
        run(scheduler, lambda: sends_until(scheduler.probers["loopback"], lambda: len(batches) >= 2 * 5))
    finally:
        scheduler.close()
    closing = batches[: len(batches) - 1]  # the last came from the shutdown
    assert all(len(b) <= scheduler_module.CLOSE_CLOCK_EVERY for b in closing)
    assert all(loop_ran_between[: len(closing)])  # other callbacks ran between two slices
    by_path: dict[str, list[int]] = {}
    for window in (w for b in batches for w in b):
        by_path.setdefault(window.key.target, []).append(window.seq)
    assert sorted(by_path) == sorted(names)
    for seqs in by_path.values():  # every path's windows, each once, one after another
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_an_error_in_a_turn_ends_the_run_with_it():
    scheduler = scheduler_of([planned("a")], lambda windows: None)
    target = scheduler.probers["loopback"].targets["a"]

    def broken_send(now_ns: int) -> None:
        raise RuntimeError("the prober broke")

    target.send = broken_send  # type: ignore[method-assign]

    async def main() -> None:
        await asyncio.wait_for(scheduler.run(asyncio.Event()), 10)

    try:
        with pytest.raises(RuntimeError, match="the prober broke"):
            asyncio.run(main())
    finally:
        scheduler.close()


def test_while_it_runs_the_scheduler_paces_the_collector_and_its_heap_holds_nothing_tracked():
    """At 10,000 targets CPython's own pacing walked tens of thousands of young objects at a
    time and set the scheduling lag's p99; the turns collect the young generation instead."""
    collections: list[int] = []

    def note(phase: str, info: dict) -> None:
        if phase == "start":
            collections.append(info["generation"])

    scheduler = scheduler_of([planned(f"t{i}") for i in range(50)], lambda windows: None)
    prober = scheduler.probers["loopback"]
    enabled_while_running: list[bool] = []

    async def script() -> None:
        await sends_until(prober, lambda: prober.targets["t0"].sends >= 5)
        collections.clear()
        await sends_until(prober, lambda: collections.count(0) >= 3)  # young steps, from the turns
        enabled_while_running.append(gc.isenabled())
        heap = scheduler._heap
        assert heap and not any(gc.is_tracked(entry) for entry in heap)

    gc.callbacks.append(note)
    try:
        run(scheduler, script)
    finally:
        gc.callbacks.remove(note)
    assert enabled_while_running == [False]
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_retired_schedule_s_slot_goes_to_a_later_one_and_each_keeps_its_own_probes():
    scheduler = scheduler_of([planned("a"), planned("b")], lambda windows: None)
    prober = scheduler.probers["loopback"]

    async def script() -> None:
        a = prober.targets["a"]
        await sends_until(prober, lambda: a.sends >= 3)
        scheduler.reload([planned("a")])  # b retires; its slot is free once its entry comes up
        await sends_until(prober, lambda: a.sends >= 10)
        scheduler.reload([planned("a"), planned("c")])
        c = prober.targets["c"]
        await sends_until(prober, lambda: c.sends >= 5)
        sent_b = prober.targets["b"].sends
        await sends_until(prober, lambda: c.sends >= 10 and a.sends >= 20)
        assert prober.targets["b"].sends == sent_b and prober.targets["b"].sends_after_stop == 0
        assert len(scheduler._slots) == 2  # c took b's slot

    run(scheduler, script)


def test_a_run_whose_set_up_fails_leaves_the_collector_as_it_found_it(monkeypatch):
    """The wake-up timer refused (no file descriptor left): the run ends with the error, and
    automatic collection is on again, with nothing frozen, for the process that carries on."""

    def refused() -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(scheduler_module, "WakeupTimer", refused)
    scheduler = scheduler_of([planned("a")], lambda windows: None)

    async def main() -> None:
        await scheduler.run(asyncio.Event())

    with pytest.raises(OSError, match="Too many open files"):
        asyncio.run(main())
    assert gc.isenabled() and gc.get_freeze_count() == 0
