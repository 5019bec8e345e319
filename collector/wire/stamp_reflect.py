"""The Session-Reflector's hot path: a STAMP request turned into its reply in one buffer.

No object is built per packet: fields are read with `unpack_from` and written with
`pack_into` into the receive buffer, so the reply has exactly the request's length
(RFC 8762 symmetric size, and never an amplifier). Two steps, so that the transmit
timestamp is taken as late as possible:

    reply_dscp = reflect_in_place(buf, n, ...)   # everything but T3
    stamp_transmit_time(buf, n, time.time_ns())  # T3, then the HMACs that cover it
"""

from __future__ import annotations

import hmac as hmac_lib
import struct
from dataclasses import dataclass
from typing import NamedTuple

from collector.wire.stamp import (
    AUTH_BASE_LEN,
    BASE_LEN,
    REFLECTOR_AUTH,
    REFLECTOR_BASE,
    SENDER_AUTH,
    SENDER_BASE,
    STAMP_PORT,
    TWAMP_LIGHT_MIN_LEN,
    TimestampFormat,
    base_hmac_ok,
    encode_timestamp,
    ns_to_ntp,
    ns_to_ptp,
    seal,
)
from collector.wire.stamp_tlv import (
    HMAC_LEN,
    KNOWN_TLV_TYPES,
    PADDING_TYPE,
    TLV_HEADER,
    TLV_HEADER_LEN,
    LocationSubTlvType,
    StampDecodeError,
    SyncSource,
    TimestampMethod,
    TlvFlag,
    TlvType,
    compute_hmac,
    hmac_tlv_text,
    locate_hmac_tlv,
    location_sub_tlv_length,
    tlv_length_valid,
)

_TWAMP_SENDER = struct.Struct("!IQH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_TWO_U32 = struct.Struct("!II")
_FOLLOW_UP = struct.Struct("!IQB")
_Z_FLAG = 1 << 14
_NOT_Z_FLAG = ~_Z_FLAG
_Z_OCTET = _Z_FLAG >> 8  # the Z flag within the Error Estimate's first octet
# Bound once: a global and an attribute lookup fewer for every request on the lean path.
_unpack_sender_base = SENDER_BASE.unpack_from
_pack_reflector_base = REFLECTOR_BASE.pack_into
_pack_u64 = _U64.pack_into
_PROCESSED = ~(TlvFlag.UNRECOGNIZED | TlvFlag.MALFORMED | TlvFlag.INTEGRITY) & 0xFF


@dataclass(frozen=True, slots=True)
class ReceivedContext:
    """What the reflector's socket saw of one request, for the TLVs that report it."""

    source_address: bytes = b""  # packed, 4 or 16 octets
    source_port: int = 0
    destination_address: bytes = b""
    destination_port: int = STAMP_PORT
    dscp: int = 0
    ecn: int = 0


@dataclass(slots=True)
class SessionCounters:
    """Per-session counters a stateful reflector keeps (RFC 8762 section 4.3; RFC 8972 4.5/4.7)."""

    next_seq: int = 0  # the reflector's own sequence number for the next reply
    received: int = 0
    transmitted: int = 0
    last_tx_seq: int = 0
    last_tx_timestamp: int = 0  # raw 64-bit, of the previous reply


@dataclass(frozen=True, slots=True)
class ReflectorPolicy:
    """The reflector's static answers and local policy."""

    sync_source: int = SyncSource.LOCAL_FREE_RUNNING
    timestamp_method: int = TimestampMethod.SOFTWARE_LOCAL
    permitted_dscp: frozenset[int] | None = None  # DSCP1 values honoured; None: all


class TlvStats:
    """Running counts of what the reflector did with TLVs, read by the metrics layer."""

    __slots__ = ("unrecognized", "malformed", "integrity_failed", "dscp_refused")

    def __init__(self) -> None:
        self.unrecognized = 0
        self.malformed = 0
        self.integrity_failed = 0
        self.dscp_refused = 0


NO_DSCP_REQUEST = -1


def reflect_in_place(
    buf: bytearray,
    length: int,
    *,
    receive_ns: int,
    error_estimate: int,
    hop_limit: int,
    session: SessionCounters | None = None,
    authenticated: bool = False,
    verified: bool = False,
    key: bytes | None = None,
    context: ReceivedContext | None = None,
    policy: ReflectorPolicy = ReflectorPolicy(),
    stats: TlvStats | None = None,
) -> int:
    """Rewrite the request in `buf[:length]` as the reply (all but T3), in place.

    `session` given means stateful: the reply carries the session's own sequence number
    and the counters are advanced; None is stateless and reuses the sender's number.
    `error_estimate` is the reflector's encoded Error Estimate; its Z flag is replaced by
    the request's so that the sender reads every timestamp in the format it chose.
    `verified` says the caller checked the base packet's HMAC already (authenticated mode).
    Returns the DSCP the sender asked for in a Class of Service TLV (when permitted),
    else NO_DSCP_REQUEST. Raises StampDecodeError for a request that gets no reply.
    """
    if not authenticated and length == BASE_LEN:
        reflect_base_in_place(buf, receive_ns, error_estimate, hop_limit, session)
        return NO_DSCP_REQUEST
    if authenticated:
        if length < AUTH_BASE_LEN:
            raise StampDecodeError("short", f"{length} octets, authenticated mode needs {AUTH_BASE_LEN}")
        if key is None or not (verified or base_hmac_ok(memoryview(buf)[:length], key)):
            raise StampDecodeError("auth", "the base packet's HMAC does not verify")
        sseq, sts, serr, ssid, _mac = SENDER_AUTH.unpack_from(buf)
        base_len = AUTH_BASE_LEN
    elif length >= BASE_LEN:
        sseq, sts, serr, ssid = SENDER_BASE.unpack_from(buf)
        base_len = BASE_LEN
    elif length >= TWAMP_LIGHT_MIN_LEN:
        sseq, sts, serr = _TWAMP_SENDER.unpack_from(buf)
        ssid = 0
        base_len = BASE_LEN
    else:
        raise StampDecodeError("short", f"{length} octets, a sender packet needs {TWAMP_LIGHT_MIN_LEN}")
    if not serr & 0xFF:
        raise StampDecodeError("error-estimate", "the sender's multiplier is zero")

    z = serr & _Z_FLAG
    err = (error_estimate & ~_Z_FLAG) | z
    rx_raw = encode_timestamp(receive_ns, TimestampFormat.PTP if z else TimestampFormat.NTP)
    if session is None:
        seq = sseq
    else:
        seq = session.next_seq
        session.received += 1

    reply_dscp = NO_DSCP_REQUEST
    if length > base_len:
        reply_dscp = _reflect_tlvs(
            buf,
            base_len,
            length,
            authenticated,
            key,
            context,
            session,
            policy,
            stats if stats is not None else TlvStats(),
        )
    if authenticated:
        REFLECTOR_AUTH.pack_into(buf, 0, seq, 0, err, ssid, rx_raw, sseq, sts, serr, hop_limit, bytes(HMAC_LEN))
    elif length >= BASE_LEN:
        REFLECTOR_BASE.pack_into(buf, 0, seq, 0, err, ssid, rx_raw, sseq, sts, serr, 0, hop_limit)
    else:
        # A TWAMP-Light request shorter than the STAMP base: RFC 8762 section 4.6 would
        # answer with the 44-octet base, but a reply larger than its request makes the
        # reflector an amplifier, so the reply keeps the request's length. An RFC 5357
        # sender pads to at least 41 octets, which holds every TWAMP reflector field.
        full = REFLECTOR_BASE.pack(seq, 0, err, ssid, rx_raw, sseq, sts, serr, 0, hop_limit)
        buf[:length] = full[:length]
    return reply_dscp


def reflect_base_in_place(
    buf: bytearray | memoryview,
    receive_ns: int,
    error_estimate: int,
    hop_limit: int,
    session: SessionCounters | None = None,
) -> None:
    """`reflect_in_place` for the commonest request: unauthenticated, exactly the 44-octet
    base, so no TLVs. Positional arguments and no TLV walk keep it cheap."""
    sseq, sts, serr, ssid = _unpack_sender_base(buf)
    if not serr & 0xFF:
        raise StampDecodeError("error-estimate", "the sender's multiplier is zero")
    z = serr & _Z_FLAG
    rx_raw = ns_to_ptp(receive_ns) if z else ns_to_ntp(receive_ns)
    if session is None:
        seq = sseq
    else:
        seq = session.next_seq
        session.received += 1
    _pack_reflector_base(
        buf, 0, seq, 0, (error_estimate & _NOT_Z_FLAG) | z, ssid, rx_raw, sseq, sts, serr, 0, hop_limit
    )


class TransmitTime(NamedTuple):
    """One transmit time in both timestamp formats, converted once for a burst of replies."""

    ntp: int
    ptp: int

    @classmethod
    def of(cls, transmit_ns: int) -> TransmitTime:
        return cls(ns_to_ntp(transmit_ns), ns_to_ptp(transmit_ns))


def stamp_base_transmit_time(buf: bytearray | memoryview, length: int, transmit: TransmitTime) -> int:
    """`stamp_transmit_time` for an unauthenticated reply that no key seals and whose number
    is written already: T3 in the format the reply's Error Estimate names; returns it raw."""
    if length < 14:
        return 0
    raw = transmit.ptp if buf[12] & _Z_OCTET else transmit.ntp
    _pack_u64(buf, 4, raw)
    return raw


def number_reply(session: SessionCounters) -> None:
    """Give a stateful reply the number `reflect_base_in_place` wrote into it, before its T3:
    the reply that follows it in a burst takes the next one without reading the clock."""
    session.last_tx_seq = session.next_seq
    session.next_seq = (session.next_seq + 1) & 0xFFFFFFFF
    session.transmitted += 1


def stamp_transmit_time(
    buf: bytearray,
    length: int,
    transmit_ns: int,
    *,
    session: SessionCounters | None = None,
    authenticated: bool = False,
    key: bytes | None = None,
) -> int:
    """Write T3 into a prepared reply, seal it, and advance a stateful session's counters;
    returns T3 as written (raw 64 bits, 0 when the reply is too short to hold it)."""
    offset = 16 if authenticated else 4
    if length >= offset + 10:  # the timestamp and the error estimate behind it fit
        (err,) = _U16.unpack_from(buf, offset + 8)
        raw = ns_to_ptp(transmit_ns) if err & _Z_FLAG else ns_to_ntp(transmit_ns)
        _U64.pack_into(buf, offset, raw)
    else:
        raw = 0
    if key is not None:
        seal(buf, length, key, authenticated=authenticated)
    if session is not None:
        number_reply(session)
        session.last_tx_timestamp = raw
    return raw


def _reflect_tlvs(
    buf: bytearray,
    base_len: int,
    end: int,
    authenticated: bool,
    key: bytes | None,
    context: ReceivedContext | None,
    session: SessionCounters | None,
    policy: ReflectorPolicy,
    stats: TlvStats,
) -> int:
    """Answer every TLV of the request (RFC 8972 section 4), in place; returns the reply DSCP."""
    if end - base_len < TLV_HEADER_LEN or buf[base_len + 1] == PADDING_TYPE:
        return NO_DSCP_REQUEST  # TWAMP-Light padding or stray octets: copied as received

    # Integrity before anything is read or rewritten: the HMAC covers the request's bytes.
    placement = locate_hmac_tlv(buf, base_len, end)
    if key is not None and (placement.offset is not None or (authenticated and placement.other_tlvs)):
        if not placement.well_placed or not _hmac_tlv_verifies(buf, base_len, placement.offset, key):
            _flag_all(buf, base_len, end, TlvFlag.INTEGRITY)
            stats.integrity_failed += 1
            return NO_DSCP_REQUEST

    reply_dscp = NO_DSCP_REQUEST
    offset = base_len
    while offset + TLV_HEADER_LEN <= end:
        flags, tlv_type, length = TLV_HEADER.unpack_from(buf, offset)
        value_at = offset + TLV_HEADER_LEN
        if value_at + length > end or (tlv_type in KNOWN_TLV_TYPES and not tlv_length_valid(tlv_type, length)):
            # Malformed: flag it, stop, and send the rest back as received.
            buf[offset] = (flags & _PROCESSED) | TlvFlag.MALFORMED
            stats.malformed += 1
            return reply_dscp
        if tlv_type not in KNOWN_TLV_TYPES or (tlv_type == TlvType.HMAC and key is None):
            buf[offset] = (flags & _PROCESSED) | TlvFlag.UNRECOGNIZED
            stats.unrecognized += 1
        else:
            buf[offset] = flags & _PROCESSED
            if tlv_type == TlvType.CLASS_OF_SERVICE:
                reply_dscp = _answer_class_of_service(buf, value_at, context, policy, stats)
            elif tlv_type == TlvType.LOCATION:
                if not _answer_location(buf, value_at, value_at + length, context):
                    buf[offset] |= TlvFlag.MALFORMED
                    stats.malformed += 1
                    return reply_dscp
            elif tlv_type == TlvType.TIMESTAMP_INFORMATION:
                buf[value_at : value_at + 4] = bytes(
                    (policy.sync_source, policy.timestamp_method, policy.sync_source, policy.timestamp_method)
                )
            elif tlv_type == TlvType.DIRECT_MEASUREMENT:
                # S_TxC stays; R_RxC and R_TxC count this session's packets, this one included.
                received = session.received if session else 0
                transmitted = session.transmitted + 1 if session else 0
                _TWO_U32.pack_into(buf, value_at + 4, received, transmitted)
            elif tlv_type == TlvType.FOLLOW_UP_TELEMETRY:
                # A stateless reflector has no previous reply to report: zeros.
                last_seq = session.last_tx_seq if session and session.transmitted else 0
                last_ts = session.last_tx_timestamp if session and session.transmitted else 0
                _FOLLOW_UP.pack_into(buf, value_at, last_seq, last_ts, policy.timestamp_method)
            # Extra Padding, Access Report and HMAC are echoed; the HMAC is recomputed at sealing.
        offset = value_at + length
    return reply_dscp


def _hmac_tlv_verifies(buf: bytearray, base_len: int, tlv_offset: int | None, key: bytes) -> bool:
    if tlv_offset is None:
        return False  # authenticated mode with TLVs but no HMAC TLV
    start = tlv_offset + TLV_HEADER_LEN
    expected = compute_hmac(key, hmac_tlv_text(buf, base_len, tlv_offset))
    return hmac_lib.compare_digest(expected, bytes(buf[start : start + HMAC_LEN]))


def _flag_all(buf: bytearray, base_len: int, end: int, flag: int) -> None:
    offset = base_len
    while offset + TLV_HEADER_LEN <= end:
        _flags, _type, length = TLV_HEADER.unpack_from(buf, offset)
        buf[offset] |= flag
        offset += TLV_HEADER_LEN + length


def _answer_class_of_service(
    buf: bytearray, value_at: int, context: ReceivedContext | None, policy: ReflectorPolicy, stats: TlvStats
) -> int:
    (word,) = _U32.unpack_from(buf, value_at)
    dscp1 = word >> 26
    received_dscp = context.dscp if context else 0
    received_ecn = context.ecn if context else 0
    rp = 0
    reply_dscp = dscp1
    if policy.permitted_dscp is not None and dscp1 not in policy.permitted_dscp:
        rp, reply_dscp = 1, received_dscp  # not allowed here: answer in the received class
        stats.dscp_refused += 1
    word = (dscp1 << 26) | (received_dscp & 0x3F) << 20 | (received_ecn & 0x3) << 18 | rp << 16
    _U32.pack_into(buf, value_at, word)
    return reply_dscp


def _answer_location(buf: bytearray, start: int, end: int, context: ReceivedContext | None) -> bool:
    """Fill ports and answer each request sub-TLV by rewriting its type (RFC 8972 4.2).
    A malformed sub-TLV leaves the whole TLV as received (the caller sets M)."""
    sub_tlvs = []
    offset = start + 4
    while offset < end:
        if offset + TLV_HEADER_LEN > end:
            return False
        flags, sub_type, sub_len = TLV_HEADER.unpack_from(buf, offset)
        value_at = offset + TLV_HEADER_LEN
        if value_at + sub_len > end or location_sub_tlv_length(sub_type) not in (None, sub_len):
            return False
        sub_tlvs.append((offset, flags, sub_type, sub_len))
        offset = value_at + sub_len
    if context is None:
        context = ReceivedContext()
    _U16.pack_into(buf, start, context.destination_port)
    _U16.pack_into(buf, start + 2, context.source_port)
    for offset, flags, sub_type, sub_len in sub_tlvs:
        answer = _location_answer(sub_type, context)
        if answer is None:
            buf[offset] = flags | TlvFlag.UNRECOGNIZED
            continue
        answer_type, address = answer
        value_at = offset + TLV_HEADER_LEN
        buf[offset] = flags & _PROCESSED
        buf[offset + 1] = answer_type
        buf[value_at : value_at + sub_len] = address.ljust(sub_len, b"\0")[:sub_len]
    return True


def _location_answer(sub_type: int, context: ReceivedContext) -> tuple[int, bytes] | None:
    if sub_type == LocationSubTlvType.SOURCE_MAC_REQUEST:
        return LocationSubTlvType.SOURCE_EUI64, b""  # a UDP socket does not see the MAC
    if sub_type == LocationSubTlvType.SOURCE_IP_REQUEST:
        address = context.source_address
        v6 = len(address) == 16
        return (LocationSubTlvType.SOURCE_IPV6 if v6 else LocationSubTlvType.SOURCE_IPV4), address
    if sub_type == LocationSubTlvType.DESTINATION_IP_REQUEST:
        address = context.destination_address
        v6 = len(address) == 16
        return (LocationSubTlvType.DESTINATION_IPV6 if v6 else LocationSubTlvType.DESTINATION_IPV4), address
    return None
