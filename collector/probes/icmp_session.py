"""The logic of an ICMPv6 echo prober over many targets, free of sockets and clocks.

One identifier and one socket serve every target (as liboping does, so thousands of hosts
cost one file descriptor); each target numbers its own requests, and a reply is matched by
(source address, identifier, sequence number). A payload cookie chosen per run rejects
echo replies that belong to someone else but happen to carry the same identifier.

Echo cannot tell which way a probe was lost, so every loss is LossDirection.UNKNOWN; an
ICMPv6 error about a request (e.g. "address unreachable from a router") settles it at once
with the reason. Round trip = kernel receive time - kernel transmit time (RFC 2681).
"""

from __future__ import annotations

import socket
from collections import OrderedDict, deque
from dataclasses import dataclass

from collector.contract.records import LossDirection, ProbeResult
from collector.probes.stamp_session import DUPLICATE_HORIZON_TIMEOUTS, ReplyFacts, kernel_t1
from collector.wire.icmp6 import (
    ECHO_REPLY,
    ECHO_REQUEST,
    HEADER,
    Echo,
    Icmp6DecodeError,
    decode_echo,
    echo_request,
    has_cookie,
    make_payload,
)

# Answered (target, sequence) pairs are remembered to recognise duplicates, at most this many
# and, as STAMP's, for at most DUPLICATE_HORIZON_TIMEOUTS timeouts after they were sent: the
# count alone kept 65,536 whatever the rate (16 MiB, most of an agent's memory at 1,000 targets).
_DUPLICATE_MEMORY = 65536

Key = tuple[bytes, int]  # (packed target address, 16-bit sequence number on the wire)


@dataclass(frozen=True, slots=True)
class EchoTarget:
    """One address to ping, and the slice marking its requests carry."""

    name: str
    address: str  # an IPv6 literal
    slice: str = "-"
    dscp: int = 0
    flow_label: int | None = None

    @property
    def packed(self) -> bytes:
        return socket.inet_pton(socket.AF_INET6, self.address.split("%")[0])


@dataclass(slots=True)
class _Pending:
    index: int  # which target
    seq: int  # the target's own count, from 1 (the wire carries it modulo 2**16)
    sent_ns: int  # T1 read before sending
    kernel_sent_ns: int | None = None  # the kernel's transmit time, once reported


class EchoSession:
    """Outstanding requests of every target, their replies, timeouts and duplicates."""

    def __init__(self, identifier: int, cookie: int, payload_size: int = 56, timeout_ns: int = 2_000_000_000) -> None:
        self.cookie = cookie & 0xFFFFFFFF
        self.payload_size = payload_size
        self.timeout_ns = timeout_ns
        self._payload = make_payload(self.cookie, payload_size)
        self.targets: list[EchoTarget] = []
        self._packed: list[bytes] = []
        self._next_seq: list[int] = []
        self._outstanding: dict[Key, _Pending] = {}
        self._deadlines: deque[tuple[int, Key, int]] = deque()  # (send ns, key, seq) in send order
        # A _Pending's fields as a tuple of ints: the garbage collector stops tracking such a
        # tuple, so its 65,536 entries, which live seconds at 10,000 targets, cost no collection.
        self._answered: OrderedDict[Key, tuple[int, int, int, int | None]] = OrderedDict()
        self.identifier = identifier
        self.malformed_replies = 0
        self.foreign_replies = 0  # someone else's echo replies (identifier or cookie differ)
        self.late_replies = 0  # ours, after the timeout: they stay lost (RFC 7680)

    @property
    def identifier(self) -> int:
        return self._identifier

    @identifier.setter
    def identifier(self, value: int) -> None:
        # A ping socket's identifier is its local port, known only once it is bound.
        self._identifier = value & 0xFFFF
        self._template = bytearray(echo_request(self._identifier, 0, self._payload))

    def add_target(self, target: EchoTarget) -> int:
        self.targets.append(target)
        self._packed.append(target.packed)
        self._next_seq.append(1)  # iputils numbers from 1; so do we, to compare line by line
        return len(self.targets) - 1

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    # -- requests --------------------------------------------------------------------------

    def request(self, index: int, send_ns: int) -> tuple[int, Key, bytes]:
        """The next request to target `index`, sent at about `send_ns`: (sequence number,
        key for matching, octets)."""
        seq = self._next_seq[index]
        self._next_seq[index] = seq + 1
        wire_seq = seq & 0xFFFF
        key = (self._packed[index], wire_seq)
        HEADER.pack_into(self._template, 0, ECHO_REQUEST, 0, 0, self._identifier, wire_seq)
        self._outstanding[key] = _Pending(index, seq, send_ns)
        self._deadlines.append((send_ns, key, seq))
        return seq, key, bytes(self._template)

    def on_transmitted(self, key: Key, kernel_send_ns: int) -> None:
        """T1 becomes the kernel's transmit time, when its reply shows it plausible (`kernel_t1`):
        the interpreter and the system call are not part of the round trip."""
        pending = self._outstanding.get(key)
        if pending is not None:
            pending.kernel_sent_ns = kernel_send_ns

    def on_send_error(self, key: Key, description: str) -> list[ProbeResult]:
        """The request never left (e.g. no route): lost now, with the reason."""
        pending = self._outstanding.pop(key, None)
        return [] if pending is None else [self._lost(pending, description)]

    # -- replies and errors ----------------------------------------------------------------

    def on_reply(self, source: bytes, data: bytes, facts: ReplyFacts) -> list[ProbeResult]:
        """What an ICMPv6 message from `source` (packed) settles: one result or none."""
        try:
            echo = decode_echo(data)
        except Icmp6DecodeError:
            self.malformed_replies += 1
            return []
        if echo.type != ECHO_REPLY or echo.identifier != self._identifier or not has_cookie(echo.payload, self.cookie):
            self.foreign_replies += 1
            return []
        key = (source, echo.sequence)
        pending = self._outstanding.pop(key, None)
        if pending is None:
            answered = self._answered.get(key)
            if answered is not None:
                return [self._answer(_Pending(*answered), facts, duplicate=True)]
            self.late_replies += 1
            return []
        remembered = self._answered
        remembered[key] = (pending.index, pending.seq, pending.sent_ns, pending.kernel_sent_ns)
        horizon = pending.sent_ns - DUPLICATE_HORIZON_TIMEOUTS * self.timeout_ns
        while len(remembered) > _DUPLICATE_MEMORY or next(iter(remembered.values()))[2] < horizon:
            remembered.popitem(last=False)
        return [self._answer(pending, facts)]

    def on_error(self, destination: bytes, quoted: Echo, description: str) -> list[ProbeResult]:
        """An ICMPv6 error that quotes our request to `destination` (packed)."""
        if quoted.identifier != self._identifier or not has_cookie(quoted.payload, self.cookie):
            return []
        pending = self._outstanding.pop((destination, quoted.sequence), None)
        return [] if pending is None else [self._lost(pending, description)]

    # -- timeouts --------------------------------------------------------------------------

    def expire(self, now_ns: int) -> list[ProbeResult]:
        """Requests past the timeout become losses (their replies, if late, stay lost)."""
        results = []
        deadlines = self._deadlines
        while deadlines and now_ns - deadlines[0][0] >= self.timeout_ns:
            _sent, key, seq = deadlines.popleft()
            pending = self._outstanding.get(key)
            if pending is not None and pending.seq == seq:
                del self._outstanding[key]
                results.append(self._lost(pending, None))
        return results

    def flush(self) -> list[ProbeResult]:
        """At the end: every request still unanswered is lost."""
        results = [self._lost(p, None) for p in self._outstanding.values()]
        self._outstanding.clear()
        self._deadlines.clear()
        return results

    # -- results ---------------------------------------------------------------------------

    def _lost(self, pending: _Pending, reason: str | None) -> ProbeResult:
        target = self.targets[pending.index]
        return ProbeResult(
            target.name, target.slice, pending.seq, pending.sent_ns, None, LossDirection.UNKNOWN, icmp_error=reason
        )

    def _answer(self, pending: _Pending, facts: ReplyFacts, duplicate: bool = False) -> ProbeResult:
        target = self.targets[pending.index]
        t1 = kernel_t1(pending.sent_ns, pending.kernel_sent_ns, facts.receive_ns)
        return ProbeResult(
            target=target.name,
            slice=target.slice,
            seq=pending.seq,
            sent_ns=t1,
            rtt_ns=facts.receive_ns - t1,
            loss=LossDirection.NONE,
            reply_hop_limit=facts.hop_limit,
            reply_dscp=facts.dscp,
            duplicate=duplicate,
        )
