"""ICMPv6 echo prober over one socket for any number of targets, driven by asyncio.

The socket layer only: which socket the system allows, per-target traffic class and flow
label, kernel transmit (T1) and receive (T4) timestamps, ICMPv6 errors. Matching, timeouts
and duplicates live in `icmp_session`. `EchoProber` runs on its own (the `probe icmp`
command); `IcmpProber` is the `icmp` kind for the agent's scheduler, over one `EchoProber`.

Sockets, in order of preference:
- a Linux ping socket (SOCK_DGRAM, IPPROTO_ICMPV6), open to the groups listed in
  net.ipv4.ping_group_range (the sysctl covers IPv6 too). The kernel sets the identifier to
  the socket's local port, delivers only replies that carry it, and reports errors about
  our requests on the error queue;
- a raw ICMPv6 socket (needs CAP_NET_RAW), filtered with ICMP6_FILTER to echo replies and
  the four error types; it sees every echo reply of the host, hence the payload cookie.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, cast

from collector.contract.records import ProbeResult
from collector.probes.base import ProberContext, ProbeSpec, ResultHandler
from collector.probes.icmp_session import EchoSession, EchoTarget, Key
from collector.probes.stamp_session import ReplyFacts
from collector.probes.transmit_reports import TransmitReports
from collector.system import measurement_sockets
from collector.wire.icmp6 import (
    COOKIE_LEN,
    ECHO_REPLY,
    ERROR_TYPES,
    Icmp6DecodeError,
    decode_echo,
    decode_error,
    error_name,
)

RECEIVE_BUFFER = 65535
ICMP6_FILTER = 1  # linux/icmpv6.h, at level IPPROTO_ICMPV6
PERMISSION_HINT = "run as root, or allow ping sockets: sysctl -w net.ipv4.ping_group_range='0 2147483647'"
# Results are handed to the consumer on this tick rather than one wake-up per reply: at
# thousands of replies a second that halves the event loop's turns, and the round trips do
# not care, their times come from the kernel.
RESULT_TICK_S = 0.01
_NO_HANDLERS: dict[str, ResultHandler] = {}


class SocketKind(str, Enum):
    PING = "ping"  # unprivileged ICMPv6 datagram socket
    RAW = "raw"


class EchoPermissionError(PermissionError):
    """Neither a ping socket nor a raw socket is allowed to this process."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"no permission to send ICMPv6 echo ({detail}): {PERMISSION_HINT}")


@dataclass(frozen=True)
class EchoSettings:
    source: str | None = None  # local address to send from (the socket is bound to it)
    size: int = 56  # echo payload octets, as ping's -s (at least the 8 of magic and cookie)
    timeout_ns: int = 2_000_000_000
    socket_kind: SocketKind | None = None  # None: a ping socket where allowed, raw otherwise
    cookie: int | None = None  # None: a random one per prober


def open_echo_socket(kind: SocketKind | None = None) -> tuple[socket.socket, SocketKind]:
    """An ICMPv6 socket of the given kind, or the least privileged one that opens."""
    if kind in (None, SocketKind.PING):
        try:
            return socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6), SocketKind.PING
        except OSError as exc:  # EACCES outside ping_group_range; another errno without ping sockets
            if kind is SocketKind.PING:
                if isinstance(exc, PermissionError):
                    raise EchoPermissionError(f"ping socket: {exc.strerror}") from None
                raise
    try:
        return socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6), SocketKind.RAW
    except PermissionError as exc:
        raise EchoPermissionError(f"raw socket: {exc.strerror}") from None


def echo_reply_filter() -> bytes:
    """struct icmp6_filter passing echo replies and errors only (a set bit blocks a type),
    so the raw socket is not woken by every neighbour discovery packet."""
    words = [0xFFFFFFFF] * 8
    for icmp_type in (ECHO_REPLY, *ERROR_TYPES):
        words[icmp_type >> 5] &= ~(1 << (icmp_type & 31))
    return struct.pack("=8I", *words)


class EchoProber:
    """Echo requests to many targets through one socket; results as an async stream."""

    def __init__(self, settings: EchoSettings = EchoSettings(), targets: Iterable[EchoTarget] = ()) -> None:
        self.settings = settings
        self._sock, self.socket_kind = open_echo_socket(settings.socket_kind)
        try:
            identifier = self._prepare_socket()
            cookie = settings.cookie if settings.cookie is not None else random.getrandbits(32)
            self.session = EchoSession(identifier, cookie, settings.size, settings.timeout_ns)
            self._destinations: list[tuple[str, int, int, int]] = []
            self._cmsgs: list[list[tuple[int, int, bytes]]] = []  # per target, shared by targets of one DSCP
            self._cmsgs_of_dscp: dict[int, list[tuple[int, int, bytes]]] = {}
            self._leased: set[int] = set()
            for target in targets:
                self.add_target(target)
        except BaseException:
            self._sock.close()
            raise
        self._sent: TransmitReports[Key] = TransmitReports()
        self._ready: deque[ProbeResult] = deque()
        self._failure: Exception | None = None
        self.send_errors = 0
        self.last_send_error: str | None = None

    def _prepare_socket(self) -> int:
        sock = self._sock
        measurement_sockets.enable_receive_metadata(sock)
        measurement_sockets.enable_tx_timestamps(sock)
        # Thousands of targets answer in bursts: room for them while the loop is busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        if self.socket_kind is SocketKind.PING:
            measurement_sockets.enable_icmp_errors(sock)  # a ping socket reports errors on the error queue
        else:
            sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, echo_reply_filter())
        sock.bind((self.settings.source or "::", 0))
        sock.setblocking(False)
        if self.socket_kind is SocketKind.PING:
            return sock.getsockname()[1]  # the kernel puts the local port in the identifier
        return random.randint(1, 0xFFFF)

    def add_target(self, target: EchoTarget) -> int:
        """Register a target; its requests carry its slice's DSCP and flow label."""
        if not 0 <= target.dscp <= 63:
            raise ValueError(f"DSCP {target.dscp} is not in 0..63")
        # AF_INET6 socket addresses are (address, port, flowinfo, scope_id).
        destination = cast(
            tuple[str, int, int, int], socket.getaddrinfo(target.address, 0, socket.AF_INET6, socket.SOCK_DGRAM)[0][4]
        )
        if target.flow_label:
            if target.flow_label not in self._leased:
                # Shared with our own user's sockets: a rerun within the lease's linger time works.
                measurement_sockets.lease_flow_label(
                    self._sock,
                    destination[0].split("%")[0],
                    target.flow_label,
                    share=measurement_sockets.IPV6_FL_S_USER,
                )
                self._leased.add(target.flow_label)
        index = self.session.add_target(target)
        address = target.address if destination[0] == target.address else destination[0]  # one string, not two
        self._destinations.append((address, 0, target.flow_label or 0, destination[3]))
        cmsgs = self._cmsgs_of_dscp.get(target.dscp)
        if cmsgs is None:
            tclass = measurement_sockets.traffic_class_cmsg(self._sock.family, target.dscp << 2)
            cmsgs = self._cmsgs_of_dscp[target.dscp] = [tclass]
        self._cmsgs.append(cmsgs)
        return index

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> EchoProber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending and receiving -------------------------------------------------------------

    def send(self, index: int) -> int:
        """Send target `index` its next request now; returns the request's sequence number."""
        seq, key, octets = self.session.request(index, time.time_ns())
        try:
            self._sock.sendmsg([octets], self._cmsgs[index], 0, self._destinations[index])
        except OSError as exc:
            self.send_errors += 1
            self.last_send_error = exc.strerror or str(exc)
            self._deliver(self.session.on_send_error(key, f"send failed: {self.last_send_error}"))
        else:
            self._sent.sent(key, time.monotonic_ns())
        return seq

    @property
    def transmit_reports_pending(self) -> int:
        """Sends still waiting for the kernel's transmit timestamp."""
        return len(self._sent)

    def _deliver(self, results: list[ProbeResult]) -> None:
        self._ready.extend(results)

    def _read_error_queue(self) -> None:
        stamps, errors = measurement_sockets.read_error_queue(self._sock)
        session = self.session
        for index, kernel_ns in stamps:
            key = self._sent.reported(index)
            if key is not None:
                session.on_transmitted(key, kernel_ns)
        for error in errors:  # ping sockets: the payload is our request from its ICMPv6 header on
            if error.destination is None:
                continue
            try:
                quoted = decode_echo(error.payload)
            except Icmp6DecodeError:
                continue
            reason = error_name(error.icmp_type, error.icmp_code)
            if error.offender:
                reason += f" from {error.offender}"
            destination = socket.inet_pton(socket.AF_INET6, error.destination.split("%")[0])
            self._deliver(session.on_error(destination, quoted, reason))

    # -- for a caller that runs its own loop (the agent's scheduler) ----------------------

    def fileno(self) -> int:
        return self._sock.fileno()

    def drain(self) -> None:
        """Read everything waiting on the socket; results wait for `take_results`."""
        self._drain()

    def take_results(self) -> list[ProbeResult]:
        results = list(self._ready)
        self._ready.clear()
        return results

    def _on_readable(self) -> None:
        try:
            self._drain()
        except Exception as exc:  # a bug: stop the run with it rather than spin on the socket
            self._failure = exc
            asyncio.get_running_loop().remove_reader(self._sock.fileno())

    def _drain(self) -> None:
        self._read_error_queue()  # first, so that T1 is the kernel's before replies match
        sock, session = self._sock, self.session
        results: list[ProbeResult] = []
        while True:
            try:
                data, ancdata, _flags, address = sock.recvmsg(RECEIVE_BUFFER, measurement_sockets.ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # a queued ICMP error surfaced here; its details are on the error queue
                self._read_error_queue()
                continue
            sender = address[0]
            if data and data[0] in ERROR_TYPES:  # raw sockets: the error message itself
                results += self._on_error_message(sender, data)
                continue
            kernel_ns, hop_limit, traffic_class, _dst = measurement_sockets.ancillary_fields(ancdata)
            facts = ReplyFacts(
                kernel_ns or time.time_ns(), hop_limit, None if traffic_class is None else traffic_class >> 2
            )
            source = socket.inet_pton(socket.AF_INET6, sender.split("%")[0])
            results += session.on_reply(source, data, facts)
        self._deliver(results)

    def _on_error_message(self, sender: str, data: bytes) -> list[ProbeResult]:
        try:
            error = decode_error(data)
        except Icmp6DecodeError as exc:
            if exc.kind == "not-echo":
                self.session.foreign_replies += 1  # about someone else's packet
            else:
                self.session.malformed_replies += 1
            return []
        return self.session.on_error(error.destination, error.echo, f"{error.describe()} from {sender}")

    # -- the run ---------------------------------------------------------------------------

    async def run(self, count: int | None, interval_s: float) -> AsyncIterator[ProbeResult]:
        """Send every target `count` requests (None: until cancelled), one every
        `interval_s` per target, spread evenly over the interval; yield results as they
        settle; after the last request, wait for its reply or its timeout."""
        loop = asyncio.get_running_loop()
        loop.add_reader(self._sock.fileno(), self._on_readable)
        sender = asyncio.create_task(self._send_loop(count, interval_s))
        try:
            while True:
                while self._ready:
                    yield self._ready.popleft()
                for result in self.session.expire(time.time_ns()):
                    yield result
                if self._failure is not None:
                    raise self._failure
                if sender.done() and not self._ready:
                    break
                await asyncio.sleep(RESULT_TICK_S)
            sender.result()
            for result in self.session.flush():
                yield result
        finally:
            sender.cancel()
            loop.remove_reader(self._sock.fileno())

    async def _send_loop(self, count: int | None, interval_s: float) -> None:
        targets = len(self.session.targets)
        if targets == 0:
            return
        step = interval_s / targets
        total = None if count is None else count * targets
        start = time.monotonic()
        sent = 0
        while total is None or sent < total:
            # An absolute schedule, so send times do not drift with processing time.
            delay = start + sent * step - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif sent % 32 == 0:
                await asyncio.sleep(0)  # behind schedule: still let replies in
            self.send(sent % targets)
            sent += 1
        # Wait out the last timeout; the receive side settles or expires what is left.
        deadline = time.monotonic() + self.settings.timeout_ns / 1e9
        while self.session.outstanding and time.monotonic() < deadline:
            await asyncio.sleep(0.01)


class IcmpProber:
    """The `icmp` kind for the agent's scheduler: every target of every slice shares one echo
    socket, opened with the first target (whose timeout is then every target's)."""

    kind: ClassVar[str] = "icmp"
    title: ClassVar[str] = "ICMPv6 echo"
    minimum_size: ClassVar[int] = COOKIE_LEN  # the echo cookie that matches replies to requests
    uses_port: ClassVar[bool] = False

    def __init__(self, context: ProberContext) -> None:
        self.context = context
        self.echo: EchoProber | None = None
        # by slice, then target, as results name them (no key object per target)
        self._handlers: dict[str, dict[str, ResultHandler]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # while attached: a socket opened later joins it

    @property
    def socket_kind(self) -> SocketKind | None:
        return self.echo.socket_kind if self.echo is not None else None

    @property
    def send_errors(self) -> int:
        return self.echo.send_errors if self.echo is not None else 0

    @property
    def receive_errors(self) -> int:
        return self.echo.session.malformed_replies if self.echo is not None else 0

    def add(self, spec: ProbeSpec, on_result: ResultHandler) -> _EchoSchedule:
        if self.echo is None:
            self.echo = EchoProber(EchoSettings(source=self.context.source_address, timeout_ns=spec.timeout_ns))
            if self._loop is not None:  # a reload brought the first echo target
                self._loop.add_reader(self.echo.fileno(), self._drain)
        target = EchoTarget(spec.target.name, spec.target.address, spec.slice.name, spec.slice.dscp, spec.flow_label)
        index = self.echo.add_target(target)
        of_slice = self._handlers.setdefault(spec.slice.name, {})
        of_slice[spec.target.name] = on_result
        return _EchoSchedule(self.echo, index, spec.target.name, of_slice)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if self.echo is not None:
            loop.add_reader(self.echo.fileno(), self._drain)

    def detach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = None
        if self.echo is not None:
            loop.remove_reader(self.echo.fileno())

    def _drain(self) -> None:
        assert self.echo is not None
        self.echo.drain()
        self._hand_out(self.echo.take_results())

    def expire(self, now_ns: int) -> None:
        if self.echo is None:
            return
        # Replies that arrived while the loop was held up (a busy host) wait in the socket:
        # read them first, or the agent's own delay would expire them as losses.
        self._drain()
        self._hand_out(self.echo.session.expire(now_ns))
        self._hand_out(self.echo.take_results())

    def flush(self) -> None:
        if self.echo is None:
            return
        self._hand_out(self.echo.take_results())
        self._hand_out(self.echo.session.flush())

    def _hand_out(self, results: list[ProbeResult]) -> None:
        handlers = self._handlers
        for result in results:
            handler = handlers.get(result.slice, _NO_HANDLERS).get(result.target)
            if handler is not None:
                handler(result)

    def close(self) -> None:
        if self.echo is not None:
            self.echo.close()


@dataclass(slots=True, eq=False)
class _EchoSchedule:
    """One target of the scheduler's on the shared echo socket."""

    echo: EchoProber
    index: int  # in the echo session's targets
    name: str
    handlers: dict[str, ResultHandler]  # its prober's, of its slice: left on stop

    def send(self, now_ns: int) -> None:
        self.echo.send(self.index)

    def stop(self) -> None:
        # The session keeps the target's slot (indexes are positions); its late results go nowhere.
        self.handlers.pop(self.name, None)
