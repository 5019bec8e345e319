"""Unit tests of the STAMP TLVs (RFC 8972 section 4): value layouts, flags, lists and malformed input.

Expected values are written out by hand from the RFC layouts, not computed with the code under test.
"""

from __future__ import annotations

import pytest

from collector.wire.stamp import decode_sender
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
    decode_tlvs,
    encode_tlv,
    encode_tlvs,
)
from tests.collector.wire.stamp_codec_support import TS, M, U, sender_bytes

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
    tlvs = (
        ExtraPadding(1),
        Location(),
        TimestampInformation(),
        ClassOfService(),
        DirectMeasurement(),
        AccessReport(),
        FollowUpTelemetry(),
        HmacTlv(),
    )
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
