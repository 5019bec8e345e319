"""STAMP Session-Reflector (RFC 8762 section 4.3, RFC 8972): sockets, policy, counters.

One thread drains every bound socket through a selector. Per datagram: admission (source
allow-list; in authenticated mode the HMAC and the replay window, before anything is
charged; then the per-prefix and global rate limits of `rate_limit`), the in-place rewrite
of `wire.stamp_reflect`, the transmit timestamp, and a `sendmsg` with the reply's traffic
class. The reply is the
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
from typing import NamedTuple

from netaddr import IPAddress, IPNetwork, IPSet
from netaddr.core import AddrFormatError

from collector.reflector.rate_limit import RATE_LIMITED, RateLimiter, RateLimits
from collector.reflector.replay import stale
from collector.reflector.sessions import Session, SessionLimits, SessionTable
from collector.system import measurement_sockets, mmsg
from collector.system.clock import ClockStatus, read_clock_status
from collector.wire.stamp import (
    AUTH_BASE_LEN,
    BASE_LEN,
    SENDER_AUTH,
    STAMP_PORT,
    base_hmac_ok,
    check_key,
    ntp_to_ns,
    ptp_to_ns,
)
from collector.wire.stamp_reflect import (
    NO_DSCP_REQUEST,
    ReceivedContext,
    ReflectorPolicy,
    TlvStats,
    TransmitTime,
    number_reply,
    reflect_base_in_place,
    reflect_in_place,
    stamp_base_transmit_time,
    stamp_transmit_time,
)
from collector.wire.stamp_tlv import StampDecodeError

log = logging.getLogger(__name__)

# Plain ints: socket's IntFlag/IntEnum arithmetic costs microseconds per datagram.
_MSG_TRUNC = int(socket.MSG_TRUNC)
MAX_DATAGRAM = 9216  # jumbo-sized requests are fine; larger ones are truncated and dropped
REPLY_HOP_LIMIT = 255  # lets the sender count reverse-path hops from the hop limit it sees
STOP_WAIT_S = 5.0  # how long a stop waits for the serving thread to finish its batch
ALLOW_CACHE_SIZE = 65_536  # allow-list verdicts kept by source address
_SYNCHRONIZED = 0x8000  # the S bit of an Error Estimate
_PTP = 0x4000  # its Z bit


@dataclass(frozen=True)
class ReflectorConfig:
    bind: tuple[str, ...] = ("::",)
    port: int = STAMP_PORT
    stateful: bool = False
    allow: tuple[str, ...] = ()  # source prefixes answered; empty answers everyone
    rate_limit_pps: float = 1000.0  # per source prefix; 0 disables the limit
    rate_burst: int = 200
    global_rate_limit_pps: float = 20_000.0  # every source together; 0 disables the limit
    global_rate_burst: int = 2_000
    rate_prefix_v6: int = 64  # the prefix that shares one budget
    rate_prefix_v4: int = 32
    rate_table_size: int = 65_536  # prefixes with a budget of their own; the rest share one
    auth_key: bytes | None = None  # authenticated mode (112-octet base + HMAC)
    hmac_tlv_key: bytes | None = None  # verify/fill HMAC TLVs in unauthenticated mode
    permitted_dscp: frozenset[int] | None = None  # Class of Service DSCP1 honoured; None: all
    max_sessions: int = 100_000  # established sessions; one gives way only when idle
    max_new_sessions: int = 50_000  # sessions on probation; the oldest evicted beyond it
    replay_max_age_s: float = 60.0  # authenticated requests older than this are stale (both clocks synced)
    clock: ClockStatus | None = None  # None: read the kernel's NTP state at start
    reuse_port: bool = False  # SO_REUSEPORT: several worker processes share the port (workers.py)

    def __post_init__(self) -> None:
        for prefix in self.allow:
            try:
                IPNetwork(prefix)
            except (AddrFormatError, ValueError) as exc:
                raise ValueError(f"allow: {prefix!r} is not an IP prefix ({exc})") from None
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: {self.port} is not a UDP port")
        if not 0 < self.replay_max_age_s <= 86_400:
            raise ValueError(f"replay_max_age_s: expected 0..86400 seconds, got {self.replay_max_age_s}")
        for name, key in (("auth_key", self.auth_key), ("hmac_tlv_key", self.hmac_tlv_key)):
            if key is not None:
                try:
                    check_key(key)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        self.rate_limits()
        self.session_limits()

    def rate_limits(self) -> RateLimits:
        return RateLimits(
            per_prefix_pps=self.rate_limit_pps,
            burst=self.rate_burst,
            global_pps=self.global_rate_limit_pps,
            global_burst=self.global_rate_burst,
            prefix_v6=self.rate_prefix_v6,
            prefix_v4=self.rate_prefix_v4,
            table_size=self.rate_table_size,
        )

    def session_limits(self) -> SessionLimits:
        return SessionLimits(max_established=self.max_sessions, max_probation=self.max_new_sessions)


@dataclass
class ReflectorStats:
    """Counters since start; read without locking (ints, written by one thread)."""

    received: int = 0
    reflected: int = 0
    refused_not_allowed: int = 0
    refused_rate_limited: int = 0  # over the source prefix's budget
    refused_global_rate_limited: int = 0  # over the reflector's overall budget
    refused_replay: int = 0  # authenticated, and answered already
    refused_stale: int = 0  # authenticated, and older than replay_max_age_s
    send_errors: int = 0
    malformed: Counter = field(default_factory=Counter)  # kind -> count
    tlv: TlvStats = field(default_factory=TlvStats)


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


class _Control(NamedTuple):
    """A reply's ancillary data (traffic class, and source address for wildcard binds), as
    items for sendmsg and packed for sendmmsg."""

    cmsgs: list
    packed: bytes


class _Reply(NamedTuple):
    session: Session | None  # the stateful session the reply belongs to
    control: _Control


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
        limits = config.rate_limits()
        self._limiter = RateLimiter(limits, time.time_ns()) if limits.enabled else None
        self.sessions = SessionTable(config.session_limits())
        # Freshness by the clock needs both clocks synchronised; the sender says so in its S bit.
        self._max_age_ns = int(config.replay_max_age_s * 1e9) if clock.synchronized else None
        self._sockets: list[socket.socket] = []
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None
        # Set by the serving thread as its last act: from then on the counters are final. Waited
        # on instead of Thread.join, which in Python 3.11 can take a thread for stopped while it
        # still runs when a signal interrupts the join (the main thread's Ctrl-C or SIGTERM).
        self._served = threading.Event()
        self._control_cache: dict[tuple, _Control] = {}
        self._ancillary = measurement_sockets.AncillaryReader()
        # The common request (44 octets, no TLVs) takes the lean path when nothing else applies.
        self._plain = not self._authenticated and not config.stateful
        self._stateful = config.stateful
        # Ids of numbered replies a later request of their session had to stamp before the
        # burst's T3 (see _drain_batch); emptied every burst.
        self._stamped_early: set[int] = set()
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
            if self.config.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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
        slots, control_area, control_size = batch.slots, batch.control_area, batch.control_size
        read_ancillary = self._ancillary.burst
        # Nothing to admit and no state: the commonest request is answered right here, without
        # the calls of the general path (the profile's largest share after the system calls).
        lean = not self._authenticated and self._allow is None and self._limiter is None
        stateful = self._stateful
        error_estimate, family = self._error_estimate, endpoint.family
        wildcard = endpoint.wildcard
        seal_all = self._key is not None or stateful
        # A stateful lean reply takes its number as it is rewritten and its T3 with the burst's,
        # so the requests behind it in its session read no clock (nothing seals it).
        numbering = stateful and self._key is None
        sessions_get = self.sessions.get
        stamped_early = self._stamped_early
        # The last lean reply's ancillary data, by the traffic class and destination it came
        # with: a burst's requests mostly share both, and a comparison is cheaper than a lookup.
        last_class: int | None = -1
        last_destination: bytes | None = None
        last_control = b""
        while not self._stopping:  # a flood must not hold off a stop
            try:
                count = batch.receive(fd)
            except OSError as exc:  # e.g. an ICMP error queued on the socket
                log.debug("receive error: %s", exc)
                return
            if count == 0:
                return
            stats.received += count
            # (port, address) per datagram: read at once when sessions need them, else once needed
            sources = batch.sources(count, family) if stateful or not lean else []
            replies: list[tuple[int, memoryview, int, Session | None, bool, bytes]] = []
            headers = batch.headers(count)
            ancillaries = read_ancillary(control_area, control_size, [header[0] for header in headers])
            for i, ((_control_length, flags, length), ancillary) in enumerate(zip(headers, ancillaries, strict=True)):
                slot = slots[i]
                if lean and length == BASE_LEN and not flags & _MSG_TRUNC:
                    kernel_ns, hop_limit, traffic_class, destination = ancillary
                    session = None
                    try:
                        receive_ns = kernel_ns or time.time_ns()
                        if numbering:
                            port, source = sources[i]
                            session = sessions_get((source, port, slot[14] << 8 | slot[15]), receive_ns, False)
                            if session.waiting is not None and not session.waiting_numbered:
                                self._stamp_waiting(session, time.time_ns())
                            reflect_base_in_place(slot, receive_ns, error_estimate, hop_limit or 0, session.counters)
                            number_reply(session.counters)
                            session.waiting, session.waiting_length, session.waiting_numbered = slot, length, True
                        elif stateful:
                            port, source = sources[i]
                            session = self._session(source, port, slot, length, receive_ns)
                            reflect_base_in_place(slot, receive_ns, error_estimate, hop_limit or 0, session.counters)
                            session.waiting, session.waiting_length = slot, length
                            session.waiting_numbered = False
                        else:
                            reflect_base_in_place(slot, receive_ns, error_estimate, hop_limit or 0)
                        if traffic_class != last_class or destination != last_destination:
                            last_control = self._control(
                                family, (traffic_class or 0) >> 2, destination if wildcard else None
                            ).packed
                            last_class, last_destination = traffic_class, destination
                    except StampDecodeError as exc:
                        stats.malformed[exc.kind] += 1
                        continue
                    except Exception:
                        self._internal_error("reflecting a datagram")
                        continue
                    replies.append((i, slot, length, session, numbering, last_control))
                    continue
                if not sources:
                    sources = batch.sources(count, family)
                port, source = sources[i]
                reply = self._handle(endpoint, slot, length, ancillary, flags, source, port)
                if reply is not None:
                    replies.append((i, slot, length, reply.session, False, reply.control.packed))
            # T3, read once for the burst just before it leaves, so no reply carries the time
            # spent handling the requests behind it. A stateful reply is stamped earlier only when
            # a later request of its session in the burst takes the general path (which numbers a
            # reply as it stamps it, and whose Follow-up Telemetry names the previous T3).
            transmit_ns = time.time_ns()
            transmit = TransmitTime.of(transmit_ns)
            queued: list[tuple[int, int, bytes]] = []
            for i, slot, length, session, numbered, packed in replies:
                try:
                    if numbered and session is not None:
                        if not stamped_early or id(slot) not in stamped_early:
                            raw = stamp_base_transmit_time(slot, length, transmit)
                            if session.waiting is slot:
                                session.waiting = None
                                session.counters.last_tx_timestamp = raw
                    elif seal_all:
                        self._finish(slot, length, session, transmit_ns)
                    else:
                        stamp_base_transmit_time(slot, length, transmit)
                except Exception:  # the same guard as _handle's: this reply is dropped, the rest go
                    self._internal_error("sealing a reply")
                    continue
                queued.append((i, length, packed))
            stamped_early.clear()
            batch.queue_packed_replies(queued)
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
            ancillary = measurement_sockets.ancillary_fields(ancdata)
            reply = self._handle(endpoint, buf, length, ancillary, flags, source, address[1])
            if reply is None:
                continue
            try:
                self._finish(buf, length, reply.session, time.time_ns())
            except Exception:
                self._internal_error("sealing a reply")
                continue
            try:
                sock.sendmsg([memoryview(buf)[:length]], reply.control.cmsgs, 0, address)
            except OSError as exc:
                self.stats.send_errors += 1
                log.debug("send to %s failed: %s", address[0], exc)
                continue
            self.stats.reflected += 1

    def _handle(
        self, endpoint: _Endpoint, buf, length: int, ancillary: tuple, flags: int, source: bytes, port: int
    ) -> _Reply | None:
        """Admit the request and rewrite it into its reply (all but T3); None: send nothing.
        `ancillary`: the received datagram's `measurement_sockets.ancillary_fields`."""
        try:
            return self._rewrite(endpoint, buf, length, ancillary, flags, source, port)
        except StampDecodeError as exc:
            self.stats.malformed[exc.kind] += 1
        except Exception:  # a bug must not take the reflector down; count it and go on
            self._internal_error("reflecting a datagram")
        return None

    def _internal_error(self, doing: str) -> None:
        log.exception("%s failed", doing)
        self.stats.malformed["internal"] += 1

    def _rewrite(
        self, endpoint: _Endpoint, buf, length: int, ancillary: tuple, flags: int, source: bytes, port: int
    ) -> _Reply | None:
        if flags & _MSG_TRUNC:
            raise StampDecodeError("oversize", f"datagram larger than {MAX_DATAGRAM} octets")
        kernel_ns, hop_limit, traffic_class, destination = ancillary
        receive_ns = kernel_ns or time.time_ns()
        if self._allow is not None and not self._allowed(source):
            self.stats.refused_not_allowed += 1
            return None
        found = None
        if self._authenticated:  # before any budget is charged: a forgery costs its sender's victim nothing
            found = self._authenticated_session(buf, length, source, port, receive_ns)
            if found is None:
                return None
        if self._limiter is not None:
            refusal = self._limiter.admit(source, receive_ns)
            if refusal is not None:
                if refusal is RATE_LIMITED:
                    self.stats.refused_rate_limited += 1
                else:
                    self.stats.refused_global_rate_limited += 1
                return None
        received_dscp = (traffic_class or 0) >> 2
        session = found
        if session is None and self._stateful:
            session = self._session(source, port, buf, length, receive_ns)
        elif session is not None and session.waiting is not None:
            self._stamp_waiting(session, time.time_ns())
        if length == BASE_LEN and not self._authenticated:  # no TLVs: the lean rewrite
            reflect_base_in_place(
                buf, receive_ns, self._error_estimate, hop_limit or 0, session.counters if session else None
            )
            reply_dscp = received_dscp
        else:
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
                verified=self._authenticated,
                key=self._key,
                context=context,
                policy=self._policy,
                stats=self.stats.tlv,
            )
            # The reply travels in the class the sender asked for, else the one it came in:
            # a slice's probe must come back through the same slice.
            reply_dscp = requested if requested != NO_DSCP_REQUEST else received_dscp
        control = self._control(endpoint.family, reply_dscp, destination if endpoint.wildcard else None)
        if session is not None:  # last: a request that raised leaves nothing waiting
            session.waiting, session.waiting_length, session.waiting_numbered = buf, length, False
        return _Reply(session, control)

    def _session(self, source: bytes, port: int, buf, length: int, receive_ns: int) -> Session:
        """The unauthenticated request's session, ready for its rewrite."""
        # RFC 8972 section 3: a session is the SSID together with the sender's address and port.
        session = self.sessions.get((source, port, buf[14] << 8 | buf[15] if length >= 16 else 0), receive_ns, False)
        if session.waiting is not None:
            # The session's previous request came in the same burst: its reply takes its
            # number first, so that this one takes the next.
            self._stamp_waiting(session, time.time_ns())
        return session

    def _finish(self, buf, length: int, session: Session | None, transmit_ns: int) -> None:
        """Write T3 (taken as late as possible), and seal. A stateful reply that a later
        request of its session, in the same burst, had stamped already is left as it is."""
        if session is None:
            if self._key is None:
                stamp_transmit_time(buf, length, transmit_ns)
            else:
                stamp_transmit_time(buf, length, transmit_ns, authenticated=self._authenticated, key=self._key)
        elif session.waiting is buf:
            self._stamp_waiting(session, transmit_ns)

    def _stamp_waiting(self, session: Session, transmit_ns: int) -> None:
        """T3 and seal for the session's waiting reply, if any, which advances its counters
        unless the reply took its number already (then the burst must not stamp it again)."""
        waiting, session.waiting = session.waiting, None  # first: a failure must not leave it waiting
        if waiting is not None and session.waiting_numbered:
            self._stamped_early.add(id(waiting))
            session.counters.last_tx_timestamp = stamp_transmit_time(waiting, session.waiting_length, transmit_ns)
        elif waiting is not None:
            stamp_transmit_time(
                waiting,
                session.waiting_length,
                transmit_ns,
                session=session.counters,
                authenticated=self._authenticated,
                key=self._key,
            )

    def _control(self, family: int, dscp: int, source: bytes | None) -> _Control:
        """Ancillary data for a reply, cached: a handful of DSCPs and local addresses recur."""
        key = (family, dscp, source)
        control = self._control_cache.get(key)
        if control is None:
            cmsgs = [measurement_sockets.traffic_class_cmsg(family, dscp << 2)]
            if source:
                cmsgs.append(measurement_sockets.source_address_cmsg(family, source))
            if len(self._control_cache) > 1024:
                self._control_cache.clear()
            control = self._control_cache[key] = _Control(cmsgs, mmsg.pack_control(cmsgs))
        return control

    # -- admission and state -------------------------------------------------------------

    def _allowed(self, source: bytes) -> bool:
        """The allow-list, cached by the packed source address."""
        assert self._allow is not None
        allowed = self._allow_cache.get(source)
        if allowed is None:
            allowed = IPAddress(int.from_bytes(source, "big"), 6 if len(source) == 16 else 4) in self._allow
            if len(self._allow_cache) >= ALLOW_CACHE_SIZE:
                # The oldest goes, not all: a spray of sources must not cost every sender its entry.
                del self._allow_cache[next(iter(self._allow_cache))]
            self._allow_cache[source] = allowed
        return allowed

    def _authenticated_session(self, buf, length: int, source: bytes, port: int, receive_ns: int) -> Session | None:
        """Verify an authenticated request and refuse it if stale or answered already; its session
        (whose replay window now holds it), or None when refused (counted)."""
        if length < AUTH_BASE_LEN:
            raise StampDecodeError("short", f"{length} octets, authenticated mode needs {AUTH_BASE_LEN}")
        assert self._key is not None
        if not base_hmac_ok(memoryview(buf)[:length], self._key):
            raise StampDecodeError("auth", "the base packet's HMAC does not verify")
        seq, raw_ts, error_estimate, ssid, _mac = SENDER_AUTH.unpack_from(buf)
        ts_ns = ptp_to_ns(raw_ts) if error_estimate & _PTP else ntp_to_ns(raw_ts)
        if (
            self._max_age_ns is not None
            and error_estimate & _SYNCHRONIZED
            and stale(ts_ns, receive_ns, self._max_age_ns)
        ):
            self.stats.refused_stale += 1
            return None
        session = self.sessions.get((source, port, ssid), receive_ns, True)
        if not session.replay.admit(seq, ts_ns):
            self.stats.refused_replay += 1
            return None
        return session

    @property
    def session_count(self) -> int:
        return len(self.sessions)
