"""Our STAMP bytes against scapy's independent layers (`scapy.contrib.stamp`).

Two notes on scapy's layers, which these tests work around rather than trust:

- Timestamps: with Z=0 scapy reads `ts` as an NTP fixed-point number (a float through
  attribute access), with Z=1 as a plain 64-bit integer. `getfieldval` gives the raw
  64-bit value in both cases, and that is what is compared.
- TLV flags: scapy names the flag bits "UMIRRRRR" from the least significant bit, so its
  letter "U" is 0x01, while RFC 8972 puts U in the most significant bit (0x80). Flags are
  therefore compared and built as integers.
- The reflector layer needs all 44 octets; a 41-octet TWAMP-Light reply is dissected with
  its three trailing MBZ octets added back as zeros.
"""

from __future__ import annotations

import socket
import struct
import time

import pytest
from scapy.contrib.stamp import ErrorEstimate as ScapyErrorEstimate
from scapy.contrib.stamp import (
    STAMPSessionReflectorTestUnauthenticated,
    STAMPSessionSenderTestUnauthenticated,
    STAMPTestTLV,
)

from collector.reflector.session_reflector import Reflector, ReflectorConfig
from collector.system.clock import shared_host_clock
from collector.wire.stamp import (
    ErrorEstimate,
    ReflectorPacket,
    SenderPacket,
    TimestampFormat,
    encode_reflector,
    encode_sender,
    encode_timestamp,
    ns_to_ntp,
    ntp_to_ns,
)
from collector.wire.stamp_reflect import ReceivedContext, SessionCounters
from collector.wire.stamp_tlv import (
    ClassOfService,
    DirectMeasurement,
    ExtraPadding,
    FollowUpTelemetry,
    Location,
    LocationSubTlvType,
    TimestampInformation,
    UnknownTlv,
    encode_tlv,
)
from tests.stamp_support import reflect_request

U, M = 0x80, 0x40
RX_NS = 1_700_000_000_250_000_000
TX_NS = 1_700_000_000_750_000_000
T1_NS = 1_699_999_999_500_000_000
REFLECTOR_ERR = ErrorEstimate(True, TimestampFormat.NTP, 4, 7)
SENDER_TLVS = (ClassOfService(46), DirectMeasurement(9), ExtraPadding(5), UnknownTlv(200, b"\x01\x02"))
FORMATS = [TimestampFormat.NTP, TimestampFormat.PTP]


def raw(packet, name: str) -> int:
    return packet.getfieldval(name)


def estimate_of(layer) -> ErrorEstimate:
    return ErrorEstimate(bool(layer.S), TimestampFormat(layer.Z), layer.scale, layer.multiplier)


def tlvs_of(packet) -> list[tuple[int, int, int, bytes]]:
    return [(int(t.flags), t.type, t.len, bytes(t.value)) for t in packet.tlv_objects]


def expected_tlvs(tlvs) -> list[tuple[int, int, int, bytes]]:
    return [(t.flags, t.type, len(t.value()), t.value()) for t in tlvs]


def reflect(request: bytes, *, session=None, context=None, hop_limit=61) -> bytes:
    reply, _dscp = reflect_request(
        request,
        receive_ns=RX_NS,
        transmit_ns=TX_NS,
        error_estimate=REFLECTOR_ERR.encode(),
        hop_limit=hop_limit,
        session=session,
        context=context,
    )
    return reply


def sender(seq: int, fmt: TimestampFormat = TimestampFormat.NTP, tlvs=(), ssid: int = 0x1234) -> SenderPacket:
    return SenderPacket(seq, encode_timestamp(T1_NS, fmt), ErrorEstimate(False, fmt, 2, 3), ssid, tlvs)


# ---------------------------------------------------------------------------------------
# What we emit, dissected by scapy
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("tlvs", [(), SENDER_TLVS], ids=["base", "tlvs"])
def test_scapy_dissects_our_sender_packet_to_the_same_fields(fmt, tlvs):
    packet = SenderPacket(0xDEADBEEF, encode_timestamp(T1_NS, fmt), ErrorEstimate(True, fmt, 5, 200), 0xABCD, tlvs)
    dissected = STAMPSessionSenderTestUnauthenticated(encode_sender(packet))
    assert dissected.seq == 0xDEADBEEF
    assert raw(dissected, "ts") == packet.timestamp
    assert estimate_of(dissected.err_estimate) == packet.error_estimate
    assert dissected.ssid == 0xABCD
    assert dissected.mbz == 0
    assert tlvs_of(dissected) == expected_tlvs(tlvs)


def test_scapy_reads_our_ntp_sender_timestamp_as_the_same_instant():
    dissected = STAMPSessionSenderTestUnauthenticated(encode_sender(sender(1)))
    assert dissected.ts == pytest.approx(2_208_988_800 + T1_NS / 1e9, abs=1e-6)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("tlvs", [(), SENDER_TLVS], ids=["base", "tlvs"])
def test_scapy_dissects_our_encoded_reflector_packet_to_the_same_fields(fmt, tlvs):
    packet = ReflectorPacket(
        seq=0x01020304,
        timestamp=encode_timestamp(TX_NS, fmt),
        error_estimate=ErrorEstimate(True, fmt, 1, 2),
        ssid=0x0BAD,
        receive_timestamp=encode_timestamp(RX_NS, fmt),
        sender_seq=0x0A0B0C0D,
        sender_timestamp=encode_timestamp(T1_NS, fmt),
        sender_error_estimate=ErrorEstimate(False, fmt, 63, 255),
        sender_ttl=254,
        tlvs=tuple(t for t in tlvs),
    )
    dissected = STAMPSessionReflectorTestUnauthenticated(encode_reflector(packet))
    assert (dissected.seq, dissected.ssid, dissected.seq_sender, dissected.ttl_sender) == (
        0x01020304,
        0x0BAD,
        0x0A0B0C0D,
        254,
    )
    assert (raw(dissected, "ts"), raw(dissected, "ts_rx"), raw(dissected, "ts_sender")) == (
        packet.timestamp,
        packet.receive_timestamp,
        packet.sender_timestamp,
    )
    assert estimate_of(dissected.err_estimate) == packet.error_estimate
    assert estimate_of(dissected.err_estimate_sender) == packet.sender_error_estimate
    assert (dissected.mbz1, dissected.mbz2) == (0, 0)
    assert tlvs_of(dissected) == expected_tlvs(tlvs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_scapy_dissects_our_reflected_reply_to_the_same_fields(fmt):
    reply = reflect(encode_sender(sender(321, fmt, ssid=0x4242)), hop_limit=42)
    dissected = STAMPSessionReflectorTestUnauthenticated(reply)
    assert (dissected.seq, dissected.seq_sender, dissected.ssid, dissected.ttl_sender) == (321, 321, 0x4242, 42)
    assert raw(dissected, "ts") == encode_timestamp(TX_NS, fmt)
    assert raw(dissected, "ts_rx") == encode_timestamp(RX_NS, fmt)
    assert raw(dissected, "ts_sender") == encode_timestamp(T1_NS, fmt)
    assert estimate_of(dissected.err_estimate) == ErrorEstimate(True, fmt, 4, 7)
    assert estimate_of(dissected.err_estimate_sender) == ErrorEstimate(False, fmt, 2, 3)


def test_scapy_sees_our_reply_tlv_flags_and_values():
    context = ReceivedContext(dscp=10, ecn=2)
    reply = reflect(encode_sender(sender(1, tlvs=SENDER_TLVS)), session=SessionCounters(), context=context)
    tlvs = tlvs_of(STAMPSessionReflectorTestUnauthenticated(reply))
    assert tlvs[0] == (0, 4, 4, bytes([46 << 2, (10 << 4) | (2 << 2), 0, 0]))  # CoS answered
    assert tlvs[1] == (0, 5, 12, struct.pack("!III", 9, 1, 1))  # Direct Measurement filled
    assert tlvs[2] == (0, 1, 5, bytes(5))  # Extra Padding echoed
    assert tlvs[3] == (U, 200, 2, b"\x01\x02")  # unknown type flagged U


# ---------------------------------------------------------------------------------------
# Requests built by scapy, answered by reflect_in_place
# ---------------------------------------------------------------------------------------


def scapy_request(seq: int = 7, *, tlvs=(), z: int = 0, ssid: int = 0x5151):
    ts = 2_208_988_800 + T1_NS / 1e9 if z == 0 else (1_699_999_999 << 32) | 500_000_000
    packet = STAMPSessionSenderTestUnauthenticated(
        seq=seq,
        err_estimate=ScapyErrorEstimate(S=1, Z=z, scale=3, multiplier=9),
        ssid=ssid,
        tlv_objects=list(tlvs),
    )
    packet.ts = ts  # after err_estimate: scapy picks the type of `ts` from Z when it is assigned
    return packet


def scapy_tlv(tlv) -> STAMPTestTLV:
    value = tlv.value()
    return STAMPTestTLV(flags=tlv.flags, type=tlv.type, len=len(value), value=value)


@pytest.mark.parametrize("z", [0, 1])
def test_scapy_built_request_is_answered_with_the_sender_fields(z):
    request = scapy_request(1000, z=z)
    data = bytes(request)
    assert len(data) == 44
    assert data[12:14] == bytes([0x80 | (z << 6) | 3, 9])  # S=1, Z, scale 3, multiplier 9
    reply = STAMPSessionReflectorTestUnauthenticated(reflect(data, hop_limit=17))
    assert (reply.seq, reply.seq_sender, reply.ssid, reply.ttl_sender) == (1000, 1000, 0x5151, 17)
    assert raw(reply, "ts_sender") == raw(STAMPSessionSenderTestUnauthenticated(data), "ts")
    assert (1, z) == (reply.err_estimate_sender.S, reply.err_estimate_sender.Z)
    assert (reply.err_estimate_sender.scale, reply.err_estimate_sender.multiplier) == (3, 9)
    assert z == reply.err_estimate.Z
    fmt = TimestampFormat(z)
    assert (raw(reply, "ts_rx"), raw(reply, "ts")) == (encode_timestamp(RX_NS, fmt), encode_timestamp(TX_NS, fmt))


def test_scapy_built_request_with_tlvs_gets_each_tlv_answered():
    tlvs = [
        scapy_tlv(ClassOfService(46)),
        scapy_tlv(TimestampInformation()),
        STAMPTestTLV(flags=U, type=222, len=3, value=b"abc"),
        scapy_tlv(FollowUpTelemetry()),
    ]
    data = bytes(scapy_request(tlvs=tlvs))
    reply = reflect(data, context=ReceivedContext(dscp=34, ecn=1))
    assert len(reply) == len(data)
    answered = tlvs_of(STAMPSessionReflectorTestUnauthenticated(reply))
    assert [(flags, tlv_type) for flags, tlv_type, _, _ in answered] == [(0, 4), (0, 3), (U, 222), (0, 7)]
    assert answered[0][3] == bytes([(46 << 2) | (34 >> 4), ((34 & 0xF) << 4) | (1 << 2), 0, 0])
    assert answered[1][3] == bytes([5, 2, 5, 2])  # local free-running clock, software timestamps
    assert answered[2][3] == b"abc"


def test_scapy_built_location_request_is_answered_with_ipv6_addresses_and_ports():
    src, dst = socket.inet_pton(socket.AF_INET6, "2001:db8::a"), socket.inet_pton(socket.AF_INET6, "2001:db8::b")
    location = Location.request(LocationSubTlvType.SOURCE_IP_REQUEST, LocationSubTlvType.DESTINATION_IP_REQUEST)
    data = bytes(scapy_request(tlvs=[scapy_tlv(location)]))
    reply = reflect(data, context=ReceivedContext(src, 40001, dst, 862))
    (flags, tlv_type, length, value) = tlvs_of(STAMPSessionReflectorTestUnauthenticated(reply))[0]
    assert (flags, tlv_type, length) == (0, 2, 44)
    assert struct.unpack_from("!HH", value) == (862, 40001)
    assert value[4:24] == bytes([0, 9, 0, 16]) + src
    assert value[24:44] == bytes([0, 6, 0, 16]) + dst


def test_scapy_built_malformed_tlv_gets_m_and_the_rest_is_echoed():
    data = bytes(scapy_request(tlvs=[STAMPTestTLV(flags=U, type=5, len=4, value=b"\x00\x00\x00\x01")]))
    data += b"\x99" * 7
    reply = reflect(data)
    assert reply[44] == M
    assert reply[45:] == data[45:]


def test_scapy_built_request_cut_to_twamp_light_41_octets_gets_a_41_octet_reply():
    data = bytes(scapy_request(555))[:41]
    reply = reflect(data, hop_limit=99)
    assert len(reply) == 41
    dissected = STAMPSessionReflectorTestUnauthenticated(reply + bytes(3))
    assert (dissected.seq, dissected.seq_sender, dissected.ttl_sender, dissected.ssid) == (555, 555, 99, 0)
    assert raw(dissected, "ts_sender") == raw(STAMPSessionSenderTestUnauthenticated(bytes(scapy_request(555))), "ts")
    assert raw(dissected, "ts_rx") == ns_to_ntp(RX_NS)


def test_scapy_built_requests_in_a_stateful_session_get_consecutive_reflector_numbers():
    session = SessionCounters()
    seqs = [
        STAMPSessionReflectorTestUnauthenticated(reflect(bytes(scapy_request(s)), session=session)).seq
        for s in (10, 20, 30)
    ]
    assert seqs == [0, 1, 2]


# ---------------------------------------------------------------------------------------
# Live: the reflector server over a real UDP socket on [::1]
# ---------------------------------------------------------------------------------------

IPV6_RECVTCLASS = getattr(socket, "IPV6_RECVTCLASS", 66)
IPV6_TCLASS = getattr(socket, "IPV6_TCLASS", 67)


def live_config(**overrides) -> ReflectorConfig:
    fields = {"bind": ("::1",), "port": 0, "stateful": False, "clock": shared_host_clock()}
    fields.update(overrides)
    return ReflectorConfig(**fields)


@pytest.fixture
def client():
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.settimeout(2.0)
    sock.bind(("::1", 0))
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 33)
    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVTCLASS, 1)
    yield sock
    sock.close()


def exchange(sock: socket.socket, port: int, data: bytes) -> tuple[bytes, int | None]:
    """Send `data` to the reflector; the reply and the traffic class it arrived with."""
    sock.sendto(data, ("::1", port))
    reply, ancdata, _flags, _address = sock.recvmsg(2048, socket.CMSG_SPACE(4))
    tclass = next(
        (
            struct.unpack("@i", d[:4])[0]
            for lvl, kind, d in ancdata
            if lvl == socket.IPPROTO_IPV6 and kind == IPV6_TCLASS
        ),
        None,
    )
    return reply, tclass


def test_live_reflector_answers_a_scapy_request_over_udp(client):
    data = bytes(scapy_request(4242, ssid=0x0707))
    with Reflector(live_config()) as reflector:
        before = time.time_ns()
        reply, _ = exchange(client, reflector.port, data)
        after = time.time_ns()
    # Counters are read once the serving thread has stopped: it counts a reply after sending it.
    assert (reflector.stats.received, reflector.stats.reflected) == (1, 1)
    assert len(reply) == len(data)
    dissected = STAMPSessionReflectorTestUnauthenticated(reply)
    assert (dissected.seq, dissected.seq_sender, dissected.ssid) == (4242, 4242, 0x0707)
    assert dissected.ttl_sender == 33
    assert raw(dissected, "ts_sender") == raw(STAMPSessionSenderTestUnauthenticated(data), "ts")
    rx_ns, tx_ns = ntp_to_ns(raw(dissected, "ts_rx")), ntp_to_ns(raw(dissected, "ts"))
    assert before - 1_000_000 <= rx_ns <= tx_ns <= after + 1_000_000
    assert dissected.err_estimate.S == 1 and dissected.err_estimate.multiplier > 0


def test_live_reflector_honours_class_of_service_and_reports_received_dscp(client):
    client.setsockopt(socket.IPPROTO_IPV6, IPV6_TCLASS, 10 << 2)
    data = bytes(scapy_request(1, tlvs=[scapy_tlv(ClassOfService(46))]))
    with Reflector(live_config()) as reflector:
        reply, tclass = exchange(client, reflector.port, data)
    flags, tlv_type, _length, value = tlvs_of(STAMPSessionReflectorTestUnauthenticated(reply))[0]
    assert (flags, tlv_type) == (0, 4)
    assert value[0] >> 2 == 46 and ((value[0] & 0x3) << 4 | value[1] >> 4) == 10
    assert tclass is not None and tclass >> 2 == 46


def test_live_reflector_fills_location_with_loopback_addresses_and_ports(client):
    location = Location.request(LocationSubTlvType.SOURCE_IP_REQUEST, LocationSubTlvType.DESTINATION_IP_REQUEST)
    data = bytes(scapy_request(1, tlvs=[scapy_tlv(location)]))
    loopback = socket.inet_pton(socket.AF_INET6, "::1")
    with Reflector(live_config()) as reflector:
        reply, _ = exchange(client, reflector.port, data)
        port = reflector.port
    value = tlvs_of(STAMPSessionReflectorTestUnauthenticated(reply))[0][3]
    assert struct.unpack_from("!HH", value) == (port, client.getsockname()[1])
    assert value[4:24] == bytes([0, 9, 0, 16]) + loopback
    assert value[24:44] == bytes([0, 6, 0, 16]) + loopback


def test_live_stateful_reflector_numbers_replies_per_session(client):
    with Reflector(live_config(stateful=True)) as reflector:
        seqs = [
            STAMPSessionReflectorTestUnauthenticated(exchange(client, reflector.port, bytes(scapy_request(s)))[0]).seq
            for s in (100, 200, 300)
        ]
    assert seqs == [0, 1, 2]


def test_live_reflector_answers_twamp_light_41_octets_with_41_octets(client):
    data = bytes(scapy_request(77))[:41]
    with Reflector(live_config()) as reflector:
        reply, _ = exchange(client, reflector.port, data)
    assert len(reply) == 41
    dissected = STAMPSessionReflectorTestUnauthenticated(reply + bytes(3))
    assert (dissected.seq_sender, dissected.ttl_sender) == (77, 33)


def test_live_reflector_drops_a_short_datagram_and_keeps_serving(client):
    with Reflector(live_config()) as reflector:
        client.sendto(bytes(13), ("::1", reflector.port))
        reply, _ = exchange(client, reflector.port, bytes(scapy_request(8)))
    assert reflector.stats.malformed["short"] == 1
    assert (reflector.stats.received, reflector.stats.reflected) == (2, 1)
    assert STAMPSessionReflectorTestUnauthenticated(reply).seq_sender == 8


def test_live_reflector_flags_unknown_tlv_and_counts_it(client):
    data = bytes(scapy_request(1, tlvs=[STAMPTestTLV(flags=U, type=250, len=4, value=b"\x00\x00\x01\x02")]))
    with Reflector(live_config()) as reflector:
        reply, _ = exchange(client, reflector.port, data)
    assert reflector.stats.tlv.unrecognized == 1
    assert reply[44:] == data[44:]  # U was already set by the sender; the TLV comes back as sent
    assert STAMPSessionReflectorTestUnauthenticated(reply).tlv_objects[0].type == 250


def test_our_tlv_bytes_equal_a_tlv_built_field_by_field_with_scapy():
    by_scapy = STAMPTestTLV(flags=U, type=4, len=4, value=bytes([46 << 2, 0, 0, 0]))
    assert encode_tlv(ClassOfService(46)) == bytes(by_scapy)
