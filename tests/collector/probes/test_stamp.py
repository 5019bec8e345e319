"""The STAMP sender's socket layer against a real reflector on loopback: one probe on its own
socket, many sessions sharing one socket, replies without an SSID, and ICMP errors."""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import time

import pytest

from collector.contract.records import LossDirection, ProbeResult, Slice, Target
from collector.probes.base import ProberContext, ProbeSpec
from collector.probes.stamp import StampEndpoint, StampProbe, StampProber, StampSocket
from collector.probes.stamp_session import SenderSettings, StampSession
from collector.reflector.session_reflector import Reflector, ReflectorConfig
from collector.system.clock import shared_host_clock
from collector.wire.stamp import ErrorEstimate
from tests.stamp_support import reflect_request
from tests.support import DEADLINE_S


def reflector(stateful: bool = True) -> Reflector:
    return Reflector(
        ReflectorConfig(bind=("::1",), port=0, stateful=stateful, rate_limit_pps=0, clock=shared_host_clock())
    )


def readable(stamp_socket: StampSocket) -> select.poll:
    """A poller that wakes when replies or kernel reports wait on the socket."""
    poller = select.poll()
    poller.register(stamp_socket.fileno(), select.POLLIN | select.POLLERR)
    return poller


async def collect(probe: StampProbe, count: int) -> list[ProbeResult]:
    return [result async for result in probe.run(count, 0.001)]


def test_a_probe_measures_every_request_with_kernel_times_and_the_slice_marking():
    with (
        reflector(stateful=False) as server,
        StampProbe(StampEndpoint("::1", server.port), SenderSettings("core", "video", dscp=34)) as probe,
    ):
        before = time.time_ns()
        results = asyncio.run(collect(probe, 5))
    assert [r.seq for r in results] == [0, 1, 2, 3, 4]
    assert all(r.target == "core" and r.slice == "video" and not r.lost for r in results)
    assert all(0 < r.rtt_ns < 1_000_000_000 and r.sent_ns >= before for r in results)
    assert {(r.reflector_dscp, r.reply_dscp) for r in results} == {(34, 34)}  # both ways in the slice's class
    assert [r.reflector_seq for r in results] == [0, 1, 2, 3, 4]  # a stateless reflector echoes ours
    assert probe.send_errors == 0


def test_sessions_sharing_one_socket_each_get_their_own_replies():
    settled: dict[str, list[ProbeResult]] = {}
    done = threading.Event()

    def on_results(session: StampSession, results: list[ProbeResult]) -> None:
        settled.setdefault(session.settings.slice, []).extend(results)
        if sum(map(len, settled.values())) == 6:
            done.set()

    with reflector() as server:
        shared = StampSocket(socket.AF_INET6, None, on_results)
        try:
            sessions = [
                shared.open_session(StampEndpoint("::1", server.port), SenderSettings("core", name, dscp))
                for name, dscp in (("video", 34), ("egov", 26), ("data", 18))
            ]
            assert shared.session_count == 3 and len({s.ssid for s in sessions}) == 3
            for session in sessions * 2:
                shared.send(session)
            poller = readable(shared)
            while not done.is_set() and poller.poll(5000):
                shared.drain()
        finally:
            shared.close()
    assert {name: [(r.seq, r.reflector_dscp) for r in rs] for name, rs in settled.items()} == {
        "video": [(0, 34), (1, 34)],
        "egov": [(0, 26), (1, 26)],
        "data": [(0, 18), (1, 18)],
    }


def test_a_reflector_address_written_longhand_gets_its_replies():
    """Replies are found by their source address as the kernel writes it: a target written
    another way is named so when its session opens."""
    results: list[ProbeResult] = []
    with reflector(stateful=False) as server:
        shared = StampSocket(socket.AF_INET6, None, lambda session, found: results.extend(found))
        try:
            session = shared.open_session(StampEndpoint("0:0:0:0:0:0:0:1", server.port), SenderSettings("lo", "video"))
            shared.send(session)
            poller = readable(shared)
            deadline = time.monotonic() + DEADLINE_S
            while not results and time.monotonic() < deadline and poller.poll(1000):
                shared.drain()
        finally:
            shared.close()
    assert [(r.target, r.lost) for r in results] == [("lo", False)] and shared.malformed_replies == 0


def test_transmit_reports_match_sends_again_after_the_kernel_numbered_a_send_the_socket_did_not_count():
    """A send refused after the kernel numbered it (a full queue's ENOBUFS) used to shift
    every later report off its send for good: kernel times were never used again and every
    send waited for its report, 65,536 of them (~20 MiB) before half were let go."""
    results: list[ProbeResult] = []
    with reflector(stateful=False) as server:
        shared = StampSocket(socket.AF_INET6, None, lambda session, found: results.extend(found))
        try:
            session = shared.open_session(StampEndpoint("::1", server.port), SenderSettings("core", "video"))
            # a datagram the kernel numbers and this socket's count does not, as a refused send's
            shared._sock.sendto(bytes(44), ("::1", server.port))
            poller = readable(shared)
            for count in range(1, 21):
                shared.send(session)
                deadline = time.monotonic() + DEADLINE_S
                while len(results) < count and time.monotonic() < deadline and poller.poll(1000):
                    shared.drain()
            pending = shared.transmit_reports_pending
        finally:
            shared.close()
    assert len(results) == 20 and not any(r.lost for r in results)
    assert pending <= 1  # every report found its send again


def test_a_send_whose_transmit_report_never_comes_is_forgotten(monkeypatch):
    import collector.probes.transmit_reports as transmit_reports

    monkeypatch.setattr(transmit_reports, "TX_REPORT_WAIT_NS", 0)  # any report not read before the next send is late
    with reflector(stateful=False) as server:
        shared = StampSocket(socket.AF_INET6, None, lambda session, found: None)
        try:
            session = shared.open_session(StampEndpoint("::1", server.port), SenderSettings("core", "video"))
            for _ in range(50):
                shared.send(session)  # never drained: no report is read
            assert shared.transmit_reports_pending <= 1
        finally:
            shared.close()


def test_a_reply_waiting_in_the_socket_is_read_before_its_request_times_out():
    """An agent held up past a request's timeout (a busy host) finds the reply already in its
    socket when it next sends: the reply arrived in time, so it is a reply, not a loss on the
    way back (a stalled agent lost every path's replies that way, all at once)."""
    settled: list[ProbeResult] = []
    timeout_ns = 100_000_000
    with reflector() as server:
        prober = StampProber(ProberContext(source_address=None, clock=shared_host_clock()))
        try:
            spec = ProbeSpec(Target("reflector", "::1", server.port), Slice("video", 34), None, None, timeout_ns)
            probe = prober.add(spec, settled.append)
            probe.send(time.time_ns())
            poller = select.poll()
            poller.register(probe.socket.fileno(), select.POLLIN)
            deadline = time.monotonic() + DEADLINE_S
            # POLLERR (the kernel's transmit timestamp) wakes it too: wait for the reply itself
            while not any(events & select.POLLIN for _fd, events in poller.poll(100)):
                assert time.monotonic() < deadline, f"no reply within {DEADLINE_S} s"
            probe.send(time.time_ns() + timeout_ns)  # the loop comes back only after the timeout
        finally:
            prober.close()
    first = [r for r in settled if r.seq == 0]
    assert len(first) == 1 and not first[0].lost, first
    assert first[0].rtt_ns is not None and first[0].rtt_ns < timeout_ns


def test_a_reply_with_a_zeroed_ssid_reaches_the_only_session_to_that_reflector():
    """A TWAMP-Light style reflector returns SSID 0."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as light:
        light.bind(("::1", 0))
        light.settimeout(5)

        def answer_once() -> None:
            request, sender = light.recvfrom(2048)
            reply, _ = reflect_request(
                request, receive_ns=time.time_ns(), transmit_ns=time.time_ns(), error_estimate=ErrorEstimate().encode()
            )
            light.sendto(reply[:14] + b"\x00\x00" + reply[16:], sender)

        answering = threading.Thread(target=answer_once)
        answering.start()
        with StampProbe(StampEndpoint("::1", light.getsockname()[1]), SenderSettings("light", "video")) as probe:
            [result] = asyncio.run(collect(probe, 1))
        answering.join(5)
    assert not result.lost and result.target == "light"


def test_a_target_without_a_reflector_is_lost_with_the_icmp_reason():
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as closed:
        closed.bind(("::1", 0))
        port = closed.getsockname()[1]
    with StampProbe(StampEndpoint("::1", port), SenderSettings("nobody", "egov", timeout_ns=5_000_000_000)) as probe:
        [result] = asyncio.run(collect(probe, 1))
    assert result.lost and result.icmp_error == "port unreachable from ::1"
    assert result.loss is LossDirection.FORWARD  # the request never reached a reflector


def test_a_flow_label_needs_an_ipv6_target():
    shared = StampSocket(socket.AF_INET, None, lambda session, results: None)
    try:
        with pytest.raises(ValueError, match="IPv6"):
            shared.open_session(StampEndpoint("127.0.0.1", 862, flow_label=0x12345), SenderSettings("t", "video"))
    finally:
        shared.close()


def test_probes_of_a_slice_with_an_id_carry_it_in_a_hop_by_hop_option_when_asked():
    """A receiver asking for Hop-by-Hop headers (IPV6_RECVHOPOPTS) gets the slice ID option
    as the probes left the agent: the configured type, 4 octets, the slice's ID."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("::1", 0))
        receiver.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPOPTS, 1)
        receiver.settimeout(DEADLINE_S)
        seen = []
        for option_type, slice_ in (
            (0x3E, Slice("video", 34, 0xC0FFEE01)),
            (0x3E, Slice("egov", 26)),
            (None, Slice("data", 18, 7)),
        ):
            prober = StampProber(ProberContext(None, shared_host_clock(), option_type))
            try:
                spec = ProbeSpec(Target("r", "::1", receiver.getsockname()[1]), slice_, None, None, 10**9)
                prober.add(spec, lambda result: None).send(time.time_ns())
                _, ancillary, _, _ = receiver.recvmsg(2048, 256)
            finally:
                prober.close()
            headers = [
                data for level, kind, data in ancillary if (level, kind) == (socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS)
            ]
            seen.append([bytes(header[2:8]) for header in headers])  # the option, behind Next Header and length
    assert seen == [[bytes((0x3E, 4)) + (0xC0FFEE01).to_bytes(4, "big")], [], []]
