"""The asyncio trace driver over a simulated path: no network, real event loop."""

from __future__ import annotations

import asyncio
import socket
import time

from collector.contract.records import FlowId, HopAnswer
from collector.probes.trace import TraceRunner, TraceTransport
from collector.probes.trace_match import FlowSet
from collector.probes.trace_session import Answer, TraceSession, TraceSettings, report
from tests.support import Stopwatch

R1, R2, TARGET = "2001:db8::1", "2001:db8::2", "2001:db8:9::1"


class SimulatedPath(TraceTransport):
    """Routers R1, R2, then the target; each send is answered at once through a socketpair,
    except probes `silent` picks, which vanish."""

    protocol = "udp"

    def __init__(self, flows: int = 1, silent=lambda flow, seq, hop: False, refuse_hop: int | None = None):
        self.flows = FlowSet(TARGET, tuple(FlowId("udp", 0x100 + i, 40000 + i, 33434) for i in range(flows)))
        self._wake, self._signal = socket.socketpair()
        self._wake.setblocking(False)
        self._sockets = [self._wake, self._signal]
        self._pending: list[Answer] = []
        self.sent: list[tuple[int, int, int]] = []
        self.silent = silent
        self.refuse_hop = refuse_hop

    def readers(self):
        return [(self._wake, self._read)]

    def _read(self) -> list[Answer]:
        try:
            self._wake.recv(4096)
        except BlockingIOError:
            pass
        answers, self._pending = self._pending, []
        return answers

    def send(self, flow: int, seq: int, hop: int) -> None:
        if hop == self.refuse_hop:
            raise OSError(101, "Network is unreachable")
        self.sent.append((flow, seq, hop))
        if self.silent(flow, seq, hop):
            return
        who, kind = (
            (R1, HopAnswer.TIME_EXCEEDED)
            if hop == 1
            else (R2, HopAnswer.TIME_EXCEEDED)
            if hop == 2
            else (TARGET, HopAnswer.REACHED)
        )
        self._pending.append(Answer(flow, seq, who, time.time_ns() + 1000, kind))
        self._signal.send(b"!")


def settings(**kw) -> TraceSettings:
    values = dict(target="t", slice="-", probes_per_hop=3, max_hops=10, timeout_ns=200_000_000)
    values.update(kw)
    return TraceSettings(**values)


def test_one_flow_traces_the_path_and_stops_at_the_target():
    path = SimulatedPath()
    session = TraceSession(settings(), path.flows.flows[0])
    asyncio.run(TraceRunner(path, [(0, session, 0)], parallel=4).run())
    assert session.observation("s", 0).hops == (R1, R2, TARGET) and session.reached
    assert all(hop <= 4 for _f, _s, hop in path.sent)  # the window let at most one hop beyond through
    assert all(p.rtt_ns is not None and p.rtt_ns > 0 for p in session.probes())


def test_silent_probes_become_stars_after_the_timeout():
    path = SimulatedPath(silent=lambda flow, seq, hop: hop == 2)
    session = TraceSession(settings(timeout_ns=50_000_000), path.flows.flows[0])
    started, watch = time.monotonic(), Stopwatch()  # the machine's share excused from the upper bound
    asyncio.run(TraceRunner(path, [(0, session, 0)]).run())
    assert time.monotonic() - started > 0.04  # the timeout passed, which no load shortens
    assert watch.seconds() < 1.0
    assert session.observation("s", 0).hops == (R1, None, TARGET)


def test_flows_are_told_apart_and_each_keeps_its_own_probes():
    path = SimulatedPath(flows=3)
    sessions = [TraceSession(settings(), f) for f in path.flows.flows]
    asyncio.run(TraceRunner(path, [(i, s, 0) for i, s in enumerate(sessions)]).run())
    assert [s.observation("s", 0).hops for s in sessions] == [(R1, R2, TARGET)] * 3
    assert len({seq for _f, seq, _h in path.sent}) == len(path.sent)  # one sequence space


def test_overlapping_rounds_make_a_report():
    hop2_sends = iter(range(1000))
    path = SimulatedPath(silent=lambda flow, seq, hop: hop == 2 and next(hop2_sends) % 2 == 0)  # every other one
    rounds = [TraceSession(settings(probes_per_hop=1, timeout_ns=50_000_000), path.flows.flows[0]) for _ in range(6)]
    asyncio.run(TraceRunner(path, [(0, s, i * 5_000_000) for i, s in enumerate(rounds)]).run())
    rows = report([s.probes() for s in rounds])
    assert [r.address for r in rows] == [R1, R2, TARGET]
    assert [r.sent for r in rows] == [6, 6, 6]
    assert [r.loss_ratio for r in rows] == [0.0, 0.5, 0.0]


def test_a_refused_send_is_a_star_with_the_reason():
    path = SimulatedPath(refuse_hop=1)
    session = TraceSession(settings(probes_per_hop=1, max_hops=1), path.flows.flows[0])
    runner = TraceRunner(path, [(0, session, 0)])
    asyncio.run(runner.run())
    assert runner.send_errors == ["Network is unreachable"]
    assert session.probes()[0].detail == "Network is unreachable" and not session.reached
