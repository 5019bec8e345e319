"""STAMP Session-Reflector (RFC 8762 section 4.3, RFC 8972): sockets, policy, counters.

One thread drains every bound socket through a selector. Per datagram: admission (source
allow-list, per-source rate limit), the in-place rewrite of `wire.stamp_reflect`, the
transmit timestamp, and a `sendmsg` with the reply's traffic class. The reply is the
request's length and goes only to the request's source, so the reflector cannot amplify.
Malformed or refused datagrams are counted by kind and dropped; nothing raises out of
the loop.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from netaddr import IPAddress, IPNetwork, IPSet
from netaddr.core import AddrFormatError

from collector.system import measurement_sockets, mmsg
from collector.system.clock import ClockStatus, read_clock_status
from collector.wire.stamp import AUTH_BASE_LEN, BASE_LEN, STAMP_PORT, check_key
from collector.wire.stamp_reflect import (
    NO_DSCP_REQUEST,
    ReceivedContext,
    ReflectorPolicy,
    SessionCounters,
    TlvStats,
    reflect_base_in_place,
    reflect_in_place,
    stamp_transmit_time,
)
from collector.wire.stamp_tlv import StampDecodeError

log = logging.getLogger(__name__)

# Plain ints: socket's IntFlag/IntEnum arithmetic costs microseconds per datagram.
_MSG_TRUNC = int(socket.MSG_TRUNC)
MAX_DATAGRAM = 9216  # jumbo-sized requests are fine; larger ones are truncated and dropped
REPLY_HOP_LIMIT = 255  # lets the sender count reverse-path hops from the hop limit it sees
STOP_WAIT_S = 5.0  # how long a stop waits for the serving thread to finish its batch


@dataclass(frozen=True)
class ReflectorConfig:
    bind: tuple[str, ...] = ("::",)
    port: int = STAMP_PORT
    stateful: bool = False
    allow: tuple[str, ...] = ()  # source prefixes answered; empty answers everyone
    rate_limit_pps: float = 1000.0  # per source address; 0 disables the limit
    rate_burst: int = 200
    auth_key: bytes | None = None  # authenticated mode (112-octet base + HMAC)
    hmac_tlv_key: bytes | None = None  # verify/fill HMAC TLVs in unauthenticated mode
    permitted_dscp: frozenset[int] | None = None  # Class of Service DSCP1 honoured; None: all
    max_sessions: int = 100_000  # stateful session table bound; oldest evicted beyond it
    clock: ClockStatus | None = None  # None: read the kernel's NTP state at start

    def __post_init__(self) -> None:
        for prefix in self.allow:
            try:
                IPNetwork(prefix)
            except (AddrFormatError, ValueError) as exc:
                raise ValueError(f"allow: {prefix!r} is not an IP prefix ({exc})") from None
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: {self.port} is not a UDP port")
        for name, key in (("auth_key", self.auth_key), ("hmac_tlv_key", self.hmac_tlv_key)):
            if key is not None:
                try:
                    check_key(key)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None


@dataclass
class ReflectorStats:
    """Counters since start; read without locking (ints, written by one thread)."""

    received: int = 0
    reflected: int = 0
    refused_not_allowed: int = 0
    refused_rate_limited: int = 0
    send_errors: int = 0
    malformed: Counter = field(default_factory=Counter)  # kind -> count
    tlv: TlvStats = field(default_factory=TlvStats)
    sessions_evicted: int = 0


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """A bound socket and what the hot loop needs to know of it, computed once."""

    sock: socket.socket
    family: int  # a plain int: socket.AddressFamily costs a microsecond per use
    wildcard: bool  # bound to :: or 0.0.0.0: replies name their source address explicitly
    packed_address: bytes
    port: int

    @classmethod
    def of(cls, sock: socket.socket, address: str) -> _Endpoint:
        family = int(sock.family)
        bound = sock.getsockname()
        return cls(sock, family, address in ("::", "0.0.0.0"), socket.inet_pton(family, bound[0]), bound[1])


@dataclass(slots=True, eq=False)
class _Session:
    """A stateful session: its counters, and its reply that waits for T3 in the current burst.

    `stamp_transmit_time` gives a reply its number as it writes T3, so a session's next
    request may be rewritten only once the reply before it is stamped."""

    counters: SessionCounters = field(default_factory=SessionCounters)
    waiting: Any = None  # the buffer (bytearray or batch slot) of the reply not stamped yet
    waiting_length: int = 0


class _Reply(NamedTuple):
    session: _Session | None  # the stateful session the reply belongs to
    cmsgs: list  # its ancillary data: traffic class, and source address for wildcard binds


class _TokenBucket:
    __slots__ = ("tokens", "last_ns")

    def __init__(self, burst: float, now_ns: int) -> None:
        self.tokens = burst
        self.last_ns = now_ns


class Reflector:
    """A running reflector. Use as a context manager, or `start()` / `stop()`."""

    def __init__(self, config: ReflectorConfig) -> None:
        self.config = config
        self.stats = ReflectorStats()
        clock = config.clock or read_clock_status()
        self._error_estimate = clock.error_estimate().encode()
        self._policy = ReflectorPolicy(clock.sync_source, permitted_dscp=config.permitted_dscp)
        self._authenticated = config.auth_key is not None
        self._key = config.auth_key or config.hmac_tlv_key
        self._base_len = AUTH_BASE_LEN if self._authenticated else BASE_LEN
        self._allow = IPSet(config.allow) if config.allow else None
        self._allow_cache: dict[bytes, bool] = {}
        self._buckets: dict[bytes, _TokenBucket] = {}
        self._sessions: dict[tuple, _Session] = {}
        self._sockets: list[socket.socket] = []
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        # Set by the serving thread as its last act: from then on the counters are final. Waited
        # on instead of Thread.join, which in Python 3.11 can take a thread for stopped while it
        # still runs when a signal interrupts the join (the main thread's Ctrl-C or SIGTERM).
        self._served = threading.Event()
        self._cmsg_cache: dict[tuple, list] = {}
        # The common request (44 octets, no TLVs) takes the lean path when nothing else applies.
        self._plain = not self._authenticated and not config.stateful
        self._admission_needed = self._allow is not None or config.rate_limit_pps > 0
        self._stopping = False

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Reflector:
        try:
            for address in self.config.bind:
                self._sockets.append(self._open(address))
        except OSError:
            self._close_sockets()
            raise
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        for sock, address in zip(self._sockets, self.config.bind):
            self._selector.register(sock, selectors.EVENT_READ, _Endpoint.of(sock, address))
        self._thread = threading.Thread(target=self._serve, name="stamp-reflector", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._served.wait(timeout=STOP_WAIT_S)
        self._close_sockets()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> Reflector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return self._sockets[0].getsockname()[1]

    @property
    def addresses(self) -> list[tuple]:
        return [s.getsockname() for s in self._sockets]

    def serve_forever(self) -> None:
        """Block the calling thread until interrupted (for `xnetmon reflect`); starts the
        reflector if it is not running yet. The caller stops it."""
        if self._thread is None:
            self.start()
        # A timed wait: a signal the kernel gave to the serving thread still gets its Python
        # handler run in this one within half a second.
        while not self._served.wait(timeout=0.5):
            pass

    def _open(self, address: str) -> socket.socket:
        family = measurement_sockets.family_of(address)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            wildcard = address in ("::", "0.0.0.0")
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            measurement_sockets.enable_receive_metadata(sock, packet_info=wildcard)
            measurement_sockets.set_hop_limit(sock, REPLY_HOP_LIMIT)
            sock.bind((address, self.config.port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()

    # -- the loop ------------------------------------------------------------------------

    def _serve(self) -> None:
        batch = mmsg.DatagramBatch(size=MAX_DATAGRAM) if mmsg.available() else None
        buf = bytearray(MAX_DATAGRAM)
        try:
            while not self._stopping:
                for key, _events in self._selector.select():
                    if key.data is None:
                        return
                    endpoint = key.data
                    if batch is not None:
                        self._drain_batch(endpoint, batch)
                    else:
                        self._drain_one_by_one(endpoint, buf)
        finally:
            self._served.set()

    def _drain_batch(self, endpoint: _Endpoint, batch: mmsg.DatagramBatch) -> None:
        """Receive every waiting datagram a burst at a time; answer each burst with one call."""
        fd = endpoint.sock.fileno()
        stats = self.stats
        while not self._stopping:  # a flood must not hold off a stop
            try:
                count = batch.receive(fd)
            except OSError as exc:  # e.g. an ICMP error queued on the socket
                log.debug("receive error: %s", exc)
                return
            if count == 0:
                return
            stats.received += count
            replies = []
            for i in range(count):
                length = batch.length(i)
                slot = batch.slots[i]
                _family, source, port = batch.source(i)
                reply = self._handle(endpoint, slot, length, batch.control(i), batch.flags(i), source, port)
                if reply is not None:
                    replies.append((i, slot, length, reply))
            # T3 for the whole burst just before it leaves, so no reply carries the time spent
            # handling the requests behind it; only a stateful reply followed in the burst by its
            # session's next request is stamped before that request takes the next number.
            for i, slot, length, reply in replies:
                self._finish(slot, length, reply.session)
                batch.queue_reply(i, length, reply.cmsgs)
            sent, failed = batch.send(fd)
            stats.reflected += sent
            stats.send_errors += failed

    def _drain_one_by_one(self, endpoint: _Endpoint, buf: bytearray) -> None:
        """The portable path: one recvmsg and one sendmsg per datagram."""
        sock = endpoint.sock
        buffers = [buf]
        while not self._stopping:
            try:
                length, ancdata, flags, address = sock.recvmsg_into(buffers, measurement_sockets.ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("receive error: %s", exc)
                return
            self.stats.received += 1
            source = socket.inet_pton(endpoint.family, address[0].split("%")[0])
            reply = self._handle(endpoint, buf, length, ancdata, flags, source, address[1])
            if reply is None:
                continue
            self._finish(buf, length, reply.session)
            try:
                sock.sendmsg([memoryview(buf)[:length]], reply.cmsgs, 0, address)
            except OSError as exc:
                self.stats.send_errors += 1
                log.debug("send to %s failed: %s", address[0], exc)
                continue
            self.stats.reflected += 1

    def _handle(
        self, endpoint: _Endpoint, buf, length: int, ancdata, flags: int, source: bytes, port: int
    ) -> _Reply | None:
        """Admit the request and rewrite it into its reply (all but T3); None: send nothing."""
        try:
            return self._rewrite(endpoint, buf, length, ancdata, flags, source, port)
        except StampDecodeError as exc:
            self.stats.malformed[exc.kind] += 1
        except Exception:  # a bug must not take the reflector down; count it and go on
            log.exception("reflecting a datagram failed")
            self.stats.malformed["internal"] += 1
        return None

    def _rewrite(
        self, endpoint: _Endpoint, buf, length: int, ancdata, flags: int, source: bytes, port: int
    ) -> _Reply | None:
        if flags & _MSG_TRUNC:
            raise StampDecodeError("oversize", f"datagram larger than {MAX_DATAGRAM} octets")
        kernel_ns, hop_limit, traffic_class, destination = measurement_sockets.ancillary_fields(ancdata)
        if self._admission_needed and not self._admitted(source, kernel_ns):
            return None
        receive_ns = kernel_ns or time.time_ns()
        received_dscp = (traffic_class or 0) >> 2
        session = None
        if length == BASE_LEN and self._plain:
            reflect_base_in_place(buf, receive_ns, self._error_estimate, hop_limit or 0)
            reply_dscp = received_dscp
        else:
            session = self._session(source, port, buf, length) if self.config.stateful else None
            if session is not None:
                # The session's previous request may have come in the same burst: its reply
                # takes its number first, so that this one takes the next.
                self._stamp_waiting(session)
            context = None
            if length > self._base_len:  # only TLVs need the addresses and ports
                context = ReceivedContext(
                    source,
                    port,
                    destination or endpoint.packed_address,
                    endpoint.port,
                    received_dscp,
                    (traffic_class or 0) & 0x3,
                )
            requested = reflect_in_place(
                buf,
                length,
                receive_ns=receive_ns,
                error_estimate=self._error_estimate,
                hop_limit=hop_limit or 0,
                session=session.counters if session is not None else None,
                authenticated=self._authenticated,
                key=self._key,
                context=context,
                policy=self._policy,
                stats=self.stats.tlv,
            )
            # The reply travels in the class the sender asked for, else the one it came in:
            # a slice's probe must come back through the same slice.
            reply_dscp = requested if requested != NO_DSCP_REQUEST else received_dscp
        cmsgs = self._cmsgs(endpoint.family, reply_dscp, destination if endpoint.wildcard else None)
        if session is not None:  # last: a request that raised leaves nothing waiting
            session.waiting, session.waiting_length = buf, length
        return _Reply(session, cmsgs)

    def _finish(self, buf, length: int, session: _Session | None) -> None:
        """Write T3 as late as possible, and seal. A stateful reply that a later request of
        its session, in the same burst, had stamped already is left as it is."""
        if session is None:
            if self._key is None:
                stamp_transmit_time(buf, length, time.time_ns())
            else:
                stamp_transmit_time(buf, length, time.time_ns(), authenticated=self._authenticated, key=self._key)
        elif session.waiting is buf:
            self._stamp_waiting(session)

    def _stamp_waiting(self, session: _Session) -> None:
        """T3 and seal for the session's waiting reply, if any, which advances its counters."""
        if session.waiting is not None:
            stamp_transmit_time(
                session.waiting,
                session.waiting_length,
                time.time_ns(),
                session=session.counters,
                authenticated=self._authenticated,
                key=self._key,
            )
            session.waiting = None

    def _cmsgs(self, family: int, dscp: int, source: bytes | None) -> list:
        """Ancillary data for a reply, cached: a handful of DSCPs and local addresses recur."""
        key = (family, dscp, source)
        cmsgs = self._cmsg_cache.get(key)
        if cmsgs is None:
            cmsgs = [measurement_sockets.traffic_class_cmsg(family, dscp << 2)]
            if source:
                cmsgs.append(measurement_sockets.source_address_cmsg(family, source))
            if len(self._cmsg_cache) > 1024:
                self._cmsg_cache.clear()
            self._cmsg_cache[key] = cmsgs
        return cmsgs

    # -- admission and state -------------------------------------------------------------

    def _admitted(self, source: bytes, now_ns: int | None) -> bool:
        """Allow-list and per-source token bucket, keyed by the packed source address."""
        if self._allow is not None:
            allowed = self._allow_cache.get(source)
            if allowed is None:
                allowed = IPAddress(int.from_bytes(source, "big"), 6 if len(source) == 16 else 4) in self._allow
                if len(self._allow_cache) > 65536:
                    self._allow_cache.clear()
                self._allow_cache[source] = allowed
            if not allowed:
                self.stats.refused_not_allowed += 1
                return False
        rate = self.config.rate_limit_pps
        if rate > 0:
            now = now_ns or time.time_ns()
            bucket = self._buckets.get(source)
            if bucket is None:
                if len(self._buckets) > 65536:
                    self._buckets.clear()
                bucket = self._buckets[source] = _TokenBucket(self.config.rate_burst, now)
            elapsed = max(0, now - bucket.last_ns)
            bucket.tokens = min(self.config.rate_burst, bucket.tokens + elapsed * rate / 1e9)
            bucket.last_ns = now
            if bucket.tokens < 1:
                self.stats.refused_rate_limited += 1
                return False
            bucket.tokens -= 1
        return True

    def _session(self, source: bytes, port: int, buf, length: int) -> _Session:
        # RFC 8972 section 3: a session is the SSID together with the sender's address and port.
        offset = 26 if self._authenticated else 14
        ssid = int.from_bytes(buf[offset : offset + 2], "big") if length >= offset + 2 else 0
        key = (source, port, ssid)
        session = self._sessions.get(key)
        if session is None:
            if len(self._sessions) >= self.config.max_sessions:
                del self._sessions[next(iter(self._sessions))]
                self.stats.sessions_evicted += 1
            session = self._sessions[key] = _Session()
        return session

    @property
    def session_count(self) -> int:
        return len(self._sessions)
