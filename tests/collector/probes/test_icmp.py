"""Echo prober: reply matching by (target, identifier, sequence), cookie rejection, duplicates,
timeouts and ICMPv6 errors on crafted replies; then the socket layer for real — many
targets on one socket, ping sockets and raw sockets, and crafted packets on the wire."""

from __future__ import annotations

import asyncio
import json
import random
import select
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from collector.contract.records import LossDirection, ProbeResult, Slice, Target
from collector.probes.base import ProberContext, ProbeSpec
from collector.probes.icmp import EchoProber, EchoSettings, IcmpProber, SocketKind, echo_reply_filter
from collector.probes.icmp_session import EchoSession, EchoTarget
from collector.probes.stamp_session import ReplyFacts
from collector.system.clock import shared_host_clock
from collector.wire.icmp6 import ECHO_REPLY, ECHO_REQUEST, Echo, decode_echo, encode_echo, make_payload
from tests.support import DEADLINE_S, REPO, in_netns, network_namespace

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
COOKIE = 0xC00C1E


def packed(address: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, address)


def reply_to(request: bytes, *, identifier: int | None = None, payload: bytes | None = None) -> bytes:
    """What a target sends back: the request turned into a reply (checksum left to the kernel)."""
    echo = decode_echo(request)
    return encode_echo(
        Echo(
            ECHO_REPLY,
            echo.identifier if identifier is None else identifier,
            echo.sequence,
            echo.payload if payload is None else payload,
        )
    )


def facts(receive_ns: int) -> ReplyFacts:
    return ReplyFacts(receive_ns=receive_ns, hop_limit=61, dscp=34)


def session_with(*addresses: str, timeout_ns: int = 1000 * MS) -> EchoSession:
    session = EchoSession(identifier=0x4242, cookie=COOKIE, payload_size=56, timeout_ns=timeout_ns)
    for i, address in enumerate(addresses):
        session.add_target(EchoTarget(f"t{i}", address, "video", 34))
    return session


# -- matching (no sockets) ---------------------------------------------------------------------


def test_request_carries_identifier_per_target_sequence_and_cookie():
    session = session_with("fd00::1", "fd00::2")
    seq_a, key_a, a1 = session.request(0, T0)
    _, _, a2 = session.request(0, T0)
    seq_b, key_b, b1 = session.request(1, T0)
    assert (seq_a, seq_b) == (1, 1)  # each target numbers its own requests, from 1 like ping
    assert key_a == (0, 1) and key_b == (1, 1)
    assert [(decode_echo(o).type, decode_echo(o).identifier, decode_echo(o).sequence) for o in (a1, a2, b1)] == [
        (ECHO_REQUEST, 0x4242, 1),
        (ECHO_REQUEST, 0x4242, 2),
        (ECHO_REQUEST, 0x4242, 1),
    ]
    payload = make_payload(COOKIE, 56)  # the run's cookie, then the target's index
    assert decode_echo(a1).payload == payload[:8] + (0).to_bytes(4, "big") + payload[12:]
    assert decode_echo(b1).payload == payload[:8] + (1).to_bytes(4, "big") + payload[12:]
    assert session.outstanding == 3


def test_reply_is_matched_by_target_identifier_and_sequence():
    session = session_with("fd00::1", "fd00::2")
    _, _, a = session.request(0, T0)
    _, _, b = session.request(1, T0 + 1 * MS)
    # The same identifier and sequence from the other target settles only that target's probe.
    [rb] = session.on_reply(packed("fd00::2"), reply_to(b), facts(T0 + 3 * MS))
    assert (rb.target, rb.seq, rb.rtt_ns, rb.reply_hop_limit, rb.reply_dscp) == ("t1", 1, 2 * MS, 61, 34)
    assert rb.loss is LossDirection.NONE and rb.slice == "video" and rb.reflector_dscp is None
    [ra] = session.on_reply(packed("fd00::1"), reply_to(a), facts(T0 + 5 * MS))
    assert (ra.target, ra.rtt_ns) == ("t0", 5 * MS)
    # A reply from an address we never pinged matches nothing.
    assert session.on_reply(packed("fd00::3"), reply_to(a), facts(T0)) == []
    assert session.outstanding == 0


def test_kernel_transmit_time_becomes_t1():
    session = session_with("fd00::1")
    _, key, octets = session.request(0, T0)
    session.on_transmitted(key, T0 + 40_000)  # the kernel saw it leave 40 us after we read the clock
    [result] = session.on_reply(packed("fd00::1"), reply_to(octets), facts(T0 + 100_000))
    assert (result.sent_ns, result.rtt_ns) == (T0 + 40_000, 60_000)


def test_foreign_replies_are_rejected_by_identifier_cookie_and_type():
    session = session_with("fd00::1")
    _, _, octets = session.request(0, T0)
    source = packed("fd00::1")
    assert session.on_reply(source, reply_to(octets, identifier=0x4243), facts(T0)) == []
    assert session.on_reply(source, reply_to(octets, payload=make_payload(COOKIE + 1, 56)), facts(T0)) == []
    assert session.on_reply(source, reply_to(octets, payload=b"\0" * 56), facts(T0)) == []  # ping's own data
    assert session.on_reply(source, octets, facts(T0)) == []  # our request looped back to a raw socket
    assert session.foreign_replies == 4
    assert session.on_reply(source, b"\x81\x00", facts(T0)) == []
    assert session.malformed_replies == 1
    assert session.outstanding == 1  # still waiting for the real reply
    assert len(session.on_reply(source, reply_to(octets), facts(T0 + MS))) == 1


def test_duplicates_are_flagged_and_do_not_count_twice():
    session = session_with("fd00::1")
    _, _, octets = session.request(0, T0)
    [first] = session.on_reply(packed("fd00::1"), reply_to(octets), facts(T0 + MS))
    [dup] = session.on_reply(packed("fd00::1"), reply_to(octets), facts(T0 + 2 * MS))
    assert not first.duplicate and dup.duplicate
    assert (dup.seq, dup.rtt_ns) == (1, 2 * MS)


def test_timeout_makes_a_loss_of_unknown_direction_and_a_late_reply_stays_lost():
    session = session_with("fd00::1", timeout_ns=100 * MS)
    _, _, octets = session.request(0, T0)
    assert session.expire(T0 + 99 * MS) == []
    [lost] = session.expire(T0 + 100 * MS)
    assert lost.lost and lost.loss is LossDirection.UNKNOWN and lost.icmp_error is None
    assert session.on_reply(packed("fd00::1"), reply_to(octets), facts(T0 + 150 * MS)) == []
    assert session.late_replies == 1


def test_expiry_follows_send_order_and_skips_answered_requests():
    session = session_with("fd00::1", "fd00::2", timeout_ns=100 * MS)
    _, _, a = session.request(0, T0)
    session.request(1, T0 + 10 * MS)
    session.request(0, T0 + 20 * MS)
    session.on_reply(packed("fd00::1"), reply_to(a), facts(T0 + MS))
    assert [(r.target, r.seq) for r in session.expire(T0 + 115 * MS)] == [("t1", 1)]
    assert [(r.target, r.seq) for r in session.flush()] == [("t0", 2)]


def test_icmp_error_settles_the_quoted_request_with_the_reason():
    session = session_with("fd00::1", "fd00::2")
    _, _, a = session.request(0, T0)
    session.request(1, T0)
    [lost] = session.on_error(packed("fd00::1"), decode_echo(a), "address unreachable from fd00::ff")
    assert (lost.target, lost.seq, lost.icmp_error) == ("t0", 1, "address unreachable from fd00::ff")
    assert lost.loss is LossDirection.UNKNOWN  # echo cannot tell forward from reverse
    foreign = Echo(ECHO_REQUEST, 0x4242, 1, b"\0" * 56)
    assert session.on_error(packed("fd00::2"), foreign, "x") == []  # not our cookie
    assert session.outstanding == 1


def test_send_error_is_a_loss_with_the_reason():
    session = session_with("fd00::1")
    _, key, _ = session.request(0, T0)
    [lost] = session.on_send_error(key, "send failed: Network is unreachable")
    assert lost.icmp_error == "send failed: Network is unreachable" and session.outstanding == 0


def test_sequence_wraps_on_the_wire_but_not_in_results():
    session = session_with("fd00::1")
    session._logs[0].first = 65537
    seq, key, octets = session.request(0, T0)
    assert seq == 65537 and key == (0, 65537) and decode_echo(octets).sequence == 1
    [result] = session.on_reply(packed("fd00::1"), reply_to(octets), facts(T0 + MS))
    assert result.seq == 65537


def test_a_thousand_targets_share_one_identifier_and_replies_in_any_order_match():
    addresses = [f"fd00:cafe::{i:x}" for i in range(1, 1001)]
    session = session_with(*addresses)
    requests = [(address, session.request(i, T0 + i)[2]) for i, address in enumerate(addresses)]
    random.Random(4).shuffle(requests)
    results = []
    for address, octets in requests:
        results += session.on_reply(packed(address), reply_to(octets), facts(T0 + 5 * MS))
    assert len(results) == 1000 and session.outstanding == 0
    assert {r.target for r in results} == {f"t{i}" for i in range(1000)}
    assert all(r.rtt_ns == 5 * MS - int(r.target[1:]) for r in results)


def test_raw_filter_passes_echo_replies_and_errors_only():
    words = [int.from_bytes(echo_reply_filter()[i : i + 4], sys.byteorder) for i in range(0, 32, 4)]
    blocked = {t for t in range(256) if words[t >> 5] >> (t & 31) & 1}
    assert set(range(256)) - blocked == {1, 2, 3, 4, 129}


# -- real sockets ------------------------------------------------------------------------------


async def collect(prober: EchoProber, count: int, interval: float) -> list:
    return [r async for r in prober.run(count, interval)]


@pytest.mark.root
def test_raw_socket_rejects_forged_replies_and_flags_duplicates_on_the_wire():
    settings = EchoSettings(timeout_ns=500 * MS, socket_kind=SocketKind.RAW, cookie=COOKIE)
    forger = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    results = []

    async def run(prober: EchoProber) -> None:
        async for result in prober.run(3, 0.1):
            results.append(result)
            if result.seq == 1 and not result.duplicate:
                ident = prober.session.identifier
                for ident_, cookie in ((ident, COOKIE), (ident, COOKIE + 1), (ident ^ 1, COOKIE)):
                    forged = encode_echo(Echo(ECHO_REPLY, ident_, 1, make_payload(cookie, 56)))
                    forger.sendto(forged, ("::1", 0))

    with forger, EchoProber(settings, [EchoTarget("lo", "::1")]) as prober:
        asyncio.run(run(prober))
        foreign = prober.session.foreign_replies
    replies = [(r.seq, r.duplicate) for r in results if not r.lost]
    assert sorted(replies) == [(1, False), (1, True), (2, False), (3, False)]
    assert foreign >= 2  # the wrong cookie and the wrong identifier (and any other ping on the host)


_IN_NAMESPACE = textwrap.dedent("""
    import asyncio, json, sys
    sys.path.insert(0, {repo!r})
    from collector.probes.icmp import EchoProber, EchoSettings
    from collector.probes.icmp_session import EchoTarget
    targets = [EchoTarget(a, a) for a in {addresses!r}]
    async def main():
        with EchoProber(EchoSettings(timeout_ns=1_000_000_000), targets) as prober:
            results = [r async for r in prober.run({count}, {interval})]
            print(json.dumps({{"socket": prober.socket_kind.value, "identifier": prober.session.identifier,
                              "port": prober._sock.getsockname()[1],
                              "replies": [[r.target, r.seq] for r in results if not r.lost],
                              "lost": [[r.target, r.seq, r.icmp_error] for r in results if r.lost]}}))
    asyncio.run(main())
""")


def run_prober_in(netns: str, addresses: list[str], count: int = 2, interval: float = 0.2) -> dict:
    code = _IN_NAMESPACE.format(repo=str(REPO), addresses=addresses, count=count, interval=interval)
    done = subprocess.run(in_netns(netns, [sys.executable, "-c", code]), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.root
def test_many_targets_share_one_raw_socket():
    addresses = [f"fd00:cafe::{i:x}" for i in range(1, 201)]
    with network_namespace() as ns:
        batch = "".join(f"address add {a}/128 dev lo nodad\n" for a in addresses)
        subprocess.run(["ip", "-n", ns, "-batch", "-"], input=batch, text=True, check=True)
        out = run_prober_in(ns, addresses)
    assert out["socket"] == "raw"
    assert sorted(map(tuple, out["replies"])) == sorted((a, s) for a in addresses for s in (1, 2))
    assert out["lost"] == []


@pytest.mark.root
def test_ping_socket_is_preferred_where_allowed_and_its_identifier_is_the_port():
    with network_namespace() as ns:
        subprocess.run(in_netns(ns, ["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"]), check=True)
        subprocess.run(["ip", "-n", ns, "address", "add", "fd00:cafe::2/128", "dev", "lo", "nodad"], check=True)
        out = run_prober_in(ns, ["::1", "fd00:cafe::2"], count=3, interval=0.1)
    assert out["socket"] == "ping"
    assert out["identifier"] == out["port"]
    assert sorted(map(tuple, out["replies"])) == [(a, s) for a in ("::1", "fd00:cafe::2") for s in (1, 2, 3)]


def test_a_reply_waiting_in_the_socket_is_read_before_its_request_expires():
    """An agent held up past a request's timeout (a busy host) finds the reply already in its
    socket at its next housekeeping: the reply arrived in time, so it is no loss."""
    settled: list[ProbeResult] = []
    timeout_ns = 100_000_000
    prober = IcmpProber(ProberContext(source_address=None, clock=shared_host_clock()))
    try:
        spec = ProbeSpec(Target("loopback", "::1"), Slice("best-effort", 0), None, None, timeout_ns)
        probe = prober.add(spec, settled.append)
        probe.send(time.time_ns())
        assert prober.echo is not None
        poller = select.poll()
        poller.register(prober.echo.fileno(), select.POLLIN)
        deadline = time.monotonic() + DEADLINE_S
        # POLLERR (the kernel's transmit timestamp) wakes it too: wait for the reply itself
        while not any(events & select.POLLIN for _fd, events in poller.poll(100)):
            assert time.monotonic() < deadline, f"no reply within {DEADLINE_S} s"
        prober.expire(time.time_ns() + 2 * timeout_ns)  # the loop comes back only after the timeout
    finally:
        prober.close()
    assert len(settled) == 1 and not settled[0].lost, settled
    assert settled[0].rtt_ns is not None and settled[0].rtt_ns < timeout_ns


def test_transmit_reports_match_sends_again_after_the_kernel_numbered_a_send_the_prober_did_not_count():
    """A send refused after the kernel numbered it (a full queue's ENOBUFS) used to shift every
    later report onto the next send for good: kernel T1 was rejected, or taken for the wrong
    request while the queue stayed backed up, and every send waited for its report."""
    results: list[ProbeResult] = []
    with EchoProber(EchoSettings(timeout_ns=DEADLINE_S * 1_000_000_000)) as prober:
        prober.add_target(EchoTarget("loopback", "::1", "best-effort", 0))
        # a datagram the kernel numbers and the prober's count does not, as a refused send's
        stray = encode_echo(Echo(ECHO_REQUEST, prober.session.identifier, 0xFFFF, make_payload(0, 8)))
        prober._sock.sendto(stray, ("::1", 0))
        poller = select.poll()
        poller.register(prober.fileno(), select.POLLIN | select.POLLERR)
        for count in range(1, 21):
            prober.send(0)
            deadline = time.monotonic() + DEADLINE_S
            while len(results) < count and time.monotonic() < deadline and poller.poll(1000):
                prober.drain()
                results += prober.take_results()
        pending = prober.transmit_reports_pending
    assert len(results) == 20 and not any(r.lost for r in results), results
    assert pending <= 1  # every report found its send again
