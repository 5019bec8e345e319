"""Unit tests of the STAMP base packets (RFC 8762): layouts, timestamps and the Error Estimate.

Expected values are written out by hand from the RFC layouts (octet offsets from the
start of the UDP payload, big-endian), not computed with the code under test.
"""

from __future__ import annotations

import struct

import pytest

from collector.wire.stamp import (
    AUTH_BASE_LEN,
    NTP_UNIX_OFFSET_S,
    ErrorEstimate,
    ReflectorPacket,
    SenderPacket,
    TimestampFormat,
    base_hmac_ok,
    decode_reflector,
    decode_sender,
    decode_timestamp,
    encode_reflector,
    encode_sender,
    encode_timestamp,
    ns_to_ntp,
    ns_to_ptp,
    ntp_to_ns,
    ptp_to_ns,
)
from collector.wire.stamp_tlv import ExtraPadding, StampDecodeError
from tests.collector.wire.stamp_codec_support import KEY, OTHER_KEY, TS, U

# ---------------------------------------------------------------------------------------
# Base packet layouts: every field at its RFC offset, every MBZ octet zero
# ---------------------------------------------------------------------------------------

SEQ = 0x01020304
RX = 0x2122232425262728
STS = 0x3132333435363738
ERR = ErrorEstimate(True, TimestampFormat.NTP, 0x21, 0x42)  # S=1, Z=0: 0xA142
SERR = ErrorEstimate(False, TimestampFormat.PTP, 0x05, 0x10)  # S=0, Z=1: 0x4510
SSID = 0xBEEF
TTL = 0x3C


def _sender(authenticated: bool) -> bytes:
    return encode_sender(SenderPacket(SEQ, TS, ERR, SSID), KEY if authenticated else None, authenticated=authenticated)


def _reflector(authenticated: bool) -> bytes:
    packet = ReflectorPacket(SEQ, TS, ERR, SSID, RX, 0x0A0B0C0D, STS, SERR, TTL)
    return encode_reflector(packet, KEY if authenticated else None, authenticated=authenticated)


LAYOUTS = {
    "sender-unauthenticated": (
        lambda: _sender(False),
        44,
        {0: SEQ.to_bytes(4, "big"), 4: TS.to_bytes(8, "big"), 12: b"\xa1\x42", 14: b"\xbe\xef"},
    ),
    "sender-authenticated": (
        lambda: _sender(True),
        112,
        {0: SEQ.to_bytes(4, "big"), 16: TS.to_bytes(8, "big"), 24: b"\xa1\x42", 26: b"\xbe\xef"},
    ),
    "reflector-unauthenticated": (
        lambda: _reflector(False),
        44,
        {
            0: SEQ.to_bytes(4, "big"),
            4: TS.to_bytes(8, "big"),
            12: b"\xa1\x42",
            14: b"\xbe\xef",
            16: RX.to_bytes(8, "big"),
            24: b"\x0a\x0b\x0c\x0d",
            28: STS.to_bytes(8, "big"),
            36: b"\x45\x10",
            40: bytes([TTL]),
        },
    ),
    "reflector-authenticated": (
        lambda: _reflector(True),
        112,
        {
            0: SEQ.to_bytes(4, "big"),
            16: TS.to_bytes(8, "big"),
            24: b"\xa1\x42",
            26: b"\xbe\xef",
            32: RX.to_bytes(8, "big"),
            48: b"\x0a\x0b\x0c\x0d",
            64: STS.to_bytes(8, "big"),
            72: b"\x45\x10",
            80: bytes([TTL]),
        },
    ),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_base_packet_has_the_rfc_length(layout):
    build, length, _fields = LAYOUTS[layout]
    assert len(build()) == length


@pytest.mark.parametrize("layout", LAYOUTS)
def test_base_fields_sit_at_their_rfc_offsets(layout):
    build, _length, fields = LAYOUTS[layout]
    packet = build()
    for offset, expected in fields.items():
        assert packet[offset : offset + len(expected)] == expected, f"field at offset {offset}"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_mbz_octet_is_zero(layout):
    build, length, fields = LAYOUTS[layout]
    packet = build()
    used = {o + i for o, value in fields.items() for i in range(len(value))}
    if length == AUTH_BASE_LEN:
        used |= set(range(96, 112))  # HMAC
    assert [i for i in range(length) if i not in used and packet[i] != 0] == []


@pytest.mark.parametrize("layout", ["sender-authenticated", "reflector-authenticated"])
def test_authenticated_hmac_is_truncated_hmac_sha256_of_first_96_octets(layout):
    import hashlib
    import hmac

    packet = LAYOUTS[layout][0]()
    assert packet[96:112] == hmac.new(KEY, packet[:96], hashlib.sha256).digest()[:16]
    assert base_hmac_ok(packet, KEY)
    assert not base_hmac_ok(packet, OTHER_KEY)


def test_authenticated_encode_without_key_is_refused():
    with pytest.raises(ValueError):
        encode_sender(SenderPacket(1, 0), authenticated=True)


@pytest.mark.parametrize("authenticated", [False, True])
def test_sender_decode_reads_back_every_field(authenticated):
    packet = decode_sender(_sender(authenticated), authenticated=authenticated)
    assert (packet.seq, packet.timestamp, packet.error_estimate, packet.ssid) == (SEQ, TS, ERR, SSID)


@pytest.mark.parametrize("authenticated", [False, True])
def test_reflector_decode_reads_back_every_field(authenticated):
    packet = decode_reflector(_reflector(authenticated), authenticated=authenticated)
    assert (packet.seq, packet.timestamp, packet.error_estimate, packet.ssid) == (SEQ, TS, ERR, SSID)
    assert (packet.receive_timestamp, packet.sender_seq, packet.sender_timestamp) == (RX, 0x0A0B0C0D, STS)
    assert (packet.sender_error_estimate, packet.sender_ttl, packet.truncated) == (SERR, TTL, False)


def test_tlvs_start_right_after_the_unauthenticated_base():
    packet = encode_sender(SenderPacket(1, 0, tlvs=(ExtraPadding(2),)))
    assert packet[44:] == bytes([U, 1, 0, 2, 0, 0])


def test_tlvs_start_right_after_the_authenticated_base():
    packet = encode_sender(SenderPacket(1, 0, tlvs=(ExtraPadding(2),)), KEY, authenticated=True)
    assert packet[112:] == bytes([U, 1, 0, 2, 0, 0])


@pytest.mark.parametrize(
    ("decoder", "data", "authenticated"),
    [
        (decode_sender, bytes(13), False),
        (decode_sender, bytes(111), True),
        (decode_reflector, bytes(40), False),
        (decode_reflector, bytes(111), True),
    ],
)
def test_too_short_packets_are_rejected_as_short(decoder, data, authenticated):
    with pytest.raises(StampDecodeError) as caught:
        decoder(data, authenticated=authenticated)
    assert caught.value.kind == "short"


def test_twamp_light_sender_of_14_octets_decodes_without_ssid_or_tlvs():
    data = struct.pack("!IQH", 9, TS, 0x0001)
    assert decode_sender(data) == SenderPacket(9, TS, ErrorEstimate(), 0, ())


# ---------------------------------------------------------------------------------------
# Timestamps
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ns", "raw"),
    [
        (0, 2_208_988_800 << 32),  # Unix epoch = NTP seconds 2208988800
        (500_000_000, (2_208_988_800 << 32) | 0x8000_0000),  # half a second = 2^31 fraction
        (1_250_000_000, ((2_208_988_801) << 32) | 0x4000_0000),
        (2_085_978_496 * 10**9, 0),  # 2036-02-07 06:28:16 UTC: NTP era 1 starts, seconds wrap to 0
        (1, (2_208_988_800 << 32) | 4),  # the fraction is truncated: 1 ns is 4.29 units of 2^-32 s
        (-1, (2_208_988_799 << 32) | 0xFFFF_FFFB),  # before 1970: the second before, nearly whole
        (-2_208_988_801 * 10**9, 0xFFFF_FFFF << 32),  # before 1900 the seconds wrap back too
    ],
)
def test_ntp_known_values(ns, raw):
    assert NTP_UNIX_OFFSET_S == 2_208_988_800
    assert ns_to_ntp(ns) == raw


@pytest.mark.parametrize(
    ("ns", "raw"),
    [
        (0, 0),
        (1_500_000_000, (1 << 32) | 500_000_000),
        (1_700_000_000_123_456_789, (1_700_000_000 << 32) | 123_456_789),
    ],
)
def test_ptp_known_values(ns, raw):
    assert ns_to_ptp(ns) == raw
    assert ptp_to_ns(raw) == ns


@pytest.mark.parametrize("ns", [0, 1, 999_999_999, 1_700_000_000_123_456_789, 2_000_000_000_999_999_999])
def test_ntp_round_trip_is_exact_to_the_nanosecond(ns):
    assert ntp_to_ns(ns_to_ntp(ns)) == ns


@pytest.mark.parametrize("fmt", list(TimestampFormat))
def test_encode_decode_timestamp_dispatch_on_format(fmt):
    ns = 1_700_000_000_000_000_001
    raw = encode_timestamp(ns, fmt)
    assert raw == (ns_to_ptp(ns) if fmt is TimestampFormat.PTP else ns_to_ntp(ns))
    assert decode_timestamp(raw, fmt) == ns


# ---------------------------------------------------------------------------------------
# Error Estimate
# ---------------------------------------------------------------------------------------

ERROR_ESTIMATES = [
    (ErrorEstimate(False, TimestampFormat.NTP, 0, 1), 0x0001),
    (ErrorEstimate(True, TimestampFormat.NTP, 1, 2), 0x8102),
    (ErrorEstimate(False, TimestampFormat.PTP, 5, 0x10), 0x4510),
    (ErrorEstimate(True, TimestampFormat.PTP, 63, 255), 0xFFFF),
]


@pytest.mark.parametrize(("estimate", "raw"), ERROR_ESTIMATES)
def test_error_estimate_bit_layout_s_z_scale_multiplier(estimate, raw):
    assert estimate.encode() == raw
    assert ErrorEstimate.decode(raw) == estimate


def test_error_estimate_value_is_multiplier_times_two_to_scale_minus_32():
    estimate = ErrorEstimate(scale=32, multiplier=3)
    assert estimate.seconds == 3.0
    assert estimate.nanoseconds == 3_000_000_000
    assert ErrorEstimate(scale=0, multiplier=1).seconds == 2.0**-32


def test_error_estimate_with_zero_multiplier_is_rejected_on_decode():
    with pytest.raises(StampDecodeError) as caught:
        ErrorEstimate.decode(0x8100)
    assert caught.value.kind == "error-estimate"


@pytest.mark.parametrize("kwargs", [{"multiplier": 0}, {"multiplier": 256}, {"scale": 64}, {"scale": -1}])
def test_error_estimate_out_of_range_fields_are_refused(kwargs):
    with pytest.raises(ValueError):
        ErrorEstimate(**kwargs)


@pytest.mark.parametrize(
    ("seconds", "scale", "multiplier"),
    [
        (0.0, 0, 1),  # never zero on the wire
        (2.0**-32, 0, 1),
        (255 * 2.0**-32, 0, 255),
        (256 * 2.0**-32, 1, 128),
        (257 * 2.0**-32, 1, 129),  # 128.5 units of 2^-31 round up to 129
        (1.0, 25, 128),
        (1e-9, 0, 5),  # 4.29 units of 2^-32 round up to 5
    ],
)
def test_error_estimate_from_seconds_rounds_up_to_representable(seconds, scale, multiplier):
    estimate = ErrorEstimate.from_seconds(seconds, synchronized=True)
    assert (estimate.scale, estimate.multiplier) == (scale, multiplier)
    assert estimate.seconds >= seconds
    assert estimate.synchronized


def test_error_estimate_from_seconds_keeps_format():
    estimate = ErrorEstimate.from_seconds(1e-3, synchronized=False, timestamp_format=TimestampFormat.PTP)
    assert estimate.timestamp_format is TimestampFormat.PTP
    assert not estimate.synchronized


def test_error_estimate_from_seconds_saturates_at_largest_value():
    estimate = ErrorEstimate.from_seconds(1e30, synchronized=False)
    assert (estimate.scale, estimate.multiplier) == (63, 255)
