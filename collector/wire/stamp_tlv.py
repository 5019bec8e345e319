"""STAMP optional extensions (RFC 8972 section 4): TLVs, their flags, and the HMAC TLV.

Pure codec, no sockets. Every TLV is a frozen dataclass with `value()` for its bytes;
`decode_tlvs` parses a TLV area strictly. Multi-octet fields are big-endian.
"""

from __future__ import annotations

import hashlib
import hmac as hmac_lib
import struct
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag

TLV_HEADER_LEN = 4
HMAC_LEN = 16  # HMAC-SHA-256 truncated to 128 bits (RFC 8762 section 4.4)

TLV_HEADER = struct.Struct("!BBH")
_U32 = struct.Struct("!I")


class StampDecodeError(ValueError):
    """Octets that are not a valid STAMP packet. `kind` is a short, stable label for counters."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class TlvType(IntEnum):
    EXTRA_PADDING = 1
    LOCATION = 2
    TIMESTAMP_INFORMATION = 3
    CLASS_OF_SERVICE = 4
    DIRECT_MEASUREMENT = 5
    ACCESS_REPORT = 6
    FOLLOW_UP_TELEMETRY = 7
    HMAC = 8


class TlvFlag(IntFlag):
    """A sender sets U on every TLV it sends and clears M and I; the reflector clears U on
    each TLV it understood, and sets M (malformed) or I (HMAC verification failed)."""

    UNRECOGNIZED = 0x80  # U
    MALFORMED = 0x40  # M
    INTEGRITY = 0x20  # I


SENDER_TLV_FLAGS = TlvFlag.UNRECOGNIZED


class LocationSubTlvType(IntEnum):
    """Request types (sent zero-filled) and the answer types a reflector rewrites them to."""

    SOURCE_MAC_REQUEST = 1
    SOURCE_EUI48 = 2
    SOURCE_EUI64 = 3
    DESTINATION_IP_REQUEST = 4
    DESTINATION_IPV4 = 5
    DESTINATION_IPV6 = 6
    SOURCE_IP_REQUEST = 7
    SOURCE_IPV4 = 8
    SOURCE_IPV6 = 9


def location_sub_tlv_length(sub_type: int) -> int | None:
    if 1 <= sub_type <= 3:
        return 8
    if 4 <= sub_type <= 9:
        return 16
    return None


class SyncSource(IntEnum):
    """Synchronization source code points of the Timestamp Information TLV."""

    NTP = 1
    PTP = 2
    SSU_BITS = 3
    GNSS = 4  # GPS, GLONASS, LORAN-C, BDS, Galileo share one code point
    LOCAL_FREE_RUNNING = 5


class TimestampMethod(IntEnum):
    HARDWARE = 1  # hardware-assisted
    SOFTWARE_LOCAL = 2  # kernel/software timestamps, which is what xnetmon uses
    CONTROL_PLANE = 3


@dataclass(frozen=True, slots=True)
class ExtraPadding:
    length: int  # octets of padding in the value
    flags: int = SENDER_TLV_FLAGS
    type: int = field(default=TlvType.EXTRA_PADDING, init=False)

    def value(self) -> bytes:
        return bytes(self.length)


@dataclass(frozen=True, slots=True)
class LocationSubTlv:
    sub_type: int
    address: bytes  # the raw value: 16 octets for IP (IPv4 + 12 MBZ), 8 for MAC/EUI
    flags: int = 0


@dataclass(frozen=True, slots=True)
class Location:
    """The sender lists the sub-TLVs it wants; the reflector fills what it observed."""

    destination_port: int = 0
    source_port: int = 0
    sub_tlvs: tuple[LocationSubTlv, ...] = ()
    flags: int = SENDER_TLV_FLAGS
    type: int = field(default=TlvType.LOCATION, init=False)

    def value(self) -> bytes:
        parts = [struct.pack("!HH", self.destination_port, self.source_port)]
        for sub in self.sub_tlvs:
            parts.append(TLV_HEADER.pack(sub.flags, sub.sub_type, len(sub.address)) + sub.address)
        return b"".join(parts)

    @classmethod
    def request(cls, *sub_types: LocationSubTlvType) -> Location:
        """What a sender sends: the sub-TLVs it asks for, zero-filled."""
        return cls(sub_tlvs=tuple(LocationSubTlv(t, bytes(location_sub_tlv_length(t) or 0)) for t in sub_types))


@dataclass(frozen=True, slots=True)
class TimestampInformation:
    sync_source_in: int = 0
    method_in: int = 0
    sync_source_out: int = 0
    method_out: int = 0
    extra: bytes = b""  # optional sub-TLVs, carried opaquely
    flags: int = SENDER_TLV_FLAGS
    type: int = field(default=TlvType.TIMESTAMP_INFORMATION, init=False)

    def value(self) -> bytes:
        return bytes((self.sync_source_in, self.method_in, self.sync_source_out, self.method_out)) + self.extra


@dataclass(frozen=True, slots=True)
class ClassOfService:
    """DSCP1: the DSCP the sender asks the reflector to use for the reply; DSCP2 and ECN:
    what the reflector received; RP: set by the reflector when it could not honour DSCP1."""

    dscp1: int = 0
    dscp2: int = 0
    ecn: int = 0
    rp: int = 0
    flags: int = SENDER_TLV_FLAGS
    type: int = field(default=TlvType.CLASS_OF_SERVICE, init=False)

    def value(self) -> bytes:
        word = (self.dscp1 & 0x3F) << 26 | (self.dscp2 & 0x3F) << 20 | (self.ecn & 0x3) << 18 | (self.rp & 0x3) << 16
        return _U32.pack(word)


@dataclass(frozen=True, slots=True)
class DirectMeasurement:
    sender_tx: int = 0  # S_TxC: packets the sender sent in the session, this one included
    reflector_rx: int = 0  # R_RxC: packets the reflector received in the session
    reflector_tx: int = 0  # R_TxC: packets the reflector sent in the session
    flags: int = SENDER_TLV_FLAGS
    type: int = field(default=TlvType.DIRECT_MEASUREMENT, init=False)

    def value(self) -> bytes:
        return struct.pack("!III", self.sender_tx, self.reflector_rx, self.reflector_tx)


@dataclass(frozen=True, slots=True)
class AccessReport:
    access_id: int = 0  # 4 bits
    return_code: int = 0
    flags: int = SENDER_TLV_FLAGS
    type: int = field(default=TlvType.ACCESS_REPORT, init=False)

    def value(self) -> bytes:
        return struct.pack("!BBH", (self.access_id & 0xF) << 4, self.return_code, 0)


@dataclass(frozen=True, slots=True)
class FollowUpTelemetry:
    """The reflector's precise transmit time of its previous reply in the session."""

    sequence_number: int = 0
    timestamp: int = 0  # raw 64-bit timestamp
    timestamp_mode: int = 0
    flags: int = SENDER_TLV_FLAGS
    type: int = field(default=TlvType.FOLLOW_UP_TELEMETRY, init=False)

    def value(self) -> bytes:
        return struct.pack("!IQB3x", self.sequence_number, self.timestamp, self.timestamp_mode)


@dataclass(frozen=True, slots=True)
class HmacTlv:
    digest: bytes = bytes(HMAC_LEN)
    flags: int = SENDER_TLV_FLAGS
    type: int = field(default=TlvType.HMAC, init=False)

    def value(self) -> bytes:
        return self.digest


@dataclass(frozen=True, slots=True)
class UnknownTlv:
    type: int
    raw_value: bytes
    flags: int = SENDER_TLV_FLAGS

    def value(self) -> bytes:
        return self.raw_value


Tlv = (
    ExtraPadding
    | Location
    | TimestampInformation
    | ClassOfService
    | DirectMeasurement
    | AccessReport
    | FollowUpTelemetry
    | HmacTlv
    | UnknownTlv
)

# (shortest, longest) value length of each known TLV type; outside it a TLV is malformed.
_TLV_LENGTH_BOUNDS = {
    TlvType.LOCATION: (4, 0xFFFF),  # ports, then sub-TLVs
    TlvType.TIMESTAMP_INFORMATION: (4, 0xFFFF),  # four code points, then optional sub-TLVs
    TlvType.CLASS_OF_SERVICE: (4, 4),
    TlvType.DIRECT_MEASUREMENT: (12, 12),
    TlvType.ACCESS_REPORT: (4, 4),
    TlvType.FOLLOW_UP_TELEMETRY: (16, 16),
    TlvType.HMAC: (HMAC_LEN, HMAC_LEN),
}


KNOWN_TLV_TYPES = frozenset(int(t) for t in TlvType)
PADDING_TYPE = 0  # Reserved: a TLV area that starts with it is TWAMP-Light padding, not TLVs


def tlv_length_valid(tlv_type: int, length: int) -> bool:
    low, high = _TLV_LENGTH_BOUNDS.get(tlv_type, (0, 0xFFFF))  # type: ignore[call-overload]
    return low <= length <= high


def encode_tlv(tlv: Tlv) -> bytes:
    value = tlv.value()
    return TLV_HEADER.pack(tlv.flags, tlv.type, len(value)) + value


def encode_tlvs(tlvs: tuple[Tlv, ...] | list[Tlv]) -> bytes:
    return b"".join(encode_tlv(t) for t in tlvs)


def _decode_location(value: bytes, flags: int) -> Location:
    destination_port, source_port = struct.unpack_from("!HH", value)
    subs = []
    offset = 4
    while offset < len(value):
        if offset + TLV_HEADER_LEN > len(value):
            raise StampDecodeError("tlv-malformed", "location sub-TLV header overruns the TLV")
        sub_flags, sub_type, sub_len = TLV_HEADER.unpack_from(value, offset)
        offset += TLV_HEADER_LEN
        if offset + sub_len > len(value):
            raise StampDecodeError("tlv-malformed", "location sub-TLV value overruns the TLV")
        subs.append(LocationSubTlv(sub_type, bytes(value[offset : offset + sub_len]), sub_flags))
        offset += sub_len
    return Location(destination_port, source_port, tuple(subs), flags)


def decode_tlv_value(tlv_type: int, flags: int, value: bytes) -> Tlv:
    """One TLV from its header fields and value.

    Unknown types, and TLVs a reflector flagged U or M, stay uninterpreted (`UnknownTlv`).
    """
    if flags & TlvFlag.MALFORMED or tlv_type not in KNOWN_TLV_TYPES:
        return UnknownTlv(tlv_type, bytes(value), flags)
    if not tlv_length_valid(tlv_type, len(value)):
        raise StampDecodeError("tlv-malformed", f"TLV type {tlv_type} has length {len(value)}")
    if tlv_type == TlvType.EXTRA_PADDING:
        return ExtraPadding(len(value), flags)
    if tlv_type == TlvType.LOCATION:
        return _decode_location(value, flags)
    if tlv_type == TlvType.TIMESTAMP_INFORMATION:
        return TimestampInformation(value[0], value[1], value[2], value[3], bytes(value[4:]), flags)
    if tlv_type == TlvType.CLASS_OF_SERVICE:
        (word,) = _U32.unpack(value)
        return ClassOfService(word >> 26, (word >> 20) & 0x3F, (word >> 18) & 0x3, (word >> 16) & 0x3, flags)
    if tlv_type == TlvType.DIRECT_MEASUREMENT:
        sender_tx, reflector_rx, reflector_tx = struct.unpack("!III", value)
        return DirectMeasurement(sender_tx, reflector_rx, reflector_tx, flags)
    if tlv_type == TlvType.ACCESS_REPORT:
        return AccessReport(value[0] >> 4, value[1], flags)
    if tlv_type == TlvType.FOLLOW_UP_TELEMETRY:
        seq, ts, mode = struct.unpack("!IQB3x", value)
        return FollowUpTelemetry(seq, ts, mode, flags)
    if tlv_type == TlvType.HMAC:
        return HmacTlv(bytes(value), flags)
    return UnknownTlv(tlv_type, bytes(value), flags)


def decode_tlvs(data: bytes | memoryview) -> tuple[Tlv, ...]:
    """Every TLV in `data` (the octets after the base packet). Strict: any overrun raises.

    An area that starts with type 0 is TWAMP-Light padding (RFC 8762 section 4.6) and holds
    no TLVs. After a TLV a reflector flagged malformed, the rest is an uninterpreted copy.
    """
    tlvs: list[Tlv] = []
    offset = 0
    end = len(data)
    if end >= 2 and data[1] == PADDING_TYPE:
        return ()
    while offset < end:
        if offset + TLV_HEADER_LEN > end:
            raise StampDecodeError("tlv-truncated", f"{end - offset} trailing octets after TLVs")
        flags, tlv_type, length = TLV_HEADER.unpack_from(data, offset)
        offset += TLV_HEADER_LEN
        if flags & TlvFlag.MALFORMED:
            tlvs.append(UnknownTlv(tlv_type, bytes(data[offset:end]), flags))
            break
        if offset + length > end:
            raise StampDecodeError("tlv-truncated", f"TLV type {tlv_type} claims {length} octets, {end - offset} left")
        tlvs.append(decode_tlv_value(tlv_type, flags, bytes(data[offset : offset + length])))
        offset += length
    return tuple(tlvs)


# ---------------------------------------------------------------------------------------
# HMAC TLV (RFC 8972 section 4.8)
# ---------------------------------------------------------------------------------------


def compute_hmac(key: bytes, data: bytes | bytearray | memoryview) -> bytes:
    return hmac_lib.new(key, data, hashlib.sha256).digest()[:HMAC_LEN]


def hmac_tlv_text(packet: bytes | bytearray | memoryview, base_len: int, hmac_tlv_offset: int) -> bytes:
    """What the HMAC TLV covers: the base packet's Sequence Number and every TLV before it."""
    return bytes(packet[0:4]) + bytes(packet[base_len:hmac_tlv_offset])


@dataclass(frozen=True, slots=True)
class HmacTlvPlacement:
    """Where the HMAC TLV of a TLV area is, and whether it is where RFC 8972 wants it."""

    offset: int | None  # header offset of the HMAC TLV, None when there is none
    well_placed: bool  # after every TLV but Extra Padding, and the only one
    other_tlvs: bool  # TLVs other than Extra Padding and HMAC are present


def locate_hmac_tlv(packet: bytes | bytearray | memoryview, base_len: int, end: int) -> HmacTlvPlacement:
    offset = base_len
    found: int | None = None
    well_placed = True
    other = False
    while offset + TLV_HEADER_LEN <= end:
        _flags, tlv_type, length = TLV_HEADER.unpack_from(packet, offset)
        if offset + TLV_HEADER_LEN + length > end:
            break
        if tlv_type == TlvType.HMAC:
            if found is not None or length != HMAC_LEN:
                well_placed = False
            found = offset
        elif tlv_type != TlvType.EXTRA_PADDING:
            other = True
            if found is not None:
                well_placed = False  # only Extra Padding may follow the HMAC TLV
        offset += TLV_HEADER_LEN + length
    return HmacTlvPlacement(found, found is not None and well_placed, other)


def write_hmac_tlv(buf: bytearray, base_len: int, end: int, key: bytes) -> None:
    """Fill the HMAC TLV of `buf[:end]`, if it has one, from the octets it covers."""
    placement = locate_hmac_tlv(buf, base_len, end)
    # Only a well-formed HMAC TLV is written: a wrong Length must never make us write
    # past it (over the next TLV, or past the datagram).
    if placement.offset is not None and placement.well_placed:
        start = placement.offset + TLV_HEADER_LEN
        buf[start : start + HMAC_LEN] = compute_hmac(key, hmac_tlv_text(buf, base_len, placement.offset))


def hmac_tlv_ok(packet: bytes | bytearray | memoryview, key: bytes, base_len: int) -> bool | None:
    """True/False when the packet's HMAC TLV does/doesn't verify; None when it has none."""
    placement = locate_hmac_tlv(packet, base_len, len(packet))
    if placement.offset is None:
        return None
    if not placement.well_placed:
        return False
    start = placement.offset + TLV_HEADER_LEN
    expected = compute_hmac(key, hmac_tlv_text(packet, base_len, placement.offset))
    return hmac_lib.compare_digest(expected, bytes(packet[start : start + HMAC_LEN]))
