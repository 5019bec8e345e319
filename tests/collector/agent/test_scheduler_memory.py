"""The scheduler's memory per (target, slice) pair, counted by tracemalloc (the interpreter's
own allocations, not RSS, so the same each run): what the plan holds once the scheduler is
built, and what fifteen seconds at a probe a second add (requests remembered, one window
settling and the next half full: the most a pair holds). The probes are driven by hand
through the real sessions, with made-up times, so no socket carries them and the machine's
load does not change what is counted.

Measured at 1,000 pairs, built and after probing (STAMP with synchronised clocks, so with
one-way delays): STAMP 2,450 and 5,520 bytes before the memory work of issue 18, 750 and
2,310 after; echo 1,340 and 4,270 before, 770 and 1,810 after. The bounds leave room for
the interpreter's own variations, not for the dicts and objects per pair there were before."""

from __future__ import annotations

import gc
import socket
import tracemalloc
from collections.abc import Callable

from collector.agent.plan import PlannedProbe
from collector.agent.scheduler import Scheduler
from collector.contract.records import ProbeResult, Slice, Target
from collector.probes.stamp_session import ReplyFacts
from collector.system.clock import shared_host_clock
from collector.wire.icmp6 import ECHO_REPLY, Echo, decode_echo, encode_echo
from tests.stamp_support import reflect_request

PAIRS = 1000
SECONDS = 15  # the last window full and settling, the next half full: the most a pair holds
S = 1_000_000_000
T0 = 1_700_000_000 * S  # a window boundary
BEST_EFFORT = Slice("best-effort", 0)


def plan(kind: str) -> list[PlannedProbe]:
    return [
        PlannedProbe(Target(f"t{i}", f"fd00:5ca1::{i:x}", 8620), BEST_EFFORT, kind, 1.0, 1, 2.0, None, None)
        for i in range(1, PAIRS + 1)
    ]


def grown_per_pair(before: tracemalloc.Snapshot) -> float:
    gc.collect()
    return sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename")) / PAIRS


def measure(kind: str, probe_once: Callable[[Scheduler, int], None]) -> tuple[float, float]:
    """Bytes per pair once the scheduler is built, and after SECONDS of probing."""
    probes = plan(kind)
    windows: list = []
    # Once first, so that what the first target of a process costs is not counted (modules
    # imported on first use, such as the IDNA codec of getaddrinfo).
    Scheduler("here", probes[:1], 10.0, windows.extend, clock=shared_host_clock()).close()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        scheduler = Scheduler("here", probes, 10.0, windows.extend, clock=shared_host_clock())
        idle = grown_per_pair(before)
        try:
            for second in range(SECONDS):
                now = T0 + second * S
                probe_once(scheduler, now)
                for schedule in scheduler._schedules:  # as the closing pass does
                    windows += schedule.close_ready(now)
                windows.clear()  # shipped
            running = grown_per_pair(before)
        finally:
            scheduler.close()
    finally:
        tracemalloc.stop()
    return idle, running


def stamp_once(scheduler: Scheduler, now: int) -> None:
    """Each STAMP session sends a request the reflector answers 50 us later."""
    for schedule in scheduler._schedules:
        session = schedule.target  # the prober's session on its shared socket
        settled: list[ProbeResult] = session.expire(now)
        seq, octets = session.request(now)
        session.on_transmitted(seq, now + 1_000)
        reply, _ = reflect_request(octets, receive_ns=now + 20_000, transmit_ns=now + 30_000, error_estimate=0x8001)
        settled += session.on_reply(reply, ReplyFacts(now + 50_000, 64, 0))
        for result in settled:
            schedule(result)  # a schedule takes its results


def echo_once(scheduler: Scheduler, now: int) -> None:
    """Each echo target sends a request answered 50 us later."""
    echo = scheduler.probers["icmp"].echo
    session = echo.session
    by_name = {s.probe.target.name: s for s in scheduler._schedules}
    for schedule in scheduler._schedules:
        _seq, key, octets = session.request(schedule.target.index, now)
        session.on_transmitted(key, now + 1_000)
        request = decode_echo(octets)
        reply = encode_echo(Echo(ECHO_REPLY, request.identifier, request.sequence, request.payload))
        source = socket.inet_pton(socket.AF_INET6, schedule.probe.target.address)
        for result in session.on_reply(source, reply, ReplyFacts(now + 50_000, 64, 0)):
            schedule(result)
    for result in session.expire(now):
        by_name[result.target](result)


def test_a_stamp_pair_holds_under_1100_bytes_built_and_3000_probing():
    idle, running = measure("stamp", stamp_once)
    assert idle < 1_100, idle
    assert running < 3_000, running


def test_an_echo_pair_holds_under_1100_bytes_built_and_2500_probing():
    idle, running = measure("icmp", echo_once)
    assert idle < 1_100, idle
    assert running < 2_500, running
