"""The logic of an ICMPv6 echo prober over many targets, free of sockets and clocks.

One identifier and one socket serve every target (as liboping does, so thousands of hosts
cost one file descriptor); each target numbers its own requests, and a reply is matched by
(source address, identifier, sequence number). A payload cookie chosen per run rejects
echo replies that belong to someone else but happen to carry the same identifier.

Echo cannot tell which way a probe was lost, so every loss is LossDirection.UNKNOWN; an
ICMPv6 error about a request (e.g. "address unreachable from a router") settles it at once
with the reason. Round trip = kernel receive time - kernel transmit time (RFC 2681).

Each target's recent requests are a `RequestLog`; one queue of target indexes in send order
serves every target's timeouts, so a request costs the queue one reference.
"""

from __future__ import annotations

import socket
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from collector.contract.records import LossDirection, ProbeResult
from collector.probes.multimap import OneOrMany
from collector.probes.request_log import ANSWERED, OUTSTANDING, SETTLED, STRIDE, RequestLog
from collector.probes.stamp_session import DUPLICATE_HORIZON_TIMEOUTS, ReplyFacts
from collector.wire.icmp6 import (
    COOKIE_LEN,
    ECHO_REPLY,
    ECHO_REQUEST,
    HEADER,
    HEADER_LEN,
    Echo,
    Icmp6DecodeError,
    decode_echo,
    echo_request,
    has_cookie,
    make_payload,
)

WIRE_SEQUENCE = 0xFFFF  # the wire carries a target's sequence number modulo 2**16
# Slices that probe one address number their requests alike, so a request also names its
# target, right after the magic and cookie, where the payload has room for it (it has from
# 12 octets; the default is 56): a reply then settles the request of that target only.
TARGET_INDEX = struct.Struct("!I")
_INDEX_AT = COOKIE_LEN  # in the payload
_ANY_NUMBER = (1 << 63) - 1

Key = tuple[int, int]  # (target index, the target's sequence number): one request


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


class _EchoLog(RequestLog):
    """One target's requests, numbered from 1 as iputils does (so we compare line by line)."""

    __slots__ = ()
    forgets_unchecked = False  # the session's queue reaches each request's timeout in send order


class EchoSession:
    """Outstanding requests of every target, their replies, timeouts and duplicates."""

    def __init__(self, identifier: int, cookie: int, payload_size: int = 56, timeout_ns: int = 2_000_000_000) -> None:
        self.cookie = cookie & 0xFFFFFFFF
        self.payload_size = payload_size
        self.timeout_ns = timeout_ns
        self._horizon_ns = DUPLICATE_HORIZON_TIMEOUTS * timeout_ns
        self._payload = make_payload(self.cookie, payload_size)
        self._names_target = payload_size >= _INDEX_AT + TARGET_INDEX.size
        self.targets: list[EchoTarget] = []
        self._logs: list[_EchoLog] = []
        # packed address -> its target's index, a list of them when several slices share it
        self._by_address: OneOrMany[bytes, int] = OneOrMany()
        self._deadlines: deque[int] = deque()  # each request's target index, in send order
        self._outstanding = 0
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
        index = len(self.targets)
        self.targets.append(target)
        self._logs.append(_EchoLog(first=1))
        self._by_address.add(target.packed, index)
        return index

    def _targets_at(self, packed: bytes, payload: bytes) -> Sequence[int]:
        """The targets a message from (or about) `packed` may be for: the one its payload
        names when several share the address and the payload names one, else every one."""
        found = self._by_address.get(packed)
        if len(found) < 2:
            return found
        if self._names_target and len(payload) >= _INDEX_AT + TARGET_INDEX.size:
            named = TARGET_INDEX.unpack_from(payload, _INDEX_AT)[0]
            return (named,) if named in found else ()
        return found

    @property
    def outstanding(self) -> int:
        return self._outstanding

    # -- requests --------------------------------------------------------------------------

    def request(self, index: int, send_ns: int) -> tuple[int, Key, bytes]:
        """The next request to target `index`, sent at about `send_ns`: (sequence number,
        key for matching, octets)."""
        seq = self._logs[index].add(send_ns, self._horizon_ns)
        self._outstanding += 1
        self._deadlines.append(index)
        HEADER.pack_into(self._template, 0, ECHO_REQUEST, 0, 0, self._identifier, seq & WIRE_SEQUENCE)
        if self._names_target:
            TARGET_INDEX.pack_into(self._template, HEADER_LEN + _INDEX_AT, index)
        return seq, (index, seq), bytes(self._template)

    def on_transmitted(self, key: Key, kernel_send_ns: int) -> None:
        """T1 becomes the kernel's transmit time, when its reply shows it plausible (`RequestLog.answer`):
        the interpreter and the system call are not part of the round trip."""
        index, seq = key
        log = self._logs[index]
        log.transmitted(log.offset(seq, _ANY_NUMBER), kernel_send_ns)

    def on_send_error(self, key: Key, description: str) -> list[ProbeResult]:
        """The request never left (e.g. no route): lost now, with the reason."""
        index, seq = key
        log = self._logs[index]
        at = log.offset(seq, _ANY_NUMBER)
        if at < 0 or log.entries[at + 2] != OUTSTANDING:
            return []
        return [self._lose(index, at, description)]

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
        answered: tuple[int, int] | None = None  # a target that had this one answered already
        for index in self._targets_at(source, echo.payload):
            log = self._logs[index]
            at = log.offset(echo.sequence, WIRE_SEQUENCE)
            if at < 0:
                continue
            entries = log.entries
            state = entries[at + 2]
            if state == OUTSTANDING:
                log.answer(at, facts.receive_ns)
                self._outstanding -= 1
                return [self._answer(index, at, facts)]
            if state == ANSWERED and answered is None:
                answered = (index, at)
        if answered is not None:
            return [self._answer(*answered, facts, duplicate=True)]
        self.late_replies += 1
        return []

    def on_error(self, destination: bytes, quoted: Echo, description: str) -> list[ProbeResult]:
        """An ICMPv6 error that quotes our request to `destination` (packed)."""
        if quoted.identifier != self._identifier or not has_cookie(quoted.payload, self.cookie):
            return []
        for index in self._targets_at(destination, quoted.payload):
            log = self._logs[index]
            at = log.offset(quoted.sequence, WIRE_SEQUENCE)
            if at >= 0 and log.entries[at + 2] == OUTSTANDING:
                return [self._lose(index, at, description)]
        return []

    # -- timeouts --------------------------------------------------------------------------

    def expire(self, now_ns: int) -> list[ProbeResult]:
        """Requests past the timeout become losses (their replies, if late, stay lost)."""
        results = []
        deadlines, logs, timeout = self._deadlines, self._logs, self.timeout_ns
        while deadlines:
            index = deadlines[0]
            log = logs[index]
            at = log.checked  # the request this deadline is for: one each, in send order
            if now_ns - log.entries[at] < timeout:
                break
            deadlines.popleft()
            log.checked = at + STRIDE
            if log.entries[at + 2] == OUTSTANDING:
                results.append(self._lose(index, at, None))
        return results

    def flush(self) -> list[ProbeResult]:
        """At the end: every request still unanswered is lost."""
        results = []
        for index, log in enumerate(self._logs):
            entries = log.entries
            for at in range(log.checked, len(entries), STRIDE):
                if entries[at + 2] == OUTSTANDING:
                    results.append(self._lose(index, at, None))
            log.checked = len(entries)
        self._deadlines.clear()
        return results

    # -- results ---------------------------------------------------------------------------

    def _lose(self, index: int, at: int, reason: str | None) -> ProbeResult:
        """The outstanding request at `at` of target `index`, lost."""
        log = self._logs[index]
        log.settle(at, SETTLED)
        self._outstanding -= 1
        target = self.targets[index]
        seq = log.first + at // STRIDE
        return ProbeResult(
            target.name, target.slice, seq, log.entries[at], None, LossDirection.UNKNOWN, icmp_error=reason
        )

    def _answer(self, index: int, at: int, facts: ReplyFacts, duplicate: bool = False) -> ProbeResult:
        log = self._logs[index]
        target = self.targets[index]
        t1 = log.entries[at]  # the kernel's transmit time where it was plausible
        return ProbeResult(
            target=target.name,
            slice=target.slice,
            seq=log.first + at // STRIDE,
            sent_ns=t1,
            rtt_ns=facts.receive_ns - t1,
            loss=LossDirection.NONE,
            reply_hop_limit=facts.hop_limit,
            reply_dscp=facts.dscp,
            duplicate=duplicate,
        )
