"""The logic of one STAMP Session-Sender test session, free of sockets and clocks.

It builds requests, matches replies to them, times them out, and turns each probe into a
`ProbeResult`. Times come in from the caller (nanoseconds), so the logic is testable with
made-up numbers and the socket layer stays thin.

Delay (RFC 8762 section 4.2, RFC 7679/2681): round trip = (T4 - T1) - (T3 - T2), which
removes the reflector's own residence time. Forward = T2 - T1 and reverse = T4 - T3 are
reported only when both clocks claim synchronisation (S flag); the summed error estimate
goes along so consumers can decide whether to trust them.

Loss direction: a reflector's Direct Measurement TLV (RFC 8972 section 4.5) reports how many
of this session's packets it received (R_RxC); with our own count (S_TxC) that splits the
lost packets into forward (never reached the reflector) and reverse (its reply was lost).
Without it, a stateful reflector's own sequence numbers give the same count, when the user
says the reflector is stateful. Otherwise the direction is unknown.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import struct
from dataclasses import dataclass

from collector.contract.records import LossDirection, ProbeResult
from collector.probes.request_log import ANSWERED, OUTSTANDING, SETTLED, STRIDE, TIMED_OUT, RequestLog
from collector.wire.stamp import (
    AUTH_BASE_LEN,
    BASE_LEN,
    ErrorEstimate,
    ReflectorPacket,
    SenderPacket,
    TimestampFormat,
    base_hmac_ok,
    check_key,
    decode_reflector,
    decode_timestamp,
    encode_sender,
    encode_timestamp,
    seal,
)
from collector.wire.stamp_tlv import (
    TLV_HEADER_LEN,
    ClassOfService,
    DirectMeasurement,
    ExtraPadding,
    HmacTlv,
    StampDecodeError,
    TlvFlag,
    hmac_tlv_ok,
)

_U32 = struct.Struct("!I")
# seq, timestamp, error estimate and SSID at the front of a request (RFC 8762 4.2, RFC 8972 3)
_HEADER = struct.Struct("!IQHH")
_AUTH_HEADER = struct.Struct("!I12xQHH")
_CLASS_OF_SERVICE_LEN = 8
_DIRECT_MEASUREMENT_LEN = 16
_HMAC_TLV_LEN = 20
SEQ_MASK = 0xFFFFFFFF
# Answered sequence numbers are remembered to recognise duplicates for at most
# `DUPLICATE_HORIZON_TIMEOUTS` timeouts after they were sent (and at most
# `request_log.MOST_REMEMBERED`): a network's copy arrives close behind the original, and a
# count alone kept 4,096 per session for ever (about 0.6 MiB; an agent's sessions took 20
# minutes to fill theirs at the lab's rate and grew until then). A copy arriving later is
# counted as a late reply.
DUPLICATE_HORIZON_TIMEOUTS = 2


@dataclass(frozen=True, slots=True)
class SenderSettings:
    target: str  # target name, for results
    slice: str  # slice name, for results
    dscp: int = 0  # asked of the reflector for the reply too (Class of Service TLV)
    ssid: int = 0  # 0: pick a random non-zero one
    size: int | None = None  # UDP payload octets; padded with an Extra Padding TLV
    timeout_ns: int = 2_000_000_000
    auth_key: bytes | None = None  # authenticated mode; also fills the HMAC TLV
    timestamp_format: TimestampFormat = TimestampFormat.NTP
    error_estimate: ErrorEstimate = ErrorEstimate()
    stateful_reflector: bool = False  # trust the reflector's sequence numbers for direction

    def __post_init__(self) -> None:
        if self.auth_key is not None:
            check_key(self.auth_key)

    @property
    def authenticated(self) -> bool:
        return self.auth_key is not None

    @property
    def base_len(self) -> int:
        return AUTH_BASE_LEN if self.authenticated else BASE_LEN

    def minimum_size(self) -> int:
        extra = _HMAC_TLV_LEN if self.authenticated else 0
        return self.base_len + _CLASS_OF_SERVICE_LEN + _DIRECT_MEASUREMENT_LEN + extra


@dataclass(frozen=True, slots=True)
class ReplyFacts:
    """What the socket layer knows about a received reply."""

    receive_ns: int  # T4, kernel timestamp when available
    hop_limit: int | None
    dscp: int | None


@dataclass(frozen=True, slots=True)
class _Prepared:
    """What every session with the same settings (but target, slice and SSID) shares: the
    request each copies and fills in (sessions may run on several threads: the analyzer's
    probes), and the constants of its bookkeeping."""

    request: bytes
    header: struct.Struct  # seq, timestamp, error estimate, SSID
    error_estimate: int  # as the wire carries it
    sender_count_offset: int  # S_TxC of the Direct Measurement TLV
    duplicate_horizon_ns: int


@functools.lru_cache(maxsize=64)
def _prepared(settings: SenderSettings) -> _Prepared:
    """The shared request of `settings` (with target, slice and SSID blanked out)."""
    s = settings
    tlvs: list = [ClassOfService(dscp1=s.dscp), DirectMeasurement()]
    fixed = s.base_len + _CLASS_OF_SERVICE_LEN + _DIRECT_MEASUREMENT_LEN
    if s.authenticated:
        fixed += _HMAC_TLV_LEN
    if s.size is not None and s.size > fixed:
        # Extra Padding may follow the HMAC TLV, but keeping it first keeps it covered.
        pad = max(0, s.size - fixed - TLV_HEADER_LEN)
        tlvs.insert(0, ExtraPadding(pad))
        if pad == 0:  # fewer than 4 spare octets: no room for a padding TLV
            tlvs.pop(0)
    if s.authenticated:
        tlvs.append(HmacTlv())
    request = encode_sender(
        SenderPacket(0, 0, s.error_estimate, 0, tuple(tlvs)), s.auth_key, authenticated=s.authenticated
    )
    counter = len(request) - _DIRECT_MEASUREMENT_LEN - (_HMAC_TLV_LEN if s.authenticated else 0) + TLV_HEADER_LEN
    return _Prepared(
        request,
        _AUTH_HEADER if s.authenticated else _HEADER,
        s.error_estimate.encode(),
        counter,
        DUPLICATE_HORIZON_TIMEOUTS * s.timeout_ns,
    )


class StampSession(RequestLog):
    """One session's sequence numbers, outstanding requests and results: its requests are a
    `RequestLog` numbered by sequence number."""

    __slots__ = (
        "settings",
        "target",
        "ssid",
        "_prepared",
        "_timed_out",
        "_forward_lost_assigned",
        "_latest_seq",
        "_latest_forward_total",
        "late_replies",
        "malformed_replies",
        "foreign_replies",
    )

    def __init__(self, settings: SenderSettings, *, target: str | None = None, ssid: int = 0) -> None:
        """`target` names the results instead of `settings.target` and `ssid` (non-zero) is the
        session's instead of `settings.ssid`, so that sessions to many targets may share one
        settings."""
        size = settings.size
        if size is not None and size < settings.minimum_size():
            raise ValueError(
                f"size {size} is below the smallest request with its TLVs ({settings.minimum_size()} octets)"
            )
        super().__init__()
        self.settings = settings
        self.target = settings.target if target is None else target
        self.ssid = ssid or settings.ssid or random.randint(1, 0xFFFF)
        self._prepared = _prepared(dataclasses.replace(settings, target="", slice="", ssid=0))
        self._timed_out = 0  # requests past their timeout whose loss waits for a direction
        self._forward_lost_assigned = 0
        # The latest reply that reported the reflector's count: its seq (-1: none yet) and
        # how many of our packets up to it the reflector missed.
        self._latest_seq = -1
        self._latest_forward_total = 0
        self.late_replies = 0
        self.malformed_replies = 0
        self.foreign_replies = 0  # replies of another session (SSID or unknown seq)

    @property
    def next_seq(self) -> int:
        return self.next_number & SEQ_MASK

    # -- requests ------------------------------------------------------------------------

    def request(self, send_ns: int) -> tuple[int, bytes]:
        """The next request, stamped with T1 = send_ns. Returns (seq, octets)."""
        prepared = self._prepared
        seq = self.add(send_ns, prepared.duplicate_horizon_ns) & SEQ_MASK
        buf = bytearray(prepared.request)
        timestamp = encode_timestamp(send_ns, self.settings.timestamp_format)
        prepared.header.pack_into(buf, 0, seq, timestamp, prepared.error_estimate, self.ssid)
        # S_TxC: packets sent in this session, this one included.
        _U32.pack_into(buf, prepared.sender_count_offset, (seq + 1) & SEQ_MASK)
        if self.settings.auth_key is not None:
            seal(buf, len(buf), self.settings.auth_key, authenticated=True)
        return seq, bytes(buf)

    def on_transmitted(self, seq: int, kernel_send_ns: int) -> None:
        """The kernel's transmit timestamp for `seq` replaces the one read before sending, so
        T1 excludes the time spent in the interpreter and the system call, once its reply shows
        it is plausible (`RequestLog.answer`)."""
        self.transmitted(self.offset(seq, SEQ_MASK), kernel_send_ns)

    def on_icmp_error(self, seq: int, description: str) -> list[ProbeResult]:
        """An ICMP error about request `seq` (e.g. no reflector on that port): lost on the
        way there, with the reason, reported at once rather than at the timeout."""
        at = self.offset(seq, SEQ_MASK)
        if at < 0 or self.entries[at + 2] != OUTSTANDING:
            return []
        self.settle(at, SETTLED)
        s = self.settings
        return [
            ProbeResult(
                self.target, s.slice, seq, self.entries[at], None, LossDirection.FORWARD, icmp_error=description
            )
        ]

    # -- replies -------------------------------------------------------------------------

    def on_reply(self, data: bytes, facts: ReplyFacts) -> list[ProbeResult]:
        """Results this reply settles: its own, and any earlier losses whose direction it tells."""
        try:
            reply = decode_reflector(data, authenticated=self.settings.authenticated)
        except StampDecodeError:
            self.malformed_replies += 1
            return []
        if self.settings.auth_key is not None and not self._authentic(data):
            self.malformed_replies += 1
            return []
        if reply.ssid not in (self.ssid, 0) and not reply.truncated:
            self.foreign_replies += 1
            return []
        seq = reply.sender_seq
        entries = self.entries
        at = ((seq - self.first) & SEQ_MASK) * STRIDE  # as offset() finds it, inline: once a reply
        if at >= len(entries):
            if seq < self.next_seq:
                self.late_replies += 1  # forgotten: it was settled long ago
            else:
                self.foreign_replies += 1
            return []
        state = entries[at + 2]
        if state == ANSWERED:
            return [self._result(seq, entries[at], reply, facts, duplicate=True)]
        if state != OUTSTANDING:
            self.late_replies += 1  # after its timeout: it stays lost (RFC 7680)
            return []
        send_ns = self.answer(at, facts.receive_ns)
        results = self._resolve_directions(seq, reply)
        results.append(self._result(seq, send_ns, reply, facts))
        return results

    def _authentic(self, data: bytes) -> bool:
        key = self.settings.auth_key
        assert key is not None
        return base_hmac_ok(data, key) and hmac_tlv_ok(data, key, AUTH_BASE_LEN) is not False

    def overdue(self, now_ns: int) -> bool:
        """Whether `expire(now_ns)` would time out a request."""
        return self.any_overdue(now_ns, self.settings.timeout_ns)

    def expire(self, now_ns: int) -> list[ProbeResult]:
        """Requests past their timeout become losses. Each gets its direction from the
        latest reply that reported the reflector's count (now, or when one arrives); with
        none within one more timeout it is reported as direction unknown, so that a dead
        path still shows its losses on time."""
        timeout = self.settings.timeout_ns
        entries = self.entries
        at, end = self.checked, len(entries)
        while at < end and now_ns - entries[at] >= timeout:
            if entries[at + 2] == OUTSTANDING:
                self.settle(at, TIMED_OUT)
                self._timed_out += 1
            at += STRIDE
        self.checked = at
        if not self._timed_out:
            return []
        settled = self._settle_pending()  # a later reply may already have told the direction
        for at in self._timed_out_offsets():
            if now_ns - entries[at] >= 2 * timeout:
                settled.append(self._give_up(at, LossDirection.UNKNOWN))
        return settled

    def flush(self) -> list[ProbeResult]:
        """At the end: everything still unanswered is lost, direction unknown if unresolved."""
        entries = self.entries
        results = []
        for at in range(0, len(entries), STRIDE):
            state = entries[at + 2]
            if state == OUTSTANDING:
                self.settle(at, TIMED_OUT)
                self._timed_out += 1
                state = TIMED_OUT
            if state == TIMED_OUT:
                results.append(self._give_up(at, LossDirection.UNKNOWN))
        return results

    def _resolve_directions(self, seq: int, reply: ReflectorPacket) -> list[ProbeResult]:
        """Note what this reply says about forward loss, then settle earlier losses with it."""
        received_by_reflector = self._reflector_count(seq, reply)
        if received_by_reflector is not None:
            # Our packets up to `seq` that the reflector never saw, counted so far.
            self._latest_seq = seq
            self._latest_forward_total = (seq + 1) - received_by_reflector
        return self._settle_pending()

    def _settle_pending(self) -> list[ProbeResult]:
        """Give a direction to the losses below the latest reply that reported a count."""
        if self._latest_seq < 0 or not self._timed_out:
            return []
        latest_seq, first = self._latest_seq, self.first
        earlier = [at for at in self._timed_out_offsets() if (first + at // STRIDE) & SEQ_MASK < latest_seq]
        if not earlier:
            return []
        forward_here = max(0, min(len(earlier), self._latest_forward_total - self._forward_lost_assigned))
        self._forward_lost_assigned += forward_here
        return [
            self._give_up(at, LossDirection.FORWARD if i < forward_here else LossDirection.REVERSE)
            for i, at in enumerate(earlier)
        ]

    def _timed_out_offsets(self) -> list[int]:
        entries = self.entries
        return [at for at in range(0, self.checked, STRIDE) if entries[at + 2] == TIMED_OUT]

    def _give_up(self, at: int, direction: LossDirection) -> ProbeResult:
        """The timed-out request at `at`, reported lost."""
        self.entries[at + 2] = SETTLED
        self._timed_out -= 1
        s = self.settings
        seq = (self.first + at // STRIDE) & SEQ_MASK
        return ProbeResult(self.target, s.slice, seq, self.entries[at], None, direction)

    def _reflector_count(self, seq: int, reply: ReflectorPacket) -> int | None:
        """How many of our packets up to `seq` the reflector received, if it tells us."""
        dm = reply.tlv(DirectMeasurement)
        if dm is not None and not dm.flags & TlvFlag.UNRECOGNIZED and dm.reflector_rx > 0:
            return dm.reflector_rx
        if self.settings.stateful_reflector:
            return reply.seq + 1  # a stateful reflector numbers its replies from 0
        return None

    # -- results -------------------------------------------------------------------------

    def _result(
        self, seq: int, t1: int, reply: ReflectorPacket, facts: ReplyFacts, duplicate: bool = False
    ) -> ProbeResult:
        s = self.settings
        t4 = facts.receive_ns
        rtt = t4 - t1
        t2 = decode_timestamp(reply.receive_timestamp, reply.error_estimate.timestamp_format)
        t3 = decode_timestamp(reply.timestamp, reply.error_estimate.timestamp_format)
        residence = t3 - t2
        if reply.receive_timestamp and reply.timestamp and 0 <= residence < rtt:
            rtt -= residence  # the reflector's own processing is not network delay
        forward = reverse = clock_error = None
        if s.error_estimate.synchronized and reply.error_estimate.synchronized and reply.receive_timestamp:
            forward, reverse = t2 - t1, t4 - t3
            clock_error = s.error_estimate.nanoseconds + reply.error_estimate.nanoseconds
        cos = reply.tlv(ClassOfService)
        reflector_dscp = cos.dscp2 if cos is not None and not cos.flags & TlvFlag.UNRECOGNIZED else None
        return ProbeResult(
            target=self.target,
            slice=s.slice,
            seq=seq,
            sent_ns=t1,
            rtt_ns=rtt,
            loss=LossDirection.NONE,
            forward_owd_ns=forward,
            reverse_owd_ns=reverse,
            reflector_seq=reply.seq,
            reflector_hop_limit=reply.sender_ttl,
            reflector_dscp=reflector_dscp,
            reply_hop_limit=facts.hop_limit,
            reply_dscp=facts.dscp,
            clock_error_ns=clock_error,
            duplicate=duplicate,
        )
