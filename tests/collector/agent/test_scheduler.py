"""The scheduler over real sockets on loopback: windows per path, spreading, reload."""

from __future__ import annotations

import asyncio
import time

from collector.agent.plan import PlannedProbe
from collector.agent.scheduler import Scheduler
from collector.contract.records import Slice, Target
from collector.reflector.session_reflector import Reflector, ReflectorConfig
from collector.system.clock import shared_host_clock
from tests import support

VIDEO = Slice("video", 34, 1)
EGOV = Slice("egov", 26, 2)


def planned(name: str, port: int, slice_: Slice, kind: str = "stamp", interval_s: float = 0.05) -> PlannedProbe:
    return PlannedProbe(Target(name, "::1", port), slice_, kind, interval_s, 1, 0.2, None, None)


def run_until(scheduler: Scheduler, done, during=None) -> None:
    stop = asyncio.Event()
    support.run_until(lambda: scheduler.run(stop), stop.set, done, during)


def test_every_path_gets_consecutive_windows_with_its_probes():
    windows = []
    config = ReflectorConfig(bind=("::1",), port=0, stateful=True, rate_limit_pps=0, clock=shared_host_clock())
    with Reflector(config) as reflector:
        probes = [planned(f"t{i}", reflector.port, s) for i in range(3) for s in (VIDEO, EGOV)]
        scheduler = Scheduler("here", probes, 0.5, windows.extend, clock=shared_host_clock())
        waited = support.cpu_wait_ns()
        try:  # 2.1 s worth of probes, whatever time the machine took to send them
            run_until(
                scheduler, lambda: scheduler.telemetry.probes_sent >= 6 * 42 and support.nothing_in_flight(scheduler)
            )
        finally:
            waited = support.cpu_wait_ns() - waited
            scheduler.close()
    by_path: dict = {}
    for w in windows:
        by_path.setdefault(w.key, []).append(w)
    assert len(by_path) == 6
    for key, path_windows in by_path.items():
        seqs = [w.seq for w in path_windows]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), key  # no gaps, no repeats
        sent = sum(w.sent for w in path_windows)
        assert 38 <= sent <= 46, (key, sent)  # 2.1 s at 20 probes/s, and the stop's own moment
        assert sum(w.received for w in path_windows) == sent
        assert all(w.dscp_remarked == 0 for w in path_windows)
        assert all(w.forward_owd_p50_ns is not None for w in path_windows if w.received)
    assert scheduler.telemetry.probes_sent >= 6 * 38
    scheduler.telemetry.take_lag()
    # Generous, and the time the machine kept this process from a CPU is not the scheduler's lag.
    assert scheduler.telemetry.lag_p99_ns < 50_000_000 + waited


def test_probing_that_starts_after_the_plan_was_read_neither_bursts_nor_reports_lag():
    """The agent reads its plan, then starts its reflector, its servers and waits its start
    delay before probing: the probes planned for that time were never due. Counting them as
    late read as a second's scheduling lag at every start, an unhealthy host to root-cause
    inference, and sending them at once was a burst of every schedule's missed probes."""
    start_delay_s = 1.5
    config = ReflectorConfig(bind=("::1",), port=0, stateful=True, rate_limit_pps=0, clock=shared_host_clock())
    with Reflector(config) as reflector:
        probes = [planned(f"t{i}", reflector.port, s) for i in range(3) for s in (VIDEO, EGOV)]
        scheduler = Scheduler("here", probes, 0.5, lambda w: None, clock=shared_host_clock())
        time.sleep(start_delay_s)  # the agent's start delay: the condition under test, not a wait
        waited = support.cpu_wait_ns()
        started = time.monotonic()
        try:  # 0.5 s worth of probes at 20 probes/s per schedule
            run_until(scheduler, lambda: scheduler.telemetry.probes_sent >= 6 * 10)
        finally:
            took = time.monotonic() - started
            waited = support.cpu_wait_ns() - waited
            scheduler.close()
    # A catch-up would have sent 6 x 30 missed probes at once, within the first turns of the loop.
    assert took > 0.4 - waited / 1e9, took
    scheduler.telemetry.take_lag()
    assert scheduler.telemetry.lag_p99_ns < 50_000_000 + waited


def test_schedules_are_spread_over_their_interval():
    probes = [planned(f"t{i}", 9, VIDEO, interval_s=1.0) for i in range(50)]
    scheduler = Scheduler("here", probes, 10, lambda w: None, clock=shared_host_clock())
    try:
        offsets = sorted(s.next_due_ns % 1_000_000_000 for s in scheduler._schedules)
    finally:
        scheduler.close()
    # 50 schedules on one 1 s interval: no two within 1 us of each other, and spanning it.
    assert all(b - a > 1_000 for a, b in zip(offsets, offsets[1:]))
    assert offsets[-1] - offsets[0] > 800_000_000


def test_reload_keeps_staying_schedules_and_closes_removed_ones():
    windows = []
    with Reflector(ReflectorConfig(bind=("::1",), port=0, rate_limit_pps=0)) as reflector:
        keep, drop, new = (planned(n, reflector.port, VIDEO) for n in ("keep", "drop", "new"))
        scheduler = Scheduler("here", [keep, drop], 0.5, windows.extend, clock=shared_host_clock())
        kept_session = next(s for s in scheduler._schedules if s.probe is keep).target
        dropped = next(s for s in scheduler._schedules if s.probe is drop)
        changes = []

        def freed() -> bool:
            """Its windows out, it no longer holds its session, which holds it: without the
            cycle it goes by reference counting, although the plan it came with was frozen."""
            return not hasattr(dropped, "target")

        try:  # reload once both first schedules have probed; stop once every target's windows are out
            run_until(
                scheduler,
                lambda: {w.key.target for w in windows} == {"keep", "drop", "new"} and freed(),
                during=(
                    lambda: scheduler.telemetry.probes_sent >= 2 * 10,
                    lambda: changes.append(scheduler.reload([keep, new])),
                ),
            )
        finally:
            scheduler.close()
    assert changes == [(1, 1)]
    assert next(s for s in scheduler._schedules if s.probe.target.name == "keep").target is kept_session
    targets = {w.key.target for w in windows}
    assert targets == {"keep", "drop", "new"}
    last_drop = max(w.end_ns for w in windows if w.key.target == "drop")
    assert last_drop <= time.time_ns()


def test_icmp_echo_schedules_share_one_socket():
    windows = []
    probes = [planned("lo", 0, s, kind="icmp") for s in (VIDEO, EGOV)]
    scheduler = Scheduler("here", probes, 0.5, windows.extend, clock=shared_host_clock())
    try:  # 1.5 s worth of echo requests, and their replies read (a loaded machine reads them late)
        run_until(scheduler, lambda: scheduler.telemetry.probes_sent >= 2 * 30 and support.nothing_in_flight(scheduler))
    finally:
        scheduler.close()
    received = {}
    for w in windows:
        received[w.key.slice] = received.get(w.key.slice, 0) + w.received
    assert set(received) == {"video", "egov"} and min(received.values()) >= 20


def test_windows_are_handed_out_one_window_after_another_when_settling_outlasts_a_window():
    windows_with_delay = []

    def collect(windows):
        now = time.time_ns()
        windows_with_delay.extend((now - w.end_ns, w) for w in windows)

    config = ReflectorConfig(bind=("::1",), port=0, rate_limit_pps=0, clock=shared_host_clock())
    with Reflector(config) as reflector:
        # 0.5 s windows; settling takes 2 x 0.4 s timeout + 0.05 s step + 0.1 s: longer than a window.
        probe = PlannedProbe(Target("t", "::1", reflector.port), VIDEO, "stamp", 0.05, 1, 0.4, None, None)
        scheduler = Scheduler("here", [probe], 0.5, collect, clock=shared_host_clock())
        waited = support.cpu_wait_ns()
        try:  # five windows handed out while running, then the stop's
            run_until(scheduler, lambda: len(windows_with_delay) >= 5)
        finally:
            waited = support.cpu_wait_ns() - waited
            scheduler.close()
    settle_ns = 2 * 400_000_000 + 50_000_000 + 100_000_000
    delays = [delay for delay, w in windows_with_delay[:-1]]  # the last ones are flushed at the stop
    assert len(delays) >= 4
    # None waits an extra window (the time the machine kept this process from a CPU excused).
    assert all(delay < settle_ns + 200_000_000 + waited for delay in delays), (delays, waited)
