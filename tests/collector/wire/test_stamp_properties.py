"""Property tests of the STAMP codec: round trips, and no crash on any input.

A reflector reads octets from anyone on the network, so the decoders and the in-place
reflection must turn every malformed input into StampDecodeError (counted and dropped)
and never into another exception, nor a reply of another length.
"""

from __future__ import annotations

import dataclasses
import struct

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from collector.wire.stamp import (
    AUTH_BASE_LEN,
    BASE_LEN,
    ErrorEstimate,
    ReflectorPacket,
    SenderPacket,
    TimestampFormat,
    decode_reflector,
    decode_sender,
    encode_reflector,
    encode_sender,
    encode_timestamp,
    ns_to_ntp,
    ns_to_ptp,
    ntp_to_ns,
    ptp_to_ns,
)
from collector.wire.stamp_reflect import (
    ReceivedContext,
    ReflectorPolicy,
    SessionCounters,
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
    StampDecodeError,
    TimestampInformation,
    UnknownTlv,
    decode_tlvs,
    encode_tlvs,
)
from tests.stamp_support import reflect_request

KEY = b"property-key-0123456789abcdef!!"
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
THOROUGH = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
timestamp_formats = st.sampled_from(list(TimestampFormat))
error_estimates = st.builds(ErrorEstimate, st.booleans(), timestamp_formats, st.integers(0, 63), st.integers(1, 255))
# Flags a decoder reads back as they are: anything but M, after which the rest is uninterpreted.
tlv_flags = u8.filter(lambda f: not f & 0x40)

location_sub_tlvs = st.builds(LocationSubTlv, u8, st.binary(max_size=24), u8)
tlvs = st.one_of(
    st.builds(ExtraPadding, st.integers(0, 64), tlv_flags),
    st.builds(Location, u16, u16, st.lists(location_sub_tlvs, max_size=3).map(tuple), tlv_flags),
    st.builds(TimestampInformation, u8, u8, u8, u8, st.binary(max_size=12), tlv_flags),
    st.builds(ClassOfService, st.integers(0, 63), st.integers(0, 63), st.integers(0, 3), st.integers(0, 3), tlv_flags),
    st.builds(DirectMeasurement, u32, u32, u32, tlv_flags),
    st.builds(AccessReport, st.integers(0, 15), u8, tlv_flags),
    st.builds(FollowUpTelemetry, u32, u64, u8, tlv_flags),
    st.builds(HmacTlv, st.binary(min_size=16, max_size=16), tlv_flags),
    st.builds(UnknownTlv, st.integers(9, 255), st.binary(max_size=32), tlv_flags),
)
tlv_lists = st.lists(tlvs, max_size=5).map(tuple)

senders = st.builds(SenderPacket, u32, u64, error_estimates, u16, tlv_lists)
reflectors = st.builds(ReflectorPacket, u32, u64, error_estimates, u16, u64, u32, u64, error_estimates, u8, tlv_lists)


def _zero_hmac_digests(tlv_tuple):
    """Sealing with a key fills the HMAC TLV's digest; compare everything else."""
    return tuple(dataclasses.replace(t, digest=bytes(16)) if isinstance(t, HmacTlv) else t for t in tlv_tuple)


# ---------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------


@FAST
@given(senders)
def test_sender_round_trip_unauthenticated(packet):
    data = encode_sender(packet)
    assert len(data) >= BASE_LEN
    assert decode_sender(data) == packet


@FAST
@given(senders)
def test_sender_round_trip_authenticated(packet):
    data = encode_sender(packet, KEY, authenticated=True)
    decoded = decode_sender(data, authenticated=True)
    assert decoded.hmac == data[96:112]
    assert dataclasses.replace(decoded, hmac=None, tlvs=_zero_hmac_digests(decoded.tlvs)) == dataclasses.replace(
        packet, tlvs=_zero_hmac_digests(packet.tlvs)
    )


@FAST
@given(reflectors)
def test_reflector_round_trip_unauthenticated(packet):
    assert decode_reflector(encode_reflector(packet)) == packet


@FAST
@given(reflectors)
def test_reflector_round_trip_authenticated(packet):
    data = encode_reflector(packet, KEY, authenticated=True)
    decoded = decode_reflector(data, authenticated=True)
    assert len(data) >= AUTH_BASE_LEN
    assert dataclasses.replace(decoded, hmac=None, tlvs=_zero_hmac_digests(decoded.tlvs)) == dataclasses.replace(
        packet, tlvs=_zero_hmac_digests(packet.tlvs)
    )


@FAST
@given(tlv_lists)
def test_tlv_list_round_trip(tlv_tuple):
    assert decode_tlvs(encode_tlvs(tlv_tuple)) == tlv_tuple


@FAST
@given(st.integers(0, 2**63))
def test_ntp_and_ptp_round_trip_to_the_nanosecond(ns):
    ns %= 2**32 * 10**9 - 2_208_988_800 * 10**9  # inside NTP era 0
    assert ntp_to_ns(ns_to_ntp(ns)) == ns
    assert ptp_to_ns(ns_to_ptp(ns)) == ns


@FAST
@given(st.floats(min_value=0, max_value=2.0**31, allow_nan=False))
def test_error_estimate_from_seconds_is_the_smallest_value_not_below(seconds):
    estimate = ErrorEstimate.from_seconds(seconds, synchronized=False)
    assert estimate.seconds >= seconds
    assert ErrorEstimate.decode(estimate.encode()) == estimate
    # One multiplier step less at this scale is too small, or is a multiplier of zero.
    smaller = (estimate.multiplier - 1) * 2.0 ** (estimate.scale - 32)
    assert estimate.multiplier == 1 or smaller < seconds
    # A smaller scale cannot hold the value in 8 bits.
    if estimate.scale > 0:
        assert seconds > 255 * 2.0 ** (estimate.scale - 1 - 32)


# ---------------------------------------------------------------------------------------
# Arbitrary octets: StampDecodeError or a result, nothing else
# ---------------------------------------------------------------------------------------

# TLV-shaped noise reaches deeper than uniform bytes: headers of known types with lengths
# that may or may not fit, followed by arbitrary value octets.
tlv_noise = st.lists(
    st.tuples(u8, st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 200]), st.integers(0, 40), st.binary(max_size=40)),
    max_size=5,
).map(lambda parts: b"".join(struct.pack("!BBH", f, t, n) + v for f, t, n, v in parts))
noise = st.one_of(st.binary(max_size=200), tlv_noise)


@THOROUGH
@given(st.binary(max_size=200), st.booleans())
def test_decode_sender_raises_only_stamp_decode_error(data, authenticated):
    try:
        decode_sender(data, authenticated=authenticated)
    except StampDecodeError:
        pass


@THOROUGH
@given(st.binary(max_size=200), st.booleans())
def test_decode_reflector_raises_only_stamp_decode_error(data, authenticated):
    try:
        decode_reflector(data, authenticated=authenticated)
    except StampDecodeError:
        pass


@THOROUGH
@given(noise)
def test_decode_tlvs_raises_only_stamp_decode_error(data):
    try:
        decode_tlvs(data)
    except StampDecodeError:
        pass


def _valid_base(seq: int, authenticated: bool) -> bytes:
    return encode_sender(SenderPacket(seq, 0), KEY if authenticated else None, authenticated=authenticated)


requests = st.one_of(
    st.tuples(st.binary(max_size=200), st.just(False)),
    st.tuples(st.builds(lambda s, t: _valid_base(s, False) + t, u32, noise), st.just(False)),
    st.tuples(st.builds(lambda s, t: _valid_base(s, True) + t, u32, noise), st.just(True)),
    st.tuples(st.binary(min_size=112, max_size=200), st.just(True)),
)


@THOROUGH
@given(
    requests,
    st.binary(max_size=8),
    st.booleans(),
    st.booleans(),
    st.sampled_from([None, frozenset({0, 46})]),
)
# An HMAC TLV whose Length is not 16, checked with a key: see test_hmac_tlv_with_wrong_length_*.
@example((_valid_base(0, False) + bytes([0, 8, 0, 0]), False), b"", False, True, None)
@example((_valid_base(0, False) + bytes([0, 8, 0, 0]), False), bytes(8), False, True, None)
def test_reflect_in_place_on_arbitrary_octets_keeps_length_or_raises_stamp_decode_error(
    request, slack, stateful, with_key, permitted
):
    data, authenticated = request
    buf = bytearray(data + slack)  # a receive buffer is larger than the datagram
    session = SessionCounters() if stateful else None
    key = KEY if (with_key or authenticated) else None
    context = ReceivedContext(bytes(16), 40000, bytes(range(16)), 862, dscp=10, ecn=1)
    try:
        reflect_in_place(
            buf,
            len(data),
            receive_ns=1,
            error_estimate=0x0001,
            hop_limit=64,
            session=session,
            authenticated=authenticated,
            key=key,
            context=context,
            policy=ReflectorPolicy(permitted_dscp=permitted),
        )
        stamp_transmit_time(buf, len(data), 2, session=session, authenticated=authenticated, key=key)
    except StampDecodeError:
        assert buf == bytearray(data + slack)  # a request that gets no reply is left as received
        return
    assert len(buf) == len(data) + len(slack)
    assert bytes(buf[len(data) :]) == slack  # nothing written past the datagram


@THOROUGH
@given(senders, st.booleans(), st.integers(1, 255), st.integers(0, 2**62), st.integers(0, 2**62))
def test_reflecting_an_encoded_request_gives_back_the_sender_fields(packet, stateful, hop_limit, rx_ns, tx_ns):
    request = encode_sender(packet)
    session = SessionCounters(next_seq=17) if stateful else None
    octets, _dscp = reflect_request(
        request, receive_ns=rx_ns, transmit_ns=tx_ns, error_estimate=0x8001, hop_limit=hop_limit, session=session
    )
    assert len(octets) == len(request)
    reply = decode_reflector(octets)
    fmt = packet.error_estimate.timestamp_format
    assert (reply.sender_seq, reply.sender_timestamp, reply.sender_error_estimate) == (
        packet.seq,
        packet.timestamp,
        packet.error_estimate,
    )
    assert reply.seq == (17 if stateful else packet.seq)
    assert (reply.ssid, reply.sender_ttl) == (packet.ssid, hop_limit)
    assert reply.error_estimate.timestamp_format is fmt
    assert (reply.receive_timestamp, reply.timestamp) == (encode_timestamp(rx_ns, fmt), encode_timestamp(tx_ns, fmt))
    assert len(reply.tlvs) <= len(packet.tlvs)
    assert [t.type for t in reply.tlvs] == [t.type for t in packet.tlvs][: len(reply.tlvs)]


@FAST
@given(senders.filter(lambda p: p.tlvs), st.integers(1, 255))
def test_reflecting_an_authenticated_request_gives_back_the_sender_fields(packet, hop_limit):
    request = encode_sender(packet, KEY, authenticated=True)
    buf = bytearray(request)
    reflect_in_place(
        buf, len(buf), receive_ns=5, error_estimate=0x0001, hop_limit=hop_limit, authenticated=True, key=KEY
    )
    stamp_transmit_time(buf, len(buf), 6, authenticated=True, key=KEY)
    reply = decode_reflector(bytes(buf), authenticated=True)
    assert (reply.sender_seq, reply.sender_timestamp, reply.sender_error_estimate, reply.sender_ttl) == (
        packet.seq,
        packet.timestamp,
        packet.error_estimate,
        hop_limit,
    )
    assert len(buf) == len(request)


@FAST
@given(senders, st.integers(14, 43))
def test_short_twamp_light_request_reply_is_a_prefix_of_the_full_reply(packet, cut):
    request = encode_sender(dataclasses.replace(packet, tlvs=()))
    short, full = bytearray(request[:cut]), bytearray(request)
    for buf in (short, full):
        reflect_in_place(buf, len(buf), receive_ns=7, error_estimate=0x0001, hop_limit=9)
        stamp_transmit_time(buf, len(buf), 8)
    full[14:16] = b"\0\0"  # a TWAMP-Light request carries no SSID, so its reply says 0
    assert bytes(short) == bytes(full[:cut])
