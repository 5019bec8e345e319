"""STAMP base test packets (RFC 8762), timestamps and the Error Estimate: bytes <-> dataclasses.

Pure codec, no sockets. `SenderPacket` and `ReflectorPacket` with `encode_*`/`decode_*`, for
senders, tests and tools; the TLVs of RFC 8972 live in `stamp_tlv`, the reflector's
allocation-free hot path in `stamp_reflect`.

Layouts (octet offsets) follow RFC 8762 sections 4.2 and 4.3, with the SSID of RFC 8972
section 3 in the former MBZ octets 14-15 (unauthenticated) and 26-27 (authenticated).
The authenticated base HMAC covers the first 96 octets (RFC 8762 section 4.4).
"""

from __future__ import annotations

import hmac as hmac_lib
import math
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeVar

from collector.wire.stamp_tlv import (
    HMAC_LEN,
    StampDecodeError,
    Tlv,
    compute_hmac,
    decode_tlvs,
    encode_tlvs,
    write_hmac_tlv,
)

_T = TypeVar("_T")

STAMP_PORT = 862
BASE_LEN = 44  # unauthenticated sender and reflector base packets are both 44 octets
AUTH_BASE_LEN = 112  # authenticated base packets are both 112 octets
AUTH_HMAC_OFFSET = 96  # the base packet's HMAC covers the 96 octets in front of it
# Authenticated STAMP uses HMAC-SHA-256 (RFC 8762 section 4.4): a key shorter than the
# 16-octet tag it produces is easier to guess than the tag itself (RFC 2104 section 3).
MIN_KEY_LEN = 16
TWAMP_LIGHT_MIN_LEN = 14  # sequence number, timestamp, error estimate (RFC 5357 sender)
TWAMP_REFLECTOR_LEN = 41  # RFC 5357 reflector fields end with the sender TTL octet
NTP_UNIX_OFFSET_S = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
_NTP_UNIX_OFFSET_NS = NTP_UNIX_OFFSET_S * 1_000_000_000

# Unauthenticated offsets.
SENDER_BASE = struct.Struct("!IQHH28x")  # seq, timestamp, error estimate, ssid, MBZ
REFLECTOR_BASE = struct.Struct("!IQHHQIQHHB3x")
# Authenticated offsets (RFC 8762 figures 4 and 6).
SENDER_AUTH = struct.Struct("!I12xQHH68x16s")
REFLECTOR_AUTH = struct.Struct("!I12xQHH4xQ8xI12xQH6xB15x16s")
_TWAMP_SENDER = struct.Struct("!IQH")


# ---------------------------------------------------------------------------------------
# Timestamps and the Error Estimate (RFC 8762 section 4.2.1, RFC 4656 section 4.1.2)
# ---------------------------------------------------------------------------------------


class TimestampFormat(IntEnum):
    """The Z flag of the Error Estimate: which format the packet's timestamps use."""

    NTP = 0  # 32-bit seconds since 1900 + 32-bit binary fraction
    PTP = 1  # PTPv2 truncated: 32-bit seconds since 1970 + 32-bit nanoseconds


def ns_to_ntp(ns: int) -> int:
    # One division: the seconds since 1900 scaled by 2^32 are whole, so flooring the scaled
    # nanoseconds gives the seconds in the high half and the truncated fraction in the low.
    return (((ns + _NTP_UNIX_OFFSET_NS) << 32) // 1_000_000_000) & 0xFFFFFFFFFFFFFFFF


def ntp_to_ns(raw: int) -> int:
    seconds = (raw >> 32) - NTP_UNIX_OFFSET_S
    # Round the 2^-32 s fraction to the nearest nanosecond so ns -> NTP -> ns is exact.
    return seconds * 1_000_000_000 + (((raw & 0xFFFFFFFF) * 1_000_000_000 + (1 << 31)) >> 32)


def ns_to_ptp(ns: int) -> int:
    seconds, rest = divmod(ns, 1_000_000_000)
    return ((seconds & 0xFFFFFFFF) << 32) | rest


def ptp_to_ns(raw: int) -> int:
    return (raw >> 32) * 1_000_000_000 + (raw & 0xFFFFFFFF)


def encode_timestamp(ns: int, fmt: TimestampFormat) -> int:
    return ns_to_ptp(ns) if fmt is TimestampFormat.PTP else ns_to_ntp(ns)


def decode_timestamp(raw: int, fmt: TimestampFormat) -> int:
    return ptp_to_ns(raw) if fmt is TimestampFormat.PTP else ntp_to_ns(raw)


@dataclass(frozen=True, slots=True)
class ErrorEstimate:
    """S (clock synchronised to UTC), Z (timestamp format), Scale and Multiplier.

    The error is Multiplier * 2^(Scale - 32) seconds; Multiplier is never zero on the wire.
    """

    synchronized: bool = False
    timestamp_format: TimestampFormat = TimestampFormat.NTP
    scale: int = 0
    multiplier: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.scale <= 63:
            raise ValueError(f"error estimate scale {self.scale} not in 0..63")
        if not 1 <= self.multiplier <= 255:
            raise ValueError(f"error estimate multiplier {self.multiplier} not in 1..255")

    @property
    def seconds(self) -> float:
        return self.multiplier * 2.0 ** (self.scale - 32)

    @property
    def nanoseconds(self) -> int:
        return (self.multiplier * 1_000_000_000 << self.scale) >> 32

    def encode(self) -> int:
        return (int(self.synchronized) << 15) | (int(self.timestamp_format) << 14) | (self.scale << 8) | self.multiplier

    @classmethod
    def decode(cls, raw: int) -> ErrorEstimate:
        multiplier = raw & 0xFF
        if multiplier == 0:
            raise StampDecodeError("error-estimate", "multiplier is zero (RFC 4656 4.1.2)")
        return cls(
            synchronized=bool(raw & 0x8000),
            timestamp_format=TimestampFormat((raw >> 14) & 1),
            scale=(raw >> 8) & 0x3F,
            multiplier=multiplier,
        )

    @classmethod
    def from_seconds(
        cls,
        error_s: float,
        *,
        synchronized: bool,
        timestamp_format: TimestampFormat = TimestampFormat.NTP,
    ) -> ErrorEstimate:
        """The smallest representable estimate not below `error_s` (rounding up stays honest)."""
        units = max(1, math.ceil(error_s * 2**32))
        scale = 0
        while units > 255:
            units = -(-units // 2)
            scale += 1
        if scale > 63:
            scale, units = 63, 255
        return cls(synchronized, timestamp_format, scale, units)


# ---------------------------------------------------------------------------------------
# Packets
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SenderPacket:
    seq: int
    timestamp: int  # raw 64-bit timestamp in `error_estimate.timestamp_format`
    error_estimate: ErrorEstimate = ErrorEstimate()
    ssid: int = 0
    tlvs: tuple[Tlv, ...] = ()
    hmac: bytes | None = None  # authenticated mode: the base HMAC as received


@dataclass(frozen=True, slots=True)
class ReflectorPacket:
    seq: int
    timestamp: int  # reflector transmit time (T3), raw
    error_estimate: ErrorEstimate
    ssid: int
    receive_timestamp: int  # reflector receive time (T2), raw
    sender_seq: int
    sender_timestamp: int  # T1 as the sender wrote it
    sender_error_estimate: ErrorEstimate
    sender_ttl: int  # hop limit the request arrived with
    tlvs: tuple[Tlv, ...] = ()
    hmac: bytes | None = None
    truncated: bool = False  # a reply to a short TWAMP-Light request (fewer fields)

    def tlv(self, cls: type[_T]) -> _T | None:
        """The first TLV of type `cls`."""
        return next((t for t in self.tlvs if isinstance(t, cls)), None)


def check_key(key: bytes) -> None:
    """Raise ValueError, in words, when `key` is too short to be an HMAC key."""
    if len(key) < MIN_KEY_LEN:
        raise ValueError(
            f"a STAMP key needs at least {MIN_KEY_LEN} bytes, got {len(key)} "
            "(RFC 8762 HMAC-SHA-256; e.g. head -c 32 /dev/urandom > KEYFILE)"
        )


def seal(buf: bytearray, length: int, key: bytes, *, authenticated: bool) -> None:
    """Write the HMACs of a finished packet: the HMAC TLV if present, then the base HMAC
    (whose 96 octets do not include the TLVs, so the order does not matter)."""
    write_hmac_tlv(buf, AUTH_BASE_LEN if authenticated else BASE_LEN, length, key)
    if authenticated:
        buf[AUTH_HMAC_OFFSET:AUTH_BASE_LEN] = compute_hmac(key, memoryview(buf)[:AUTH_HMAC_OFFSET])


def base_hmac_ok(packet: bytes | bytearray | memoryview, key: bytes) -> bool:
    expected = compute_hmac(key, packet[:AUTH_HMAC_OFFSET])
    return hmac_lib.compare_digest(expected, bytes(packet[AUTH_HMAC_OFFSET:AUTH_BASE_LEN]))


def encode_sender(packet: SenderPacket, key: bytes | None = None, *, authenticated: bool = False) -> bytes:
    """Bytes of a Session-Sender packet. `authenticated` selects the 112-octet layout; `key`
    (required then) also fills an HMAC TLV, which unauthenticated packets may carry too."""
    err = packet.error_estimate.encode()
    if authenticated:
        base = SENDER_AUTH.pack(packet.seq, packet.timestamp, err, packet.ssid, bytes(HMAC_LEN))
    else:
        base = SENDER_BASE.pack(packet.seq, packet.timestamp, err, packet.ssid)
    return _finish(base + encode_tlvs(packet.tlvs), key, authenticated)


def _finish(octets: bytes, key: bytes | None, authenticated: bool) -> bytes:
    if key is None:
        if authenticated:
            raise ValueError("authenticated mode needs a key")
        return octets
    out = bytearray(octets)
    seal(out, len(out), key, authenticated=authenticated)
    return bytes(out)


def decode_sender(data: bytes | memoryview, *, authenticated: bool = False) -> SenderPacket:
    n = len(data)
    if authenticated:
        if n < AUTH_BASE_LEN:
            raise StampDecodeError("short", f"{n} octets, authenticated sender needs {AUTH_BASE_LEN}")
        seq, ts, err, ssid, mac = SENDER_AUTH.unpack_from(data)
        return SenderPacket(seq, ts, ErrorEstimate.decode(err), ssid, decode_tlvs(data[AUTH_BASE_LEN:]), bytes(mac))
    if n < TWAMP_LIGHT_MIN_LEN:
        raise StampDecodeError("short", f"{n} octets, a sender packet needs {TWAMP_LIGHT_MIN_LEN}")
    if n < BASE_LEN:  # TWAMP-Light: no SSID, no TLVs
        seq, ts, err = _TWAMP_SENDER.unpack_from(data)
        return SenderPacket(seq, ts, ErrorEstimate.decode(err))
    seq, ts, err, ssid = SENDER_BASE.unpack_from(data)
    return SenderPacket(seq, ts, ErrorEstimate.decode(err), ssid, decode_tlvs(data[BASE_LEN:]))


def encode_reflector(packet: ReflectorPacket, key: bytes | None = None, *, authenticated: bool = False) -> bytes:
    fields = (
        packet.seq,
        packet.timestamp,
        packet.error_estimate.encode(),
        packet.ssid,
        packet.receive_timestamp,
        packet.sender_seq,
        packet.sender_timestamp,
        packet.sender_error_estimate.encode(),
    )
    if authenticated:
        base = REFLECTOR_AUTH.pack(*fields, packet.sender_ttl, bytes(HMAC_LEN))
    else:
        base = REFLECTOR_BASE.pack(*fields, 0, packet.sender_ttl)
    return _finish(base + encode_tlvs(packet.tlvs), key, authenticated)


def decode_reflector(data: bytes | memoryview, *, authenticated: bool = False) -> ReflectorPacket:
    n = len(data)
    if authenticated:
        if n < AUTH_BASE_LEN:
            raise StampDecodeError("short", f"{n} octets, authenticated reflector needs {AUTH_BASE_LEN}")
        seq, ts, err, ssid, rx, sseq, sts, serr, ttl, mac = REFLECTOR_AUTH.unpack_from(data)
        return ReflectorPacket(
            seq,
            ts,
            ErrorEstimate.decode(err),
            ssid,
            rx,
            sseq,
            sts,
            ErrorEstimate.decode(serr),
            ttl,
            decode_tlvs(data[AUTH_BASE_LEN:]),
            bytes(mac),
        )
    if n >= BASE_LEN:
        seq, ts, err, ssid, rx, sseq, sts, serr, _mbz, ttl = REFLECTOR_BASE.unpack_from(data)
        tlvs = decode_tlvs(data[BASE_LEN:])
        truncated = False
    elif n >= TWAMP_REFLECTOR_LEN:
        padded = bytes(data) + bytes(BASE_LEN - n)
        seq, ts, err, ssid, rx, sseq, sts, serr, _mbz, ttl = REFLECTOR_BASE.unpack_from(padded)
        tlvs, truncated = (), True
    else:
        raise StampDecodeError("short", f"{n} octets, a reflector packet needs {TWAMP_REFLECTOR_LEN}")
    return ReflectorPacket(
        seq,
        ts,
        ErrorEstimate.decode(err),
        ssid,
        rx,
        sseq,
        sts,
        ErrorEstimate.decode(serr),
        ttl,
        tlvs,
        None,
        truncated,
    )
