"""Unit tests of the reflector hot path (`reflect_in_place`): base fields and every TLV's answer.

Expected values are written out by hand from the RFC layouts (octet offsets from the
start of the UDP payload, big-endian), not computed with the code under test.
"""

from __future__ import annotations

import pytest

from collector.wire.stamp import (
    AUTH_BASE_LEN,
    BASE_LEN,
    ErrorEstimate,
    TimestampFormat,
    base_hmac_ok,
    decode_reflector,
    ns_to_ntp,
    ns_to_ptp,
)
from collector.wire.stamp_reflect import (
    NO_DSCP_REQUEST,
    ReceivedContext,
    ReflectorPolicy,
    SessionCounters,
    TlvStats,
    TransmitTime,
    reflect_base_in_place,
    reflect_in_place,
    stamp_base_transmit_time,
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
    LocationSubTlvType,
    StampDecodeError,
    SyncSource,
    TimestampInformation,
    TimestampMethod,
    UnknownTlv,
    compute_hmac,
    encode_tlv,
    encode_tlvs,
    hmac_tlv_ok,
)
from tests.collector.wire.stamp_codec_support import (
    KEY,
    OTHER_KEY,
    REFLECTOR_ERR,
    RX_NS,
    T1_NS,
    TX_NS,
    I,
    M,
    U,
    reflect,
    sender_bytes,
    tlv_at,
)

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


@pytest.mark.parametrize("fmt", list(TimestampFormat))
def test_the_lean_rewrite_and_burst_stamp_write_the_requests_format(fmt):
    # The reflector's lean path: the base rewrite, then T3 from one TransmitTime per burst.
    ptp_reflector = ErrorEstimate(True, TimestampFormat.PTP, 4, 7).encode()
    buf = bytearray(sender_bytes(5, fmt=fmt))
    reflect_base_in_place(memoryview(buf), RX_NS, ptp_reflector, 61)
    raw = stamp_base_transmit_time(memoryview(buf), BASE_LEN, TransmitTime.of(TX_NS))
    reply = decode_reflector(bytes(buf))
    convert = ns_to_ptp if fmt is TimestampFormat.PTP else ns_to_ntp
    assert reply.error_estimate == ErrorEstimate(True, fmt, 4, 7)
    assert (reply.receive_timestamp, reply.timestamp, raw) == (convert(RX_NS), convert(TX_NS), convert(TX_NS))
    assert (reply.sender_timestamp, reply.sender_ttl) == (convert(T1_NS), 61)


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
    request = sender_bytes(
        1,
        tlvs=(
            Location.request(
                LocationSubTlvType.SOURCE_MAC_REQUEST,
                LocationSubTlvType.DESTINATION_IP_REQUEST,
                LocationSubTlvType.SOURCE_IP_REQUEST,
            ),
        ),
    )
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
    request = sender_bytes(
        1, tlvs=(Location.request(LocationSubTlvType.DESTINATION_IP_REQUEST, LocationSubTlvType.SOURCE_IP_REQUEST),)
    )
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
    request = sender_bytes(
        1, tlvs=(ExtraPadding(100), ClassOfService(1), Location.request(LocationSubTlvType.SOURCE_IP_REQUEST))
    )
    reply, _ = reflect(request)
    assert len(reply) == len(request)


def test_reflection_leaves_octets_beyond_length_alone():
    request = sender_bytes(1)
    buf = bytearray(request + b"\xee" * 20)
    reflect_in_place(buf, len(request), receive_ns=RX_NS, error_estimate=REFLECTOR_ERR, hop_limit=64)
    stamp_transmit_time(buf, len(request), TX_NS)
    assert buf[len(request) :] == b"\xee" * 20
