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

import random
import struct
from collections import OrderedDict
from dataclasses import dataclass

from collector.contract.records import LossDirection, ProbeResult
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
_U64 = struct.Struct("!Q")
_CLASS_OF_SERVICE_LEN = 8
_DIRECT_MEASUREMENT_LEN = 16
_HMAC_TLV_LEN = 20
# Answered sequence numbers are remembered to recognise duplicates, at most this many and
# for at most `DUPLICATE_HORIZON_TIMEOUTS` timeouts after they were sent: a network's copy
# arrives close behind the original, and a count alone kept 4,096 per session for ever (about
# 0.6 MiB; an agent's sessions took 20 minutes to fill theirs at the lab's rate and grew
# until then). A copy arriving later is counted as a late reply.
_DUPLICATE_MEMORY = 4096
DUPLICATE_HORIZON_TIMEOUTS = 2


@dataclass(frozen=True)
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


def kernel_t1(read_before_send_ns: int, kernel_send_ns: int | None, receive_ns: int) -> int:
    """T1 of an answered probe: the kernel's transmit time when it lies between the clock read
    before the send and the reply's arrival, else the clock read. Transmit timestamps are
    matched to sends by the kernel's count of them, and a send the kernel counted but then
    refused (a full queue) shifts later matches until the count realigns on a report numbered
    past it (`transmit_reports`): such a time can come after the reply or belong to another
    probe, and a negative round trip would make the agent's window refused."""
    if kernel_send_ns is not None and read_before_send_ns <= kernel_send_ns <= receive_ns:
        return kernel_send_ns
    return read_before_send_ns


class StampSession:
    """One session's sequence numbers, outstanding requests and results."""

    def __init__(self, settings: SenderSettings) -> None:
        size = settings.size
        if size is not None and size < settings.minimum_size():
            raise ValueError(
                f"size {size} is below the smallest request with its TLVs ({settings.minimum_size()} octets)"
            )
        self.settings = settings
        self.ssid = settings.ssid or random.randint(1, 0xFFFF)
        self.next_seq = 0
        self._outstanding: OrderedDict[int, int] = OrderedDict()  # seq -> T1 read before sending (ns)
        self._kernel_sent: dict[int, int] = {}  # seq -> the kernel's transmit time, while outstanding
        self._answered: OrderedDict[int, int] = OrderedDict()  # recent seq -> T1, for duplicates
        self._expired: list[tuple[int, int]] = []  # (seq, T1) lost, direction not yet known
        self._forward_lost_assigned = 0
        self._latest_count: tuple[int, int] | None = None  # (seq, our packets the reflector missed)
        self._template = self._build_template()
        self._ts_offset = 16 if settings.authenticated else 4
        self.late_replies = 0
        self.malformed_replies = 0
        self.foreign_replies = 0  # replies of another session (SSID or unknown seq)

    # -- requests ------------------------------------------------------------------------

    def _build_template(self) -> bytearray:
        s = self.settings
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
        packet = SenderPacket(0, 0, s.error_estimate, self.ssid, tuple(tlvs))
        raw = encode_sender(packet, s.auth_key, authenticated=s.authenticated)
        return bytearray(raw)

    def request(self, send_ns: int) -> tuple[int, bytes]:
        """The next request, stamped with T1 = send_ns. Returns (seq, octets)."""
        seq = self.next_seq
        self.next_seq = (seq + 1) & 0xFFFFFFFF
        buf = self._template
        _U32.pack_into(buf, 0, seq)
        _U64.pack_into(buf, self._ts_offset, encode_timestamp(send_ns, self.settings.timestamp_format))
        self._stamp_direct_measurement(buf, seq)
        if self.settings.auth_key is not None:
            seal(buf, len(buf), self.settings.auth_key, authenticated=True)
        self._outstanding[seq] = send_ns
        return seq, bytes(buf)

    def on_transmitted(self, seq: int, kernel_send_ns: int) -> None:
        """The kernel's transmit timestamp for `seq` replaces the one read before sending, so
        T1 excludes the time spent in the interpreter and the system call, once its reply shows
        it is plausible (`kernel_t1`)."""
        if seq in self._outstanding:
            self._kernel_sent[seq] = kernel_send_ns

    def on_icmp_error(self, seq: int, description: str) -> list[ProbeResult]:
        """An ICMP error about request `seq` (e.g. no reflector on that port): lost on the
        way there, with the reason, reported at once rather than at the timeout."""
        send_ns = self._outstanding.pop(seq, None)
        self._kernel_sent.pop(seq, None)
        if send_ns is None:
            return []
        s = self.settings
        return [ProbeResult(s.target, s.slice, seq, send_ns, None, LossDirection.FORWARD, icmp_error=description)]

    def _stamp_direct_measurement(self, buf: bytearray, seq: int) -> None:
        # S_TxC: packets sent in this session, this one included.
        offset = len(buf) - _DIRECT_MEASUREMENT_LEN - (_HMAC_TLV_LEN if self.settings.authenticated else 0)
        _U32.pack_into(buf, offset + TLV_HEADER_LEN, seq + 1)

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
        send_ns = self._outstanding.pop(seq, None)
        if send_ns is not None:
            send_ns = kernel_t1(send_ns, self._kernel_sent.pop(seq, None), facts.receive_ns)
        if send_ns is None:
            if seq in self._answered:
                return [self._result(seq, self._answered[seq], reply, facts, duplicate=True)]
            if seq < self.next_seq:
                self.late_replies += 1  # after its timeout: it stays lost (RFC 7680)
            else:
                self.foreign_replies += 1
            return []
        self._remember_answered(seq, send_ns)
        results = self._resolve_directions(seq, reply)
        results.append(self._result(seq, send_ns, reply, facts))
        return results

    def _remember_answered(self, seq: int, send_ns: int) -> None:
        answered = self._answered
        answered[seq] = send_ns
        horizon = send_ns - DUPLICATE_HORIZON_TIMEOUTS * self.settings.timeout_ns
        while len(answered) > _DUPLICATE_MEMORY or next(iter(answered.values())) < horizon:
            answered.popitem(last=False)

    @property
    def remembered_answers(self) -> int:
        """Answered sequence numbers held for recognising duplicates."""
        return len(self._answered)

    def _authentic(self, data: bytes) -> bool:
        key = self.settings.auth_key
        assert key is not None
        return base_hmac_ok(data, key) and hmac_tlv_ok(data, key, AUTH_BASE_LEN) is not False

    def overdue(self, now_ns: int) -> bool:
        """Whether `expire(now_ns)` would time out a request."""
        oldest = next(iter(self._outstanding.values()), None)
        return oldest is not None and now_ns - oldest >= self.settings.timeout_ns

    def expire(self, now_ns: int) -> list[ProbeResult]:
        """Requests past their timeout become losses. Each gets its direction from the
        latest reply that reported the reflector's count (now, or when one arrives); with
        none within one more timeout it is reported as direction unknown, so that a dead
        path still shows its losses on time."""
        timeout = self.settings.timeout_ns
        while self._outstanding:
            seq, send_ns = next(iter(self._outstanding.items()))
            if now_ns - send_ns < timeout:
                break
            del self._outstanding[seq]
            self._kernel_sent.pop(seq, None)
            self._expired.append((seq, send_ns))
        settled = self._settle_pending()  # a later reply may already have told the direction
        overdue = [(s, t) for s, t in self._expired if now_ns - t >= 2 * timeout]
        if overdue:
            self._expired = [(s, t) for s, t in self._expired if now_ns - t < 2 * timeout]
            settled += [self._lost(s, t, LossDirection.UNKNOWN) for s, t in overdue]
        return settled

    def flush(self) -> list[ProbeResult]:
        """At the end: everything still unanswered is lost, direction unknown if unresolved."""
        for seq, send_ns in self._outstanding.items():
            self._expired.append((seq, send_ns))
        self._outstanding.clear()
        self._kernel_sent.clear()
        results = [self._lost(seq, send_ns, LossDirection.UNKNOWN) for seq, send_ns in self._expired]
        self._expired.clear()
        return results

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    def _resolve_directions(self, seq: int, reply: ReflectorPacket) -> list[ProbeResult]:
        """Note what this reply says about forward loss, then settle earlier losses with it."""
        received_by_reflector = self._reflector_count(seq, reply)
        if received_by_reflector is not None:
            # Our packets up to `seq` that the reflector never saw, counted so far.
            self._latest_count = (seq, (seq + 1) - received_by_reflector)
        return self._settle_pending()

    def _settle_pending(self) -> list[ProbeResult]:
        """Give a direction to the losses below the latest reply that reported a count."""
        if self._latest_count is None or not self._expired:
            return []
        latest_seq, forward_total = self._latest_count
        earlier = [(s, t) for s, t in self._expired if s < latest_seq]
        if not earlier:
            return []
        self._expired = [(s, t) for s, t in self._expired if s >= latest_seq]
        forward_here = max(0, min(len(earlier), forward_total - self._forward_lost_assigned))
        self._forward_lost_assigned += forward_here
        return [
            self._lost(s, t, LossDirection.FORWARD if i < forward_here else LossDirection.REVERSE)
            for i, (s, t) in enumerate(earlier)
        ]

    def _reflector_count(self, seq: int, reply: ReflectorPacket) -> int | None:
        """How many of our packets up to `seq` the reflector received, if it tells us."""
        dm = reply.tlv(DirectMeasurement)
        if dm is not None and not dm.flags & TlvFlag.UNRECOGNIZED and dm.reflector_rx > 0:
            return dm.reflector_rx
        if self.settings.stateful_reflector:
            return reply.seq + 1  # a stateful reflector numbers its replies from 0
        return None

    # -- results -------------------------------------------------------------------------

    def _lost(self, seq: int, send_ns: int, direction: LossDirection) -> ProbeResult:
        s = self.settings
        return ProbeResult(s.target, s.slice, seq, send_ns, None, direction)

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
            target=s.target,
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
