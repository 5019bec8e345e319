"""Paris traceroute over IPv6 on real sockets, driven by asyncio.

The socket layer only: transports that send a probe with a given hop limit and turn what
comes back into `Answer`s (matching is `trace_match`'s, scheduling `trace_session`'s).

- UDP needs no privilege: a plain UDP socket with IPV6_RECVERR gets each Time Exceeded
  and Port Unreachable on its error queue, with the router that sent it (the offender).
- ICMPv6 echo and TCP SYN need raw sockets (root or CAP_NET_RAW): the probes are built
  here with `struct`, the kernel fills in the checksums, and a raw ICMPv6 socket sees the
  errors, whose quote also tells which DSCP the probe still carried at each hop.

Each flow keeps one flow label (leased from the kernel) and one set of ports or one echo
identifier for all its probes, so all of them hash onto the same ECMP path; the hop limit
travels per packet as ancillary data, the slice's traffic class is set on the socket.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import random
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from collector.contract.records import FlowId, HopProbe, PathObservation
from collector.probes.trace_match import FlowSet, match_icmp6, match_tcp, match_udp_error
from collector.probes.trace_session import TCP_PORT, UDP_PORT, Answer, TraceSession, TraceSettings
from collector.system import measurement_sockets
from collector.wire import icmp6, trace6

RECEIVE_BUFFER = 2048
ICMP6_FILTER = 1  # linux/icmpv6.h, level IPPROTO_ICMPV6
IPV6_CHECKSUM = getattr(socket, "IPV6_CHECKSUM", 7)
_INT = struct.Struct("@i")
_LEASE_ATTEMPTS = 8
# A send can fail with the errno of an ICMP error that arrived just before it (the socket's
# pending error); the probe was not sent, so it is sent again once.
_PENDING_ICMP_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EPROTO, errno.EACCES}


class RawSocketPermissionError(PermissionError):
    """ICMPv6 and TCP probes need raw sockets."""


@dataclass(frozen=True)
class TraceEndpoint:
    address: str  # IPv6 address to trace to
    port: int | None = None  # UDP/TCP destination port (default: 33434 / 80)
    source: str | None = None  # local address to send from
    probe_size: int = 4  # payload octets of UDP and echo probes


def _icmp6_filter(allowed: Sequence[int]) -> bytes:
    """struct icmp6_filter: a set bit blocks that ICMPv6 type."""
    words = [0xFFFFFFFF] * 8
    for icmp_type in allowed:
        words[icmp_type >> 5] &= ~(1 << (icmp_type & 31))
    return struct.pack("=8I", *words)


def _hop_limit_cmsg(hop: int) -> list[tuple[int, int, bytes]]:
    return [(socket.IPPROTO_IPV6, measurement_sockets.IPV6_HOPLIMIT, _INT.pack(hop))]


def _lease_some_label(sock: socket.socket, destination: str, wanted: int | None, rng: random.Random) -> int:
    """Lease `wanted`, or a random label that no other user holds (labels are per namespace).

    Shared with the user's other sockets, not exclusive: an exclusive lease outlives its
    socket by seconds, and the next trace with the same `--flow-label` would be refused.
    """
    for attempt in range(_LEASE_ATTEMPTS):
        label = wanted if wanted is not None and attempt == 0 else rng.randint(1, 0x7FFFF)
        try:
            measurement_sockets.lease_flow_label(sock, destination, label, share=measurement_sockets.IPV6_FL_S_USER)
            return label
        except OSError as exc:
            if wanted is not None or exc.errno not in (errno.EEXIST, errno.EPERM, errno.EBUSY):
                raise
    raise OSError(errno.EEXIST, "no free IPv6 flow label found")


def _strip_scope(address: str) -> str:
    return ipaddress.IPv6Address(address.split("%")[0]).compressed


class TraceTransport:
    """Sockets of one trace run (one or several flows) towards one target: the seam
    between `TraceRunner` and the network (tests put a simulated path behind it)."""

    protocol: str
    flows: FlowSet
    _sockets: list[socket.socket]

    def readers(self) -> list[tuple[socket.socket, Callable[[], list[Answer]]]]:
        raise NotImplementedError

    def send(self, flow: int, seq: int, hop: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()

    def __enter__(self) -> TraceTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class UdpTransport(TraceTransport):
    """One unprivileged UDP socket per flow; answers come on its error queue."""

    protocol = "udp"

    def __init__(self, endpoint: TraceEndpoint, dscp: int, flow_labels: Sequence[int | None], seed: int | None = None):
        rng = random.Random(seed)
        self.endpoint = endpoint
        self._sockets = []
        flows = []
        port = endpoint.port or UDP_PORT
        try:
            for wanted in flow_labels:
                sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                self._sockets.append(sock)
                measurement_sockets.enable_receive_metadata(sock)  # SO_TIMESTAMPNS stamps error-queue messages too
                measurement_sockets.enable_icmp_errors(sock)
                measurement_sockets.set_traffic_class(sock, dscp << 2)
                sock.bind((endpoint.source or "::", 0))
                label = _lease_some_label(sock, endpoint.address, wanted, rng)
                sock.setblocking(False)
                flows.append(FlowId("udp", label, sock.getsockname()[1], port))
        except BaseException:
            self.close()
            raise
        self.flows = FlowSet(endpoint.address, tuple(flows))

    def readers(self) -> list[tuple[socket.socket, Callable[[], list[Answer]]]]:
        return [(sock, self._reader(index, sock)) for index, sock in enumerate(self._sockets)]

    def _reader(self, flow: int, sock: socket.socket) -> Callable[[], list[Answer]]:
        def read() -> list[Answer]:
            now = time.time_ns()
            _stamps, errors = measurement_sockets.read_error_queue(sock)
            answers = [a for a in (match_udp_error(e, flow, now) for e in errors) if a is not None]
            while True:  # nothing is expected here, but a target that answers must not spin the loop
                try:
                    sock.recv(RECEIVE_BUFFER)
                except OSError:
                    break
            return answers

        return read

    def send(self, flow: int, seq: int, hop: int) -> None:
        sock = self._sockets[flow]
        f = self.flows.flows[flow]
        payload = trace6.udp_payload(seq, self.endpoint.probe_size)
        destination = (self.endpoint.address, f.destination_port, f.flow_label, 0)
        for attempt in (0, 1):
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # clear an ICMP error left pending
            try:
                sock.sendmsg([payload], _hop_limit_cmsg(hop), 0, destination)
                return
            except OSError as exc:
                if attempt or exc.errno not in _PENDING_ICMP_ERRNOS:
                    raise


class RawTransport(TraceTransport):
    """ICMPv6 echo or TCP SYN probes on raw sockets; one raw ICMPv6 socket hears the errors."""

    def __init__(
        self,
        protocol: str,
        endpoint: TraceEndpoint,
        dscp: int,
        flow_labels: Sequence[int | None],
        seed: int | None = None,
    ):
        if protocol not in ("icmp", "tcp"):
            raise ValueError(f"raw probes are icmp or tcp, not {protocol}")
        rng = random.Random(seed)
        self.protocol = protocol
        self.endpoint = endpoint
        self._dscp_octet = dscp << 2
        self._sockets = []
        try:
            self._icmp = self._raw(socket.IPPROTO_ICMPV6)
            # Only what can be about our probes: errors, and echo replies for echo probes.
            wanted_types = sorted(icmp6.ERROR_TYPES) + ([icmp6.ECHO_REPLY] if protocol == "icmp" else [])
            self._icmp.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _icmp6_filter(wanted_types))
            self._tcp = None
            if protocol == "tcp":
                self._tcp = self._raw(socket.IPPROTO_TCP)
                self._tcp.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, trace6.TCP_CHECKSUM_OFFSET)
            self._sender = self._tcp or self._icmp
            port = endpoint.port or TCP_PORT
            flows = []
            used: set[int] = set()
            for wanted in flow_labels:
                label = _lease_some_label(self._sender, endpoint.address, wanted, rng)
                ident = rng.randint(1024, 0xFFFF) if protocol == "icmp" else rng.randint(32768, 60999)
                while ident in used:
                    ident = rng.randint(1024, 0xFFFF)
                used.add(ident)
                flows.append(FlowId(protocol, label, ident, port if protocol == "tcp" else 0))
        except PermissionError as exc:
            self.close()
            raise RawSocketPermissionError(exc.errno, exc.strerror) from None
        except BaseException:
            self.close()
            raise
        self.flows = FlowSet(endpoint.address, tuple(flows), tcp_base=rng.getrandbits(32))

    def _raw(self, proto: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, proto)
        self._sockets.append(sock)
        measurement_sockets.enable_receive_metadata(sock)
        measurement_sockets.set_traffic_class(sock, self._dscp_octet)
        if self.endpoint.source:
            sock.bind((self.endpoint.source, 0))
        sock.setblocking(False)
        return sock

    def readers(self) -> list[tuple[socket.socket, Callable[[], list[Answer]]]]:
        found = [(self._icmp, self._read_icmp)]
        if self._tcp is not None:
            found.append((self._tcp, self._read_tcp))
        return found

    def _drain(self, sock: socket.socket) -> list[tuple[bytes, str, int]]:
        got: list[tuple[bytes, str, int]] = []
        while True:
            try:
                data, ancdata, _flags, addr = sock.recvmsg(RECEIVE_BUFFER, measurement_sockets.ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                return got
            except OSError:
                continue
            meta = measurement_sockets.parse_ancillary(ancdata)
            got.append((data, _strip_scope(addr[0]), meta.kernel_ns or time.time_ns()))

    def _read_icmp(self) -> list[Answer]:
        answers = []
        for data, responder, when in self._drain(self._icmp):
            answer = match_icmp6(data, responder, when, self.flows, self.protocol)
            if answer is not None:
                answers.append(answer)
        return answers

    def _read_tcp(self) -> list[Answer]:
        assert self._tcp is not None
        answers = []
        for data, responder, when in self._drain(self._tcp):
            answer = match_tcp(data, responder, when, self.flows)
            if answer is not None:
                answers.append(answer)
        return answers

    def send(self, flow: int, seq: int, hop: int) -> None:
        f = self.flows.flows[flow]
        if self.protocol == "icmp":
            packet = icmp6.echo_request(f.source_port, seq, trace6.echo_payload(seq, self.endpoint.probe_size))
        else:
            packet = trace6.tcp_syn(f.source_port, f.destination_port, self.flows.tcp_base + seq)
        self._sender.sendmsg([packet], _hop_limit_cmsg(hop), 0, (self.endpoint.address, 0, f.flow_label, 0))


def open_transport(
    protocol: str, endpoint: TraceEndpoint, dscp: int, flow_labels: Sequence[int | None], seed: int | None = None
) -> TraceTransport:
    """Sockets for `protocol`; raises RawSocketPermissionError for icmp/tcp without privilege."""
    if protocol == "udp":
        return UdpTransport(endpoint, dscp, flow_labels, seed)
    return RawTransport(protocol, endpoint, dscp, flow_labels, seed)


# -- the driver ---------------------------------------------------------------------------------


class TraceRunner:
    """Runs trace sessions over one transport: each session is (flow index, session, start
    offset in ns). Probes of all sessions share the window `parallel` and one 16-bit
    sequence space, so rounds of one flow can overlap (the report mode)."""

    def __init__(
        self, transport: TraceTransport, sessions: Sequence[tuple[int, TraceSession, int]], parallel: int = 16
    ):
        self.transport = transport
        self.sessions = list(sessions)
        self.parallel = parallel
        self.send_errors: list[str] = []
        self._wire: dict[int, tuple[int, int]] = {}  # wire seq -> (session index, its seq)
        self._next_wire = 0
        self._failure: BaseException | None = None

    def _on_readable(self, read: Callable[[], list[Answer]], wake: asyncio.Event) -> None:
        try:
            answers = read()
        except Exception as exc:  # a bug: end the run with it rather than spin on the socket
            self._failure = exc
            wake.set()
            return
        for answer in answers:
            owner = self._wire.get(answer.wire_seq)
            if owner is None:
                continue
            index, seq = owner
            flow, session, _start = self.sessions[index]
            if flow == answer.flow:
                session.on_answer(seq, answer)
        if answers:
            wake.set()

    def _send_due(self, now_ns: int, started_ns: int) -> None:
        active = [
            (i, s) for i, (_f, s, start) in enumerate(self.sessions) if started_ns + start <= now_ns and not s.done
        ]
        while active:
            in_flight = sum(s.outstanding for _f, s, _t in self.sessions)
            progressed = False
            for index, session in active:
                if in_flight >= self.parallel:
                    return
                probe = session.next_probe()
                if probe is None:
                    continue
                seq, hop = probe
                wire = self._next_wire
                self._next_wire = (wire + 1) & 0xFFFF
                self._wire[wire] = (index, seq)
                sent_ns = time.time_ns()
                try:
                    self.transport.send(self.sessions[index][0], wire, hop)
                except OSError as exc:
                    reason = exc.strerror or str(exc)
                    self.send_errors.append(reason)
                    session.on_send_failed(seq, sent_ns, reason)
                    continue
                session.on_sent(seq, sent_ns)
                in_flight += 1
                progressed = True
            if not progressed:
                return

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        readers = self.transport.readers()
        for sock, read in readers:
            loop.add_reader(sock.fileno(), self._on_readable, read, wake)
        started = time.time_ns()
        try:
            while True:
                now = time.time_ns()
                for _flow, session, _start in self.sessions:
                    session.expire(now)
                self._send_due(now, started)
                if self._failure is not None:
                    raise self._failure
                if all(s.done for _f, s, _t in self.sessions):
                    return
                deadlines = [d for _f, s, _t in self.sessions if (d := s.next_deadline()) is not None]
                deadlines += [started + t for _f, _s, t in self.sessions if started + t > now]
                wait_s = max(0.0, (min(deadlines) - now) / 1e9) if deadlines else 0.01
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), timeout=min(wait_s, 0.05) or 0.001)
                except TimeoutError:
                    pass
        finally:
            for sock, _read in readers:
                loop.remove_reader(sock.fileno())
            for _flow, session, _start in self.sessions:
                session.flush()


# -- what callers use ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TraceResult:
    """One flow's trace: its probes hop by hop and the path observation."""

    session: TraceSession
    observation: PathObservation


def source_address(endpoint: TraceEndpoint) -> str:
    """The address probes to the endpoint leave from (routing's choice unless one was given)."""
    if endpoint.source:
        return endpoint.source
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            probe.connect((endpoint.address, 9))  # no packet: only asks routing for the source
            return probe.getsockname()[0]
        finally:
            probe.close()
    except OSError:
        return "::"


async def trace(
    settings: TraceSettings,
    endpoint: TraceEndpoint,
    *,
    flows: int = 1,
    flow_label: int | None = None,
    seed: int | None = None,
) -> list[TraceResult]:
    """Trace `flows` flows (each with its own label and ports/identifier) to the endpoint
    at once; one result per flow. One flow is Paris traceroute; several are multipath mode."""
    labels: list[int | None] = [flow_label] + [None] * (flows - 1)
    transport = open_transport(settings.protocol, endpoint, settings.dscp, labels, seed)
    with transport:
        sessions = [TraceSession(settings, f) for f in transport.flows.flows]
        runner = TraceRunner(transport, [(i, s, 0) for i, s in enumerate(sessions)], settings.parallel)
        await runner.run()
        source = source_address(endpoint)
        now = time.time_ns()
        return [TraceResult(s, s.observation(source, now)) for s in sessions]


async def trace_rounds(
    settings: TraceSettings,
    endpoint: TraceEndpoint,
    rounds: int,
    interval_s: float,
    *,
    flow_label: int | None = None,
    seed: int | None = None,
) -> tuple[FlowId, list[list[HopProbe]]]:
    """`rounds` traces of one flow started `interval_s` apart (overlapping when a round
    waits for silent hops), for the mtr-style report. Probes of every round: one list each."""
    transport = open_transport(settings.protocol, endpoint, settings.dscp, [flow_label], seed)
    with transport:
        sessions = [TraceSession(settings, transport.flows.flows[0]) for _ in range(rounds)]
        plan = [(0, s, int(i * interval_s * 1e9)) for i, s in enumerate(sessions)]
        await TraceRunner(transport, plan, settings.parallel).run()
        return transport.flows.flows[0], [s.probes() for s in sessions]
