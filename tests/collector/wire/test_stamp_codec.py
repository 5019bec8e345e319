"""Unit tests of the STAMP codec (RFC 8762 base packets, RFC 8972 TLVs, the reflector hot path).

Expected values are written out by hand from the RFC layouts (octet offsets from the
start of the UDP payload, big-endian), not computed with the code under test.
"""

from __future__ import annotations

import struct

import pytest

from collector.wire.stamp import (
    AUTH_BASE_LEN,
    BASE_LEN,
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
from collector.wire.stamp_reflect import (
    NO_DSCP_REQUEST,
    ReceivedContext,
    ReflectorPolicy,
    SessionCounters,
    TlvStats,
    reflect_in_place,
    stamp_transmit_time,
)
from collector.wire.stamp_tlv import (
    AccessReport,
    ClassOfService,
    DirectMeasurement,
    ExtraPadding,
    FollowUpTelemetry,
    HmacTlv,
    Location,
    LocationSubTlv,
    LocationSubTlvType,
    StampDecodeError,
    SyncSource,
    TimestampInformation,
    TimestampMethod,
    TlvFlag,
    UnknownTlv,
    compute_hmac,
    decode_tlvs,
    encode_tlv,
    encode_tlvs,
    hmac_tlv_ok,
)
from tests.stamp_support import reflect_request

U, M, I = 0x80, 0x40, 0x20  # noqa: E741 - the TLV flags' names in RFC 8972
KEY = b"k" * 32
OTHER_KEY = b"x" * 32
RX_NS = 1_700_000_000_250_000_000
TX_NS = 1_700_000_000_750_000_000
T1_NS = 1_699_999_999_500_000_000
REFLECTOR_ERR = ErrorEstimate(True, TimestampFormat.NTP, 4, 7).encode()  # 0x8407


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
        request, receive_ns=rx_ns, transmit_ns=tx_ns, error_estimate=error_estimate, hop_limit=hop_limit,
        session=session, authenticated=authenticated, key=key, context=context, policy=policy, stats=stats,
    )


def tlv_at(packet: bytes, offset: int) -> tuple[int, int, int, bytes]:
    flags, tlv_type, length = struct.unpack_from("!BBH", packet, offset)
    return flags, tlv_type, length, packet[offset + 4 : offset + 4 + length]


# ---------------------------------------------------------------------------------------
# Base packet layouts: every field at its RFC offset, every MBZ octet zero
# ---------------------------------------------------------------------------------------

SEQ = 0x01020304
TS = 0x1112131415161718
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
        lambda: _sender(False), 44,
        {0: SEQ.to_bytes(4, "big"), 4: TS.to_bytes(8, "big"), 12: b"\xa1\x42", 14: b"\xbe\xef"},
    ),
    "sender-authenticated": (
        lambda: _sender(True), 112,
        {0: SEQ.to_bytes(4, "big"), 16: TS.to_bytes(8, "big"), 24: b"\xa1\x42", 26: b"\xbe\xef"},
    ),
    "reflector-unauthenticated": (
        lambda: _reflector(False), 44,
        {
            0: SEQ.to_bytes(4, "big"), 4: TS.to_bytes(8, "big"), 12: b"\xa1\x42", 14: b"\xbe\xef",
            16: RX.to_bytes(8, "big"), 24: b"\x0a\x0b\x0c\x0d", 28: STS.to_bytes(8, "big"),
            36: b"\x45\x10", 40: bytes([TTL]),
        },
    ),
    "reflector-authenticated": (
        lambda: _reflector(True), 112,
        {
            0: SEQ.to_bytes(4, "big"), 16: TS.to_bytes(8, "big"), 24: b"\xa1\x42", 26: b"\xbe\xef",
            32: RX.to_bytes(8, "big"), 48: b"\x0a\x0b\x0c\x0d", 64: STS.to_bytes(8, "big"),
            72: b"\x45\x10", 80: bytes([TTL]),
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
    ],
)
def test_ntp_known_values(ns, raw):
    assert NTP_UNIX_OFFSET_S == 2_208_988_800
    assert ns_to_ntp(ns) == raw


@pytest.mark.parametrize(
    ("ns", "raw"),
    [(0, 0), (1_500_000_000, (1 << 32) | 500_000_000), (1_700_000_000_123_456_789, (1_700_000_000 << 32) | 123_456_789)],
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


# ---------------------------------------------------------------------------------------
# TLV value layouts (RFC 8972 section 4)
# ---------------------------------------------------------------------------------------

TLV_BYTES = [
    pytest.param(ExtraPadding(5), bytes([U, 1, 0, 5]) + bytes(5), id="extra-padding"),
    pytest.param(
        TimestampInformation(SyncSource.NTP, TimestampMethod.SOFTWARE_LOCAL, SyncSource.PTP, TimestampMethod.HARDWARE),
        bytes([U, 3, 0, 4, 1, 2, 2, 1]),
        id="timestamp-information",
    ),
    # DSCP1=46 (101110) DSCP2=10 (001010) ECN=3 RP=1: 101110 00|1010 11 01|0...
    pytest.param(ClassOfService(46, 10, 3, 1), bytes([U, 4, 0, 4, 0xB8, 0xAD, 0, 0]), id="cos"),
    pytest.param(ClassOfService(0, 0x3F, 0, 0), bytes([U, 4, 0, 4, 0x03, 0xF0, 0, 0]), id="cos-dscp2-straddles"),
    pytest.param(ClassOfService(0x3F, 0, 0, 0), bytes([U, 4, 0, 4, 0xFC, 0x00, 0, 0]), id="cos-dscp1"),
    pytest.param(ClassOfService(0, 0, 2, 0), bytes([U, 4, 0, 4, 0x00, 0x08, 0, 0]), id="cos-ecn"),
    pytest.param(ClassOfService(0, 0, 0, 1), bytes([U, 4, 0, 4, 0x00, 0x01, 0, 0]), id="cos-rp"),
    pytest.param(
        DirectMeasurement(1, 0x02030405, 0xFFFFFFFF),
        bytes([U, 5, 0, 12, 0, 0, 0, 1, 2, 3, 4, 5, 0xFF, 0xFF, 0xFF, 0xFF]),
        id="direct-measurement",
    ),
    pytest.param(AccessReport(1, 2), bytes([U, 6, 0, 4, 0x10, 2, 0, 0]), id="access-report"),
    pytest.param(
        FollowUpTelemetry(0x01020304, TS, TimestampMethod.SOFTWARE_LOCAL),
        bytes([U, 7, 0, 16, 1, 2, 3, 4]) + TS.to_bytes(8, "big") + bytes([2, 0, 0, 0]),
        id="follow-up-telemetry",
    ),
    pytest.param(HmacTlv(bytes(range(16))), bytes([U, 8, 0, 16]) + bytes(range(16)), id="hmac"),
    pytest.param(
        Location(862, 50000, (LocationSubTlv(LocationSubTlvType.SOURCE_IP_REQUEST, bytes(16)),)),
        bytes([U, 2, 0, 24, 0x03, 0x5E, 0xC3, 0x50, 0, 7, 0, 16]) + bytes(16),
        id="location-ports-then-sub-tlv",
    ),
    pytest.param(UnknownTlv(200, b"\x01\x02\x03"), bytes([U, 200, 0, 3, 1, 2, 3]), id="unknown"),
]


@pytest.mark.parametrize(("tlv", "expected"), TLV_BYTES)
def test_tlv_encodes_to_rfc_layout(tlv, expected):
    assert encode_tlv(tlv) == expected


@pytest.mark.parametrize(("tlv", "expected"), TLV_BYTES)
def test_tlv_decodes_from_rfc_layout(tlv, expected):
    assert decode_tlvs(expected) == (tlv,)


def test_sender_sets_u_and_nothing_else_on_every_tlv_by_default():
    tlvs = (ExtraPadding(1), Location(), TimestampInformation(), ClassOfService(), DirectMeasurement(),
            AccessReport(), FollowUpTelemetry(), HmacTlv())
    assert {encode_tlv(t)[0] for t in tlvs} == {U}


def test_location_request_zero_fills_each_sub_tlv_at_its_length():
    request = Location.request(
        LocationSubTlvType.SOURCE_MAC_REQUEST,
        LocationSubTlvType.DESTINATION_IP_REQUEST,
        LocationSubTlvType.SOURCE_IP_REQUEST,
    )
    value = request.value()
    assert value == (
        bytes(4) + bytes([0, 1, 0, 8]) + bytes(8) + bytes([0, 4, 0, 16]) + bytes(16) + bytes([0, 7, 0, 16]) + bytes(16)
    )


def test_tlv_flag_bits_are_u_m_i_from_the_top():
    assert (TlvFlag.UNRECOGNIZED, TlvFlag.MALFORMED, TlvFlag.INTEGRITY) == (0x80, 0x40, 0x20)


def test_tlv_list_keeps_order():
    tlvs = (ClassOfService(46), ExtraPadding(3), DirectMeasurement(7))
    assert decode_tlvs(encode_tlvs(tlvs)) == tlvs


def test_tlv_that_overruns_the_packet_is_rejected():
    with pytest.raises(StampDecodeError) as caught:
        decode_tlvs(bytes([U, 1, 0, 9, 0, 0]))
    assert caught.value.kind == "tlv-truncated"


def test_trailing_octets_too_short_for_a_tlv_header_are_rejected():
    with pytest.raises(StampDecodeError) as caught:
        decode_tlvs(encode_tlv(ExtraPadding(1)) + b"\x80\x01")
    assert caught.value.kind == "tlv-truncated"


@pytest.mark.parametrize(("tlv_type", "length"), [(4, 5), (5, 8), (7, 12), (8, 15), (3, 3), (2, 2)])
def test_known_tlv_with_wrong_length_is_malformed(tlv_type, length):
    with pytest.raises(StampDecodeError) as caught:
        decode_tlvs(bytes([U, tlv_type, 0, length]) + bytes(length))
    assert caught.value.kind == "tlv-malformed"


def test_tlv_area_starting_with_type_zero_is_padding_without_tlvs():
    assert decode_tlvs(bytes(20)) == ()
    assert decode_sender(sender_bytes(1) + bytes(20)).tlvs == ()


def test_m_flagged_tlv_swallows_the_rest_uninterpreted():
    area = bytes([M, 4, 0, 5, 1, 2, 3, 4, 5]) + encode_tlv(ExtraPadding(1))
    (only,) = decode_tlvs(area)
    assert isinstance(only, UnknownTlv)
    assert (only.flags, only.type, only.raw_value) == (M, 4, area[4:])


# ---------------------------------------------------------------------------------------
# reflect_in_place: base fields
# ---------------------------------------------------------------------------------------


def test_stateless_reply_reuses_the_sender_sequence_number():
    reply = decode_reflector(reflect(sender_bytes(1234))[0])
    assert (reply.seq, reply.sender_seq) == (1234, 1234)


def test_stateful_reply_numbers_come_from_the_session():
    session = SessionCounters()
    seqs = [decode_reflector(reflect(sender_bytes(s), session=session)[0]).seq for s in (500, 501, 777)]
    assert seqs == [0, 1, 2]
    assert (session.next_seq, session.received, session.transmitted) == (3, 3, 3)


def test_stateful_counter_advances_only_when_the_reply_is_stamped():
    session = SessionCounters()
    buf = bytearray(sender_bytes(9))
    reflect_in_place(buf, len(buf), receive_ns=RX_NS, error_estimate=REFLECTOR_ERR, hop_limit=64, session=session)
    assert (session.next_seq, session.received, session.transmitted) == (0, 1, 0)
    stamp_transmit_time(buf, len(buf), TX_NS, session=session)
    assert (session.next_seq, session.transmitted) == (1, 1)


def test_stateful_session_sequence_wraps_at_32_bits():
    session = SessionCounters(next_seq=0xFFFFFFFF)
    first = decode_reflector(reflect(sender_bytes(1), session=session)[0])
    second = decode_reflector(reflect(sender_bytes(2), session=session)[0])
    assert (first.seq, second.seq) == (0xFFFFFFFF, 0)


def test_reply_copies_sender_fields_and_fills_reflector_fields():
    request = sender_bytes(42, ssid=0xABCD)
    reply = decode_reflector(reflect(request, hop_limit=57)[0])
    assert reply.sender_seq == 42
    assert reply.sender_timestamp == ns_to_ntp(T1_NS)
    assert reply.sender_error_estimate == ErrorEstimate(False, TimestampFormat.NTP, 2, 3)
    assert reply.ssid == 0xABCD
    assert reply.sender_ttl == 57
    assert reply.receive_timestamp == ns_to_ntp(RX_NS)
    assert reply.timestamp == ns_to_ntp(TX_NS)
    assert reply.error_estimate.encode() == REFLECTOR_ERR


def test_reply_mbz_octets_are_zero_even_if_request_had_garbage_there():
    request = bytearray(sender_bytes(1))
    request[16:44] = b"\xff" * 28
    reply, _ = reflect(bytes(request))
    assert reply[38:40] == b"\0\0" and reply[41:44] == b"\0\0\0"


def test_ptp_request_gets_ptp_reply_timestamps():
    request = sender_bytes(5, fmt=TimestampFormat.PTP)
    reply = decode_reflector(reflect(request)[0])
    assert reply.error_estimate.timestamp_format is TimestampFormat.PTP
    assert reply.receive_timestamp == ns_to_ptp(RX_NS)
    assert reply.timestamp == ns_to_ptp(TX_NS)
    assert reply.sender_timestamp == ns_to_ptp(T1_NS)
    assert reply.sender_error_estimate.timestamp_format is TimestampFormat.PTP


def test_ntp_request_gets_ntp_reply_even_if_reflector_is_configured_for_ptp():
    ptp_err = ErrorEstimate(True, TimestampFormat.PTP, 4, 7).encode()
    reply = decode_reflector(reflect(sender_bytes(5), error_estimate=ptp_err)[0])
    assert reply.error_estimate == ErrorEstimate(True, TimestampFormat.NTP, 4, 7)
    assert reply.receive_timestamp == ns_to_ntp(RX_NS)


def test_request_with_zero_multiplier_gets_no_reply():
    request = bytearray(sender_bytes(1))
    request[12:14] = b"\x01\x00"
    with pytest.raises(StampDecodeError) as caught:
        reflect(bytes(request))
    assert caught.value.kind == "error-estimate"


def test_thirteen_octet_request_is_short():
    with pytest.raises(StampDecodeError) as caught:
        reflect(sender_bytes(1)[:13])
    assert caught.value.kind == "short"


def test_short_twamp_light_request_gets_a_reply_of_the_same_length():
    request = sender_bytes(77)[:41]
    reply, _ = reflect(request, hop_limit=250)
    assert len(reply) == 41
    decoded = decode_reflector(reply)
    assert decoded.truncated
    assert (decoded.seq, decoded.sender_seq, decoded.sender_ttl) == (77, 77, 250)
    assert decoded.sender_timestamp == ns_to_ntp(T1_NS)
    assert decoded.receive_timestamp == ns_to_ntp(RX_NS)
    assert decoded.timestamp == ns_to_ntp(TX_NS)


@pytest.mark.parametrize("length", [14, 20, 30, 40])
def test_shorter_twamp_light_requests_never_get_a_larger_reply(length):
    reply, _ = reflect(sender_bytes(3)[:length])
    assert len(reply) == length
    assert reply[:4] == (3).to_bytes(4, "big")
    assert reply[4:12] == ns_to_ntp(TX_NS).to_bytes(8, "big")


def test_zero_padding_after_the_base_is_echoed_unchanged():
    request = sender_bytes(1) + bytes(64)
    reply, dscp = reflect(request)
    assert len(reply) == len(request)
    assert reply[44:] == bytes(64)
    assert dscp == NO_DSCP_REQUEST


def test_padding_that_starts_with_type_zero_is_echoed_even_when_not_all_zero():
    padding = bytes([0xAA, 0x00, 0x12, 0x34]) + bytes(range(1, 30))
    reply, _ = reflect(sender_bytes(1) + padding)
    assert reply[44:] == padding


@pytest.mark.parametrize("stray", [1, 2, 3])
def test_stray_octets_after_the_base_are_echoed_unchanged(stray):
    trailer = b"\x80\x04\x00"[:stray]
    reply, _ = reflect(sender_bytes(1) + trailer)
    assert reply[44:] == trailer


# ---------------------------------------------------------------------------------------
# reflect_in_place: TLVs
# ---------------------------------------------------------------------------------------


def test_class_of_service_reports_received_dscp_and_ecn():
    context = ReceivedContext(dscp=10, ecn=2)
    reply, dscp = reflect(sender_bytes(1, tlvs=(ClassOfService(46),)), context=context)
    assert tlv_at(reply, 44) == (0, 4, 4, bytes([46 << 2, (10 << 4) | (2 << 2), 0, 0]))
    assert dscp == 46


def test_class_of_service_not_permitted_sets_rp_and_answers_in_received_class():
    context = ReceivedContext(dscp=10, ecn=1)
    stats = TlvStats()
    policy = ReflectorPolicy(permitted_dscp=frozenset({0, 10}))
    reply, dscp = reflect(sender_bytes(1, tlvs=(ClassOfService(46),)), context=context, policy=policy, stats=stats)
    cos = decode_reflector(reply).tlvs[0]
    assert (cos.dscp1, cos.dscp2, cos.ecn, cos.rp) == (46, 10, 1, 1)
    assert dscp == 10
    assert stats.dscp_refused == 1


def test_class_of_service_permitted_keeps_rp_zero():
    policy = ReflectorPolicy(permitted_dscp=frozenset({46}))
    reply, dscp = reflect(sender_bytes(1, tlvs=(ClassOfService(46),)), context=ReceivedContext(dscp=0), policy=policy)
    assert decode_reflector(reply).tlvs[0].rp == 0
    assert dscp == 46


def test_unknown_tlv_gets_u_and_is_echoed_and_later_tlvs_are_still_answered():
    stats = TlvStats()
    request = sender_bytes(1, tlvs=(UnknownTlv(200, b"\x01\x02\x03\x04", flags=0), ClassOfService(46)))
    reply, _ = reflect(request, context=ReceivedContext(dscp=8), stats=stats)
    assert tlv_at(reply, 44) == (U, 200, 4, b"\x01\x02\x03\x04")
    flags, tlv_type, _, value = tlv_at(reply, 52)
    assert (flags, tlv_type, value[1] >> 4) == (0, 4, 8)
    assert stats.unrecognized == 1


def test_understood_tlvs_have_u_cleared():
    request = sender_bytes(1, tlvs=(ExtraPadding(4), AccessReport(1, 1), TimestampInformation()))
    reply = decode_reflector(reflect(request)[0])
    assert [t.flags for t in reply.tlvs] == [0, 0, 0]


def test_malformed_length_gets_m_and_the_rest_is_byte_identical():
    stats = TlvStats()
    bad = bytes([U, 4, 0, 5, 0xB8, 0, 0, 0, 0])  # CoS must be 4 octets
    rest = encode_tlvs((DirectMeasurement(5), UnknownTlv(201, b"zz")))
    request = sender_bytes(1) + bad + rest
    reply, dscp = reflect(request, stats=stats)
    assert reply[44] == M
    assert reply[45:] == request[45:]
    assert dscp == NO_DSCP_REQUEST
    assert stats.malformed == 1


def test_tlv_overrunning_the_packet_gets_m_and_the_rest_is_byte_identical():
    good = encode_tlv(ExtraPadding(2))
    overrun = bytes([U, 1, 0, 40, 9, 9, 9])
    request = sender_bytes(1) + good + overrun
    reply, _ = reflect(request)
    assert reply[44] == 0  # the padding before it was understood
    assert reply[50] == M
    assert reply[51:] == request[51:]
    assert len(reply) == len(request)


def test_timestamp_information_reports_reflector_policy():
    policy = ReflectorPolicy(sync_source=SyncSource.NTP, timestamp_method=TimestampMethod.SOFTWARE_LOCAL)
    reply, _ = reflect(sender_bytes(1, tlvs=(TimestampInformation(),)), policy=policy)
    assert tlv_at(reply, 44) == (0, 3, 4, bytes([1, 2, 1, 2]))


def test_direct_measurement_keeps_sender_count_and_fills_session_counts():
    session = SessionCounters()
    for sent in (1, 2, 3):
        reply, _ = reflect(sender_bytes(sent, tlvs=(DirectMeasurement(sent),)), session=session)
    dm = decode_reflector(reply).tlvs[0]
    assert (dm.flags, dm.sender_tx, dm.reflector_rx, dm.reflector_tx) == (0, 3, 3, 3)


def test_follow_up_reports_previous_reply_of_the_session():
    session = SessionCounters()
    first = decode_reflector(reflect(sender_bytes(1, tlvs=(FollowUpTelemetry(),)), session=session, tx_ns=TX_NS)[0])
    second = decode_reflector(reflect(sender_bytes(2, tlvs=(FollowUpTelemetry(),)), session=session)[0])
    assert (first.tlvs[0].sequence_number, first.tlvs[0].timestamp) == (0, 0)
    follow_up = second.tlvs[0]
    assert (follow_up.sequence_number, follow_up.timestamp) == (first.seq, first.timestamp)
    assert follow_up.timestamp_mode == TimestampMethod.SOFTWARE_LOCAL


def test_stateless_follow_up_is_zero():
    request = sender_bytes(1, tlvs=(FollowUpTelemetry(5, 6, 0),))
    follow_up = decode_reflector(reflect(request)[0]).tlvs[0]
    assert (follow_up.sequence_number, follow_up.timestamp) == (0, 0)


IPV6_SRC = bytes.fromhex("20010db8000000000000000000000001")
IPV6_DST = bytes.fromhex("20010db8000000000000000000000002")


def test_location_fills_ports_and_answers_ipv6_requests_by_rewriting_types():
    context = ReceivedContext(IPV6_SRC, 50000, IPV6_DST, 862)
    request = sender_bytes(1, tlvs=(Location.request(
        LocationSubTlvType.SOURCE_MAC_REQUEST,
        LocationSubTlvType.DESTINATION_IP_REQUEST,
        LocationSubTlvType.SOURCE_IP_REQUEST,
    ),))
    reply, _ = reflect(request, context=context)
    assert len(reply) == len(request)
    flags, tlv_type, length, value = tlv_at(reply, 44)
    assert (flags, tlv_type, length) == (0, 2, 4 + 12 + 20 + 20)
    assert value[:4] == bytes([0x03, 0x5E, 0xC3, 0x50])  # destination port 862, source port 50000
    assert value[4:16] == bytes([0, 3, 0, 8]) + bytes(8)  # MAC unknown on a UDP socket: EUI-64 zero
    assert value[16:36] == bytes([0, 6, 0, 16]) + IPV6_DST
    assert value[36:56] == bytes([0, 9, 0, 16]) + IPV6_SRC


def test_location_answers_ipv4_requests_with_address_then_mbz():
    context = ReceivedContext(bytes([192, 0, 2, 1]), 40000, bytes([192, 0, 2, 2]), 862)
    request = sender_bytes(1, tlvs=(Location.request(
        LocationSubTlvType.DESTINATION_IP_REQUEST, LocationSubTlvType.SOURCE_IP_REQUEST
    ),))
    location = decode_reflector(reflect(request, context=context)[0]).tlvs[0]
    assert (location.destination_port, location.source_port) == (862, 40000)
    assert [(s.sub_type, s.address) for s in location.sub_tlvs] == [
        (5, bytes([192, 0, 2, 2]) + bytes(12)),
        (8, bytes([192, 0, 2, 1]) + bytes(12)),
    ]


def test_location_with_malformed_sub_tlv_gets_m():
    value = bytes(4) + bytes([0, 7, 0, 8]) + bytes(8)  # source IP request must be 16 octets
    request = sender_bytes(1) + bytes([U, 2, 0, len(value)]) + value
    reply, _ = reflect(request, context=ReceivedContext(IPV6_SRC, 1, IPV6_DST, 862))
    assert reply[44] & M
    assert reply[48 + 4 :] == request[48 + 4 :]  # the sub-TLVs are not answered


def test_location_with_malformed_sub_tlv_is_echoed_as_received_apart_from_m():
    # The first sub-TLV is a valid request, the second is malformed: the reflector stops at
    # the TLV and copies it as received, without half-answered ports or sub-TLVs.
    value = bytes(4) + bytes([0, 7, 0, 16]) + bytes(16) + bytes([0, 4, 0, 8]) + bytes(8)
    request = sender_bytes(1) + bytes([U, 2, 0, len(value)]) + value
    reply, _ = reflect(request, context=ReceivedContext(IPV6_SRC, 50000, IPV6_DST, 862))
    assert reply[44] == M
    assert reply[45:] == request[45:]


def test_hmac_tlv_that_verifies_is_answered_and_resealed():
    request = sender_bytes(1, tlvs=(ClassOfService(46), HmacTlv()), key=KEY)
    assert hmac_tlv_ok(request, KEY, BASE_LEN)
    reply, dscp = reflect(request, key=KEY, context=ReceivedContext(dscp=4))
    assert [reply[44], reply[52]] == [0, 0]
    assert dscp == 46
    assert hmac_tlv_ok(reply, KEY, BASE_LEN)


def test_hmac_tlv_covers_base_sequence_number_and_preceding_tlvs():
    request = sender_bytes(0xA0B0C0D0, tlvs=(ClassOfService(46), HmacTlv()), key=KEY)
    covered = request[0:4] + request[44:52]
    assert request[56:72] == compute_hmac(KEY, covered)


def test_hmac_tlv_failure_sets_i_on_all_tlvs_and_answers_none():
    stats = TlvStats()
    request = sender_bytes(1, tlvs=(ClassOfService(46), ExtraPadding(4), HmacTlv()), key=OTHER_KEY)
    reply, dscp = reflect(request, key=KEY, context=ReceivedContext(dscp=4), stats=stats)
    assert [reply[44], reply[52], reply[60]] == [U | I, U | I, U | I]
    assert reply[48:52] == request[48:52]  # CoS not answered
    assert dscp == NO_DSCP_REQUEST
    assert stats.integrity_failed == 1


def test_hmac_tlv_not_last_is_an_integrity_failure():
    request = sender_bytes(1, tlvs=(HmacTlv(), ClassOfService(46)), key=KEY)
    reply, _ = reflect(request, key=KEY)
    assert reply[44] & I and reply[64] & I


@pytest.mark.parametrize("length", [0, 4, 8])
def test_hmac_tlv_with_wrong_length_keeps_the_reply_length(length):
    request = sender_bytes(1) + bytes([U, 8, 0, length]) + bytes(length)
    reply, _ = reflect(request, key=KEY)
    assert len(reply) == len(request)
    assert reply[44] & I


def test_hmac_tlv_with_wrong_length_writes_nothing_past_the_datagram():
    request = sender_bytes(1) + bytes([U, 8, 0, 0])
    buf = bytearray(request + bytes(16))  # the receive buffer is larger than the datagram
    reflect_in_place(buf, len(request), receive_ns=RX_NS, error_estimate=REFLECTOR_ERR, hop_limit=64, key=KEY)
    stamp_transmit_time(buf, len(request), TX_NS, key=KEY)
    assert len(buf) == len(request) + 16
    assert buf[len(request) :] == bytes(16)


def test_short_hmac_tlv_does_not_overwrite_the_tlv_after_it():
    follow = encode_tlv(UnknownTlv(200, bytes(range(12)), flags=0))
    request = sender_bytes(1) + bytes([U, 8, 0, 4]) + bytes(4) + follow
    reply, _ = reflect(request, key=KEY)
    assert reply[52 + 1 :] == request[52 + 1 :]  # only the I flag of the next TLV changes


def test_hmac_tlv_without_a_key_is_unrecognized():
    request = sender_bytes(1, tlvs=(HmacTlv(),), key=KEY)
    reply, _ = reflect(request)
    assert reply[44] == U


def test_authenticated_request_with_bad_base_hmac_raises_auth():
    request = bytearray(sender_bytes(1, key=KEY, authenticated=True))
    request[0] ^= 0x01
    with pytest.raises(StampDecodeError) as caught:
        reflect(bytes(request), key=KEY, authenticated=True)
    assert caught.value.kind == "auth"


def test_authenticated_request_with_wrong_key_raises_auth():
    request = sender_bytes(1, key=OTHER_KEY, authenticated=True)
    with pytest.raises(StampDecodeError) as caught:
        reflect(request, key=KEY, authenticated=True)
    assert caught.value.kind == "auth"


def test_authenticated_request_shorter_than_112_is_short():
    with pytest.raises(StampDecodeError) as caught:
        reflect(sender_bytes(1, key=KEY, authenticated=True)[:111], key=KEY, authenticated=True)
    assert caught.value.kind == "short"


def test_authenticated_reply_is_sealed_and_carries_the_request_fields():
    request = sender_bytes(99, key=KEY, authenticated=True, ssid=7)
    reply, _ = reflect(request, key=KEY, authenticated=True, hop_limit=200)
    assert len(reply) == AUTH_BASE_LEN
    assert base_hmac_ok(reply, KEY)
    decoded = decode_reflector(reply, authenticated=True)
    assert (decoded.seq, decoded.sender_seq, decoded.ssid, decoded.sender_ttl) == (99, 99, 7, 200)
    assert (decoded.receive_timestamp, decoded.timestamp) == (ns_to_ntp(RX_NS), ns_to_ntp(TX_NS))
    assert decoded.sender_timestamp == ns_to_ntp(T1_NS)


def test_authenticated_tlvs_without_hmac_tlv_fail_integrity():
    request = sender_bytes(1, tlvs=(ClassOfService(46),), key=KEY, authenticated=True)
    reply, _ = reflect(request, key=KEY, authenticated=True)
    assert reply[112] & I


def test_authenticated_extra_padding_alone_needs_no_hmac_tlv():
    request = sender_bytes(1, tlvs=(ExtraPadding(8),), key=KEY, authenticated=True)
    reply, _ = reflect(request, key=KEY, authenticated=True)
    assert reply[112] == 0


def test_authenticated_tlvs_with_hmac_tlv_are_answered_and_reply_verifies():
    request = sender_bytes(1, tlvs=(ClassOfService(46), HmacTlv()), key=KEY, authenticated=True)
    reply, _ = reflect(request, key=KEY, authenticated=True, context=ReceivedContext(dscp=12))
    assert [reply[112], reply[120]] == [0, 0]
    assert base_hmac_ok(reply, KEY)
    assert hmac_tlv_ok(reply, KEY, AUTH_BASE_LEN)
    assert decode_reflector(reply, authenticated=True).tlvs[0].dscp2 == 12


def test_reply_length_always_equals_request_length_with_tlvs():
    request = sender_bytes(1, tlvs=(ExtraPadding(100), ClassOfService(1), Location.request(LocationSubTlvType.SOURCE_IP_REQUEST)))
    reply, _ = reflect(request)
    assert len(reply) == len(request)


def test_reflection_leaves_octets_beyond_length_alone():
    request = sender_bytes(1)
    buf = bytearray(request + b"\xee" * 20)
    reflect_in_place(buf, len(request), receive_ns=RX_NS, error_estimate=REFLECTOR_ERR, hop_limit=64)
    stamp_transmit_time(buf, len(request), TX_NS)
    assert buf[len(request) :] == b"\xee" * 20
