"""STAMP Session-Sender over real UDP sockets (RFC 8762 section 4.2), driven by asyncio.

The socket layer only. `StampSocket` carries any number of test sessions on one UDP
socket: each request gets its session's traffic class as per-datagram ancillary data and
its flow label in the destination's flowinfo, so one socket serves every slice and target;
replies are routed back by (reflector address, port, SSID). T1 is the kernel's transmit
timestamp (matched by send order), T4 its receive timestamp. Matching, timeouts and loss
attribution live in `stamp_session`. `StampProber` is the `stamp` kind for the agent's
scheduler (one socket per address family for every session); `StampProbe` is one session
on its own socket, for the `probe stamp` command.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from collector.contract.records import ProbeResult
from collector.probes.base import ProberContext, ProbeSpec, ResultHandler
from collector.probes.stamp_session import ReplyFacts, SenderSettings, StampSession
from collector.probes.transmit_reports import TransmitReports
from collector.system import measurement_sockets
from collector.wire.slice_option import slice_hop_by_hop

RECEIVE_BUFFER = 65535
_SSID_OFFSET = 14  # unauthenticated sender packets (RFC 8972 section 3)

SessionResultHandler = Callable[[StampSession, list[ProbeResult]], None]


@dataclass(frozen=True)
class StampEndpoint:
    address: str
    port: int = 862
    source: str | None = None  # local address to send from
    flow_label: int | None = None  # IPv6 flow label, leased from the kernel


@dataclass(slots=True)
class _Route:
    session: StampSession
    destination: tuple  # sendto address, flowinfo included
    cmsgs: list  # the session's traffic class, as ancillary data


class StampSocket:
    """One UDP socket for many STAMP sessions; results go to `on_results(session, results)`."""

    def __init__(self, family: int, source: str | None, on_results: SessionResultHandler) -> None:
        self.family = int(family)
        self.on_results = on_results
        self.send_errors = 0
        self.last_send_error: str | None = None
        self.malformed_replies = 0
        self._routes: dict[tuple[bytes, int, int], _Route] = {}  # (address, port, SSID)
        self._by_session: dict[int, tuple[bytes, int, int]] = {}
        self._by_address: dict[bytes, list[tuple[bytes, int, int]]] = {}  # for errors and SSID 0
        self._sent: TransmitReports[tuple[StampSession, int]] = TransmitReports()  # (session, seq)
        self._leased_labels: set[int] = set()
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            measurement_sockets.enable_receive_metadata(self._sock)
            measurement_sockets.enable_tx_timestamps(self._sock)
            measurement_sockets.enable_icmp_errors(self._sock)
            measurement_sockets.set_hop_limit(self._sock, 255)  # so the reflector's copy tells the forward hop count
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            if source:
                self._sock.bind((source, 0))
            self._sock.setblocking(False)
        except BaseException:
            self._sock.close()
            raise

    # -- sessions ------------------------------------------------------------------------

    def open_session(
        self, endpoint: StampEndpoint, settings: SenderSettings, extra_cmsgs: Sequence[tuple[int, int, bytes]] = ()
    ) -> StampSession:
        """A new session towards `endpoint`, with an SSID no other session to it uses."""
        if endpoint.flow_label and self.family != socket.AF_INET6:
            raise ValueError("a flow label needs an IPv6 target")
        packed = socket.inet_pton(self.family, endpoint.address)
        ssid = settings.ssid
        if not ssid or (packed, endpoint.port, ssid) in self._routes:
            ssid = self._free_ssid(packed, endpoint.port)
        session = StampSession(dataclasses.replace(settings, ssid=ssid))
        if endpoint.flow_label and endpoint.flow_label not in self._leased_labels:
            measurement_sockets.lease_flow_label(self._sock, endpoint.address, endpoint.flow_label)
            self._leased_labels.add(endpoint.flow_label)
        if self.family == socket.AF_INET6:
            destination: tuple = (endpoint.address, endpoint.port, endpoint.flow_label or 0, 0)
        else:
            destination = (endpoint.address, endpoint.port)
        key = (packed, endpoint.port, ssid)
        self._routes[key] = _Route(
            session,
            destination,
            [measurement_sockets.traffic_class_cmsg(self.family, settings.dscp << 2), *extra_cmsgs],
        )
        self._by_session[id(session)] = key
        self._by_address.setdefault(packed, []).append(key)
        return session

    def close_session(self, session: StampSession) -> None:
        key = self._by_session.pop(id(session), None)
        if key is not None:
            del self._routes[key]
            keys = self._by_address[key[0]]
            keys.remove(key)
            if not keys:
                del self._by_address[key[0]]

    def _free_ssid(self, packed: bytes, port: int) -> int:
        while True:
            ssid = random.randint(1, 0xFFFF)
            if (packed, port, ssid) not in self._routes:
                return ssid

    @property
    def session_count(self) -> int:
        return len(self._routes)

    # -- sending -------------------------------------------------------------------------

    def send(self, session: StampSession) -> int:
        """Send the session's next request now; returns its sequence number."""
        route = self._routes[self._by_session[id(session)]]
        seq, octets = session.request(time.time_ns())
        try:
            self._sock.sendmsg([octets], route.cmsgs, 0, route.destination)
        except OSError as exc:
            # Refused before a datagram existed (no route, for example): the kernel counted
            # no send, so the send-order index stays as it is.
            self.send_errors += 1
            self.last_send_error = f"{exc.strerror or exc}"
            return seq
        self._sent.sent((session, seq), time.monotonic_ns())
        return seq

    @property
    def transmit_reports_pending(self) -> int:
        """Sends still waiting for the kernel's transmit timestamp."""
        return len(self._sent)

    # -- receiving -----------------------------------------------------------------------

    def fileno(self) -> int:
        return self._sock.fileno()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self._sock.fileno(), self.drain)

    def detach(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self._sock.fileno())

    def drain(self) -> None:
        """Read transmit timestamps, ICMP errors and replies until the socket is empty."""
        self._read_error_queue()  # first, so that T1 is the kernel's before replies match
        while True:
            try:
                data, ancdata, _flags, address = self._sock.recvmsg(RECEIVE_BUFFER, measurement_sockets.ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # a queued ICMP error surfaced here; its details are on the error queue
                self._read_error_queue()
                continue
            route = self._route_of_reply(data, address)
            if route is None:
                self.malformed_replies += 1  # not for any session of ours (or too short to tell)
                continue
            meta = measurement_sockets.parse_ancillary(ancdata)
            facts = ReplyFacts(meta.kernel_ns or time.time_ns(), meta.hop_limit, meta.dscp)
            results = route.session.on_reply(data, facts)
            if results:
                self.on_results(route.session, results)

    def _read_error_queue(self) -> None:
        stamps, icmp_errors = measurement_sockets.read_error_queue(self._sock)
        for index, kernel_ns in stamps:
            sent = self._sent.reported(index)
            if sent is not None:
                sent[0].on_transmitted(sent[1], kernel_ns)
        for error in icmp_errors:
            route = self._route_of_error(error)
            if route is not None:
                seq = int.from_bytes(error.payload[:4], "big")
                results = route.session.on_icmp_error(seq, error.describe())
                if results:
                    self.on_results(route.session, results)

    def _route_of_reply(self, data: bytes, address: tuple) -> _Route | None:
        packed = socket.inet_pton(self.family, address[0].split("%")[0])
        ssid = int.from_bytes(data[14:16], "big") if len(data) >= _SSID_OFFSET + 2 else 0
        route = self._routes.get((packed, address[1], ssid))
        if route is None and ssid == 0:
            # A reflector without RFC 8972 (or a TWAMP-Light one) returns a zeroed SSID:
            # unambiguous only when we run a single session to that reflector.
            keys = [k for k in self._by_address.get(packed, ()) if k[1] == address[1]]
            route = self._routes[keys[0]] if len(keys) == 1 else None
        return route

    def _route_of_error(self, error: measurement_sockets.IcmpError) -> _Route | None:
        """The session a quoted request belongs to: by its destination and SSID."""
        if len(error.payload) < _SSID_OFFSET + 2 or not error.destination:
            return None
        packed = socket.inet_pton(self.family, error.destination.split("%")[0])
        ssid = int.from_bytes(error.payload[14:16], "big")
        for key in self._by_address.get(packed, ()):
            if key[2] == ssid:
                return self._routes[key]
        return None

    def close(self) -> None:
        self._sock.close()


class StampProber:
    """The `stamp` kind for the agent's scheduler: every session of every slice and target
    shares one UDP socket per address family."""

    kind: ClassVar[str] = "stamp"
    title: ClassVar[str] = "STAMP"
    # The base packet and the TLVs every request carries.
    minimum_size: ClassVar[int] = SenderSettings(target="", slice="").minimum_size()
    uses_port: ClassVar[bool] = True

    def __init__(self, context: ProberContext) -> None:
        self.context = context
        self._sockets: dict[int, StampSocket] = {}  # by address family, opened with its first target
        self._targets: dict[int, _StampTarget] = {}  # by id() of the session
        self._loop: asyncio.AbstractEventLoop | None = None  # while attached: a socket opened later joins it

    @property
    def send_errors(self) -> int:
        return sum(s.send_errors for s in self._sockets.values())

    @property
    def receive_errors(self) -> int:
        return sum(s.malformed_replies for s in self._sockets.values())

    def add(self, spec: ProbeSpec, on_result: ResultHandler) -> _StampTarget:
        family = int(measurement_sockets.family_of(spec.target.address))
        sock = self._sockets.get(family)
        if sock is None:
            source = self.context.source_address
            if source and measurement_sockets.family_of(source) != family:
                source = None
            sock = self._sockets[family] = StampSocket(family, source, self._on_results)
            if self._loop is not None:  # a reload brought the first target of this family
                sock.attach(self._loop)
        settings = SenderSettings(
            target=spec.target.name,
            slice=spec.slice.name,
            dscp=spec.slice.dscp,
            size=spec.size,
            timeout_ns=spec.timeout_ns,
            error_estimate=self.context.clock.error_estimate(),
        )
        endpoint = StampEndpoint(spec.target.address, spec.target.port, None, spec.flow_label)
        option_type, slice_id = self.context.slice_option_type, spec.slice.slice_id
        extra = []
        if option_type is not None and slice_id is not None and family == socket.AF_INET6:
            # the slice ID in a Hop-by-Hop header (the kernel fills in its Next Header)
            extra.append((socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, slice_hop_by_hop(slice_id, option_type)))
        session = sock.open_session(endpoint, settings, extra)
        target = self._targets[id(session)] = _StampTarget(sock, session, on_result, self._targets)
        return target

    def _on_results(self, session: StampSession, results: list[ProbeResult]) -> None:
        target = self._targets.get(id(session))
        if target is not None:
            for result in results:
                target.on_result(result)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for sock in self._sockets.values():
            sock.attach(loop)

    def detach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = None
        for sock in self._sockets.values():
            sock.detach(loop)

    def expire(self, now_ns: int) -> None:
        """Nothing to do: each session expires its requests when it is next sent."""

    def flush(self) -> None:
        for target in self._targets.values():
            for result in target.session.flush():
                target.on_result(result)

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()


@dataclass(slots=True, eq=False)
class _StampTarget:
    """One STAMP session of the scheduler's."""

    socket: StampSocket
    session: StampSession
    on_result: ResultHandler
    sessions: dict[int, _StampTarget]  # its prober's, left on stop

    def send(self, now_ns: int) -> None:
        # Expire here: each session is visited once per step, which bounds the work. Replies
        # that arrived while this loop was held up (a busy host) wait in the socket: read them
        # first, or the agent's own delay would expire them as losses on the way back.
        if self.session.overdue(now_ns):
            self.socket.drain()
        for result in self.session.expire(now_ns):
            self.on_result(result)
        self.socket.send(self.session)

    def stop(self) -> None:
        for result in self.session.flush():
            self.on_result(result)
        self.socket.close_session(self.session)
        del self.sessions[id(self.session)]


class StampProbe:
    """One STAMP test session towards one reflector, on a socket of its own."""

    def __init__(self, endpoint: StampEndpoint, settings: SenderSettings) -> None:
        self.endpoint = endpoint
        self._results: asyncio.Queue[ProbeResult] | None = None
        self._socket = StampSocket(measurement_sockets.family_of(endpoint.address), endpoint.source, self._collect)
        try:
            self.session = self._socket.open_session(endpoint, settings)
        except BaseException:
            self._socket.close()
            raise
        self._failure: Exception | None = None

    @property
    def send_errors(self) -> int:
        return self._socket.send_errors

    @property
    def last_send_error(self) -> str | None:
        return self._socket.last_send_error

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> StampProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_one(self) -> int:
        """Send the next request now; returns its sequence number."""
        return self._socket.send(self.session)

    def _collect(self, _session: StampSession, results: list[ProbeResult]) -> None:
        assert self._results is not None
        for result in results:
            self._results.put_nowait(result)

    def _on_readable(self) -> None:
        try:
            self._socket.drain()
        except Exception as exc:  # a bug: stop the run with it rather than spin on the socket
            self._failure = exc
            self._socket.detach(asyncio.get_running_loop())

    async def run(self, count: int | None, interval_s: float) -> AsyncIterator[ProbeResult]:
        """Send `count` requests (None: until cancelled) every `interval_s`, yielding results
        as they settle; after the last request, wait for its reply or timeout."""
        loop = asyncio.get_running_loop()
        self._results = asyncio.Queue()
        loop.add_reader(self._socket.fileno(), self._on_readable)
        sender = asyncio.create_task(self._send_loop(count, interval_s))
        try:
            while True:
                try:
                    result = await asyncio.wait_for(self._results.get(), timeout=0.05)
                    yield result
                except TimeoutError:
                    pass
                for result in self.session.expire(time.time_ns()):
                    yield result
                if self._failure is not None:
                    raise self._failure
                if sender.done() and self.session.outstanding == 0 and self._results.empty():
                    break
            sender.result()
            for result in self.session.flush():
                yield result
        finally:
            sender.cancel()
            loop.remove_reader(self._socket.fileno())

    async def _send_loop(self, count: int | None, interval_s: float) -> None:
        start = time.monotonic()
        sent = 0
        while count is None or sent < count:
            self.send_one()
            sent += 1
            if count is not None and sent >= count:
                break
            # An absolute schedule, so send times do not drift with processing time.
            await asyncio.sleep(max(0.0, start + sent * interval_s - time.monotonic()))
        # Wait out the last timeout; the receive loop settles or expires what is left.
        deadline = time.monotonic() + self.session.settings.timeout_ns / 1e9
        while self.session.outstanding and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
