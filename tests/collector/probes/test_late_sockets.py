"""A prober already attached to the scheduler's loop reads the socket its first target opens:
a reload (SIGHUP) that brings the first target of a kind or an address family must not leave
that kind's replies unread, which would show as total loss."""

from __future__ import annotations

import asyncio
import time

import pytest

from collector.contract.records import ProbeResult, Slice, Target
from collector.probes.base import ProberContext, ProbeSpec
from collector.probes.icmp import IcmpProber
from collector.probes.stamp import StampProber
from collector.system.clock import shared_host_clock
from tests.support import free_udp_port, running_reflector

BEST_EFFORT = Slice("best-effort", 0, 4)
DEADLINE_S = 30.0  # bounds a failure only: a reply on loopback takes microseconds


async def _first_reply_after_a_late_add(prober, target: Target) -> ProbeResult:
    """Attach the prober with no target, then add one (as a reload does) and probe until a
    reply arrives, sending again each second in case the first request met a busy machine."""
    loop = asyncio.get_running_loop()
    prober.attach(loop)
    replies: list[ProbeResult] = []
    arrived = asyncio.Event()

    def on_result(result: ProbeResult) -> None:
        if not result.lost:
            replies.append(result)
            arrived.set()

    spec = ProbeSpec(target=target, slice=BEST_EFFORT, size=None, flow_label=None, timeout_ns=10**10)
    probe = prober.add(spec, on_result)
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not arrived.is_set() and time.monotonic() < deadline:
            probe.send(time.time_ns())
            try:
                await asyncio.wait_for(arrived.wait(), timeout=1.0)
            except TimeoutError:
                continue
    finally:
        prober.detach(loop)
        prober.close()
    assert replies, f"no reply read within {DEADLINE_S} s: the late socket was never read"
    return replies[0]


def test_echo_prober_reads_the_socket_its_first_target_opens_after_attach():
    prober = IcmpProber(ProberContext(source_address=None, clock=shared_host_clock()))
    reply = asyncio.run(_first_reply_after_a_late_add(prober, Target("loopback", "::1")))
    assert reply.target == "loopback"
    assert reply.rtt_ns is not None and reply.rtt_ns > 0


@pytest.mark.root
def test_stamp_prober_reads_the_socket_its_first_target_opens_after_attach():
    port = free_udp_port()
    with running_reflector("--bind", "::1", "--port", str(port), "--rate-limit", "0"):
        prober = StampProber(ProberContext(source_address=None, clock=shared_host_clock()))
        reply = asyncio.run(_first_reply_after_a_late_add(prober, Target("reflector", "::1", port)))
    assert reply.target == "reflector"
    assert reply.rtt_ns is not None and reply.rtt_ns > 0
