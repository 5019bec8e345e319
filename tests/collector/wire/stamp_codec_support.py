"""Shared pieces of the STAMP codec tests: keys, times, a sender packet builder, the reflector's
answer to a request, and a TLV read back at an offset."""

from __future__ import annotations

import struct

from collector.wire.stamp import ErrorEstimate, SenderPacket, TimestampFormat, encode_sender, encode_timestamp
from collector.wire.stamp_reflect import ReceivedContext, ReflectorPolicy, SessionCounters, TlvStats
from tests.stamp_support import reflect_request

U, M, I = 0x80, 0x40, 0x20  # noqa: E741  # the TLV flags by their RFC 8972 letters: Unrecognized, Malformed, Integrity failed
KEY = b"k" * 32
OTHER_KEY = b"x" * 32
RX_NS = 1_700_000_000_250_000_000
TX_NS = 1_700_000_000_750_000_000
T1_NS = 1_699_999_999_500_000_000
REFLECTOR_ERR = ErrorEstimate(True, TimestampFormat.NTP, 4, 7).encode()  # 0x8407
TS = 0x1112131415161718  # an arbitrary raw timestamp, every octet distinct


def sender_bytes(
    seq: int = 1,
    *,
    tlvs: tuple = (),
    fmt: TimestampFormat = TimestampFormat.NTP,
    ssid: int = 0x1234,
    key: bytes | None = None,
    authenticated: bool = False,
    err: ErrorEstimate | None = None,
) -> bytes:
    err = err or ErrorEstimate(False, fmt, 2, 3)
    packet = SenderPacket(seq, encode_timestamp(T1_NS, fmt), err, ssid, tlvs)
    return encode_sender(packet, key, authenticated=authenticated)


def reflect(
    request: bytes,
    *,
    hop_limit: int = 61,
    error_estimate: int = REFLECTOR_ERR,
    session: SessionCounters | None = None,
    authenticated: bool = False,
    key: bytes | None = None,
    context: ReceivedContext | None = None,
    policy: ReflectorPolicy = ReflectorPolicy(),
    stats: TlvStats | None = None,
    rx_ns: int = RX_NS,
    tx_ns: int = TX_NS,
) -> tuple[bytes, int]:
    """The reply to `request` and the DSCP the reflector returned for it."""
    return reflect_request(
        request,
        receive_ns=rx_ns,
        transmit_ns=tx_ns,
        error_estimate=error_estimate,
        hop_limit=hop_limit,
        session=session,
        authenticated=authenticated,
        key=key,
        context=context,
        policy=policy,
        stats=stats,
    )


def tlv_at(packet: bytes, offset: int) -> tuple[int, int, int, bytes]:
    flags, tlv_type, length = struct.unpack_from("!BBH", packet, offset)
    return flags, tlv_type, length, packet[offset + 4 : offset + 4 + length]
