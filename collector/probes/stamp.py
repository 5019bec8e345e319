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
import random
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar, cast, overload

from collector.contract.records import ProbeResult
from collector.probes.base import ProberContext, ProbeSpec, ResultHandler
from collector.probes.multimap import OneOrMany
from collector.probes.stamp_session import ReplyFacts, SenderSettings, StampSession
from collector.probes.transmit_reports import TransmitReports
from collector.system import measurement_sockets
from collector.wire.slice_option import slice_hop_by_hop

RECEIVE_BUFFER = 65535
_SSID_OFFSET = 14  # unauthenticated sender packets (RFC 8972 section 3)

SessionResultHandler = Callable[["SocketSession", list[ProbeResult]], None]
Ancillary = tuple[int, int, bytes]  # (level, type, data) of one sendmsg control message


@dataclass(frozen=True)
class StampEndpoint:
    address: str
    port: int = 862
    source: str | None = None  # local address to send from
    flow_label: int | None = None  # IPv6 flow label, leased from the kernel


class SocketSession(StampSession):
    """A session on a `StampSocket`: where its requests go and how they are marked."""

    __slots__ = ("destination", "cmsgs", "route")

    destination: tuple  # sendto address, flowinfo included
    cmsgs: list[Ancillary]  # its traffic class (and slice option), shared by every session marked alike
    route: tuple[str, int, int]  # (reflector address as replies name it, port, SSID): how replies find it


Session = TypeVar("Session", bound=SocketSession)


class StampSocket:
    """One UDP socket for many STAMP sessions; results go to `on_results(session, results)`."""

    def __init__(self, family: int, source: str | None, on_results: SessionResultHandler) -> None:
        self.family = int(family)
        self.on_results = on_results
        self.send_errors = 0
        self.last_send_error: str | None = None
        self.malformed_replies = 0
        self._routes: dict[tuple[str, int, int], SocketSession] = {}  # by (address, port, SSID)
        # for errors and SSID 0: the session to each address, a list when there are several
        self._by_address: OneOrMany[str, SocketSession] = OneOrMany()
        self._cmsgs: dict[tuple[int, tuple[Ancillary, ...]], list[Ancillary]] = {}  # by (DSCP, extra ones)
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

    @overload
    def open_session(
        self,
        endpoint: StampEndpoint,
        settings: SenderSettings,
        extra_cmsgs: Sequence[Ancillary] = (),
        *,
        target: str | None = None,
    ) -> SocketSession: ...

    @overload
    def open_session(
        self,
        endpoint: StampEndpoint,
        settings: SenderSettings,
        extra_cmsgs: Sequence[Ancillary],
        session_type: type[Session],
        *,
        target: str | None = None,
    ) -> Session: ...

    def open_session(
        self,
        endpoint: StampEndpoint,
        settings: SenderSettings,
        extra_cmsgs: Sequence[Ancillary] = (),
        session_type: type[SocketSession] = SocketSession,
        *,
        target: str | None = None,
    ) -> SocketSession:
        """A new session towards `endpoint`, with an SSID no other session to it uses, its
        results naming `target` (else `settings.target`); `session_type` may be a subclass
        that carries what its owner needs besides."""
        if endpoint.flow_label and self.family != socket.AF_INET6:
            raise ValueError("a flow label needs an IPv6 target")
        # The address as the kernel names a reply's source (one string with the endpoint's
        # when it is written so already).
        address = socket.inet_ntop(self.family, socket.inet_pton(self.family, endpoint.address))
        if address == endpoint.address:
            address = endpoint.address
        ssid = settings.ssid
        if not ssid or (address, endpoint.port, ssid) in self._routes:
            ssid = self._free_ssid(address, endpoint.port)
        session = session_type(settings, target=target, ssid=ssid)
        if endpoint.flow_label and endpoint.flow_label not in self._leased_labels:
            measurement_sockets.lease_flow_label(self._sock, endpoint.address, endpoint.flow_label)
            self._leased_labels.add(endpoint.flow_label)
        if self.family == socket.AF_INET6:
            session.destination = (address, endpoint.port, endpoint.flow_label or 0, 0)
        else:
            session.destination = (address, endpoint.port)
        marking = (settings.dscp, tuple(extra_cmsgs))
        cmsgs = self._cmsgs.get(marking)
        if cmsgs is None:
            tclass = measurement_sockets.traffic_class_cmsg(self.family, settings.dscp << 2)
            cmsgs = self._cmsgs[marking] = [tclass, *extra_cmsgs]
        session.cmsgs = cmsgs
        session.route = (address, endpoint.port, session.ssid)
        self._routes[session.route] = session
        self._by_address.add(address, session)
        return session

    def close_session(self, session: SocketSession) -> None:
        if self._routes.get(session.route) is not session:
            return
        del self._routes[session.route]
        self._by_address.remove(session.route[0], session)

    def _sessions_to(self, address: str) -> Sequence[SocketSession]:
        return self._by_address.get(address)

    def _free_ssid(self, address: str, port: int) -> int:
        while True:
            ssid = random.randint(1, 0xFFFF)
            if (address, port, ssid) not in self._routes:
                return ssid

    @property
    def sessions(self) -> list[SocketSession]:
        return list(self._routes.values())

    @property
    def session_count(self) -> int:
        return len(self._routes)

    # -- sending -------------------------------------------------------------------------

    def send(self, session: SocketSession) -> int:
        """Send the session's next request now; returns its sequence number."""
        seq, octets = session.request(time.time_ns())
        try:
            self._sock.sendmsg([octets], session.cmsgs, 0, session.destination)
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
            session = self._session_of_reply(data, address)
            if session is None:
                self.malformed_replies += 1  # not for any session of ours (or too short to tell)
                continue
            meta = measurement_sockets.parse_ancillary(ancdata)
            facts = ReplyFacts(meta.kernel_ns or time.time_ns(), meta.hop_limit, meta.dscp)
            results = session.on_reply(data, facts)
            if results:
                self.on_results(session, results)

    def _read_error_queue(self) -> None:
        stamps, icmp_errors = measurement_sockets.read_error_queue(self._sock)
        for index, kernel_ns in stamps:
            sent = self._sent.reported(index)
            if sent is not None:
                sent[0].on_transmitted(sent[1], kernel_ns)
        for error in icmp_errors:
            session = self._session_of_error(error)
            if session is not None:
                seq = int.from_bytes(error.payload[:4], "big")
                results = session.on_icmp_error(seq, error.describe())
                if results:
                    self.on_results(session, results)

    def _session_of_reply(self, data: bytes, address: tuple) -> SocketSession | None:
        source = address[0]
        if "%" in source:  # a link-local source's scope
            source = source.split("%")[0]
        ssid = int.from_bytes(data[14:16], "big") if len(data) >= _SSID_OFFSET + 2 else 0
        session = self._routes.get((source, address[1], ssid))
        if session is None and ssid == 0:
            # A reflector without RFC 8972 (or a TWAMP-Light one) returns a zeroed SSID:
            # unambiguous only when we run a single session to that reflector.
            sessions = [s for s in self._sessions_to(source) if s.route[1] == address[1]]
            session = sessions[0] if len(sessions) == 1 else None
        return session

    def _session_of_error(self, error: measurement_sockets.IcmpError) -> SocketSession | None:
        """The session a quoted request belongs to: by its destination and SSID."""
        if len(error.payload) < _SSID_OFFSET + 2 or not error.destination:
            return None
        destination = error.destination.split("%")[0]
        ssid = int.from_bytes(error.payload[14:16], "big")
        return next((s for s in self._sessions_to(destination) if s.ssid == ssid), None)

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
        # Settings by (slice, DSCP, size, timeout, clock error), shared by the sessions alike
        # (each names its own target).
        self._settings: dict[tuple, SenderSettings] = {}
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
        slice_ = spec.slice
        alike = (slice_.name, slice_.dscp, spec.size, spec.timeout_ns, self.context.clock.error_estimate())
        settings = self._settings.get(alike)
        if settings is None:
            name, dscp, size, timeout_ns, estimate = alike
            settings = self._settings[alike] = SenderSettings(
                "", name, dscp=dscp, size=size, timeout_ns=timeout_ns, error_estimate=estimate
            )
        endpoint = StampEndpoint(spec.target.address, spec.target.port, None, spec.flow_label)
        option_type, slice_id = self.context.slice_option_type, spec.slice.slice_id
        extra = []
        if option_type is not None and slice_id is not None and family == socket.AF_INET6:
            # the slice ID in a Hop-by-Hop header (the kernel fills in its Next Header)
            extra.append((socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, slice_hop_by_hop(slice_id, option_type)))
        target = sock.open_session(endpoint, settings, extra, _StampTarget, target=spec.target.name)
        target.socket = sock
        target.on_result = on_result
        return target

    def _on_results(self, session: SocketSession, results: list[ProbeResult]) -> None:
        on_result = cast(_StampTarget, session).on_result  # every session on our sockets is one
        for result in results:
            on_result(result)

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
        for sock in self._sockets.values():
            for session in sock.sessions:
                self._on_results(session, session.flush())

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()


class _StampTarget(SocketSession):
    """One STAMP session of the scheduler's, on its prober's shared socket."""

    __slots__ = ("socket", "on_result")

    socket: StampSocket
    on_result: ResultHandler

    def send(self, now_ns: int) -> None:
        # Expire here: each session is visited once per step, which bounds the work. Replies
        # that arrived while this loop was held up (a busy host) wait in the socket: read them
        # first, or the agent's own delay would expire them as losses on the way back.
        if self.overdue(now_ns):
            self.socket.drain()
        for result in self.expire(now_ns):
            self.on_result(result)
        self.socket.send(self)

    def stop(self) -> None:
        for result in self.flush():
            self.on_result(result)
        self.socket.close_session(self)


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

    def _collect(self, _session: SocketSession, results: list[ProbeResult]) -> None:
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
