"""The packet dissector against packets scapy builds, and fuzzing for its one exception."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    HBHOptUnknown,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrSegmentRouting,
)
from scapy.layers.l2 import Dot1Q, Ether

from collector.wire.dissect import DEFAULT_SLICE_OPTION, PacketFields, dissect_batch, dissect_ethernet, dissect_ip
from collector.wire.ipv6_ext import MalformedPacket

# Explicit addresses: without them scapy resolves them on the network, slowly.
MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"

SRC, DST = "2001:db8:1::10", "2001:db8:2::20"


def packed(text: str) -> bytes:
    address = ipaddress.ip_address(text)
    return address.packed if address.version == 6 else b"\x00" * 10 + b"\xff\xff" + address.packed


def slice_option(slice_id: int, option_type: int = DEFAULT_SLICE_OPTION) -> HBHOptUnknown:
    return HBHOptUnknown(otype=option_type, optdata=slice_id.to_bytes(4, "big"))


def test_ipv6_tcp() -> None:
    packet = bytes(
        IPv6(src=SRC, dst=DST, tc=34 << 2 | 1, fl=0xABCDE) / TCP(sport=40000, dport=443, flags="SA") / (b"x" * 100)
    )
    assert dissect_ip(packet) == PacketFields(
        source=packed(SRC),
        destination=packed(DST),
        dscp=34,
        flow_label=0xABCDE,
        protocol=6,
        source_port=40000,
        destination_port=443,
        length=40 + 20 + 100,
        tcp_flags=0x12,
        active_sid=None,
        slice_id=None,
    )


def test_ipv6_udp_in_ethernet_with_vlan_tag_and_trailing_padding() -> None:
    inner = IPv6(src=SRC, dst=DST, tc=26 << 2) / UDP(sport=862, dport=9000) / b"abc"
    frame = bytes(Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=7) / inner) + b"\x00" * 20  # padding beyond the IP packet
    fields = dissect_ethernet(frame)
    assert (fields.protocol, fields.source_port, fields.destination_port) == (17, 862, 9000)
    assert (fields.dscp, fields.length) == (26, 40 + 8 + 3)


def test_icmpv6_type_and_code_go_in_the_destination_port() -> None:
    fields = dissect_ip(bytes(IPv6(src=SRC, dst=DST) / ICMPv6EchoRequest(id=5, seq=1)))
    assert (fields.protocol, fields.source_port, fields.destination_port) == (58, 0, 128 << 8)


def test_hop_by_hop_slice_id_option() -> None:
    packet = IPv6(src=SRC, dst=DST) / IPv6ExtHdrHopByHop(options=[slice_option(0xDEADBEEF)]) / UDP(sport=1, dport=2)
    fields = dissect_ip(bytes(packet))
    assert (fields.slice_id, fields.protocol, fields.source_port, fields.destination_port) == (0xDEADBEEF, 17, 1, 2)
    # a different option type is configurable, and the default one is then ignored
    assert dissect_ip(bytes(packet), slice_option_type=0x3E).slice_id is None
    other = IPv6(src=SRC, dst=DST) / IPv6ExtHdrHopByHop(options=[slice_option(7, 0x3E)]) / UDP()
    assert dissect_ip(bytes(other), slice_option_type=0x3E).slice_id == 7


def test_segment_routing_header_gives_the_active_segment() -> None:
    segments = ["fd00:5:0:3::1", "fd00:5:0:2::1", "fd00:5:0:1::1"]  # on the wire: last segment first
    packet = (
        IPv6(src=SRC, dst="fd00:5:0:2::1")
        / IPv6ExtHdrHopByHop(options=[slice_option(3)])
        / IPv6ExtHdrSegmentRouting(addresses=segments, segleft=1)
        / IPv6ExtHdrDestOpt()
        / TCP(sport=5, dport=6, flags="S")
    )
    fields = dissect_ip(bytes(packet))
    assert fields.active_sid == packed("fd00:5:0:2::1")
    assert (fields.slice_id, fields.protocol, fields.source_port, fields.destination_port, fields.tcp_flags) == (
        3,
        6,
        5,
        6,
        2,
    )
    assert fields.length == len(bytes(packet))


def test_fragments() -> None:
    first = IPv6(src=SRC, dst=DST) / IPv6ExtHdrFragment(offset=0, m=1, id=9) / UDP(sport=7, dport=8) / (b"y" * 16)
    later = IPv6(src=SRC, dst=DST) / IPv6ExtHdrFragment(offset=3, m=0, id=9, nh=17) / (b"z" * 16)
    assert (dissect_ip(bytes(first)).protocol, dissect_ip(bytes(first)).destination_port) == (17, 8)
    assert (dissect_ip(bytes(later)).protocol, dissect_ip(bytes(later)).destination_port) == (44, 0)


def test_ipv4_is_ipv4_mapped() -> None:
    packet = bytes(
        Ether(src=MAC_A, dst=MAC_B)
        / IP(src="192.0.2.1", dst="198.51.100.2", tos=18 << 2)
        / UDP(sport=53, dport=5353)
        / (b"q" * 10)
    )
    fields = dissect_ethernet(packet)
    assert fields == PacketFields(
        packed("192.0.2.1"), packed("198.51.100.2"), 18, 0, 17, 53, 5353, 20 + 8 + 10, 0, None, None
    )
    icmp = dissect_ip(bytes(IP(src="192.0.2.1", dst="192.0.2.2") / ICMP(type=3, code=1)))
    assert (icmp.protocol, icmp.destination_port) == (1, 3 << 8 | 1)
    later = dissect_ip(bytes(IP(src="192.0.2.1", dst="192.0.2.2", frag=10, proto=6) / (b"r" * 8)))
    assert (later.protocol, later.source_port, later.destination_port) == (6, 0, 0)


def test_non_ip_ethernet_is_none() -> None:
    assert dissect_ethernet(bytes(Ether(src=MAC_A, dst=MAC_B, type=0x0806) / (b"\x00" * 28))) is None


@pytest.mark.parametrize(
    ("packet", "needed"),
    [
        (bytes(IPv6(src=SRC, dst=DST) / TCP()), 40 + 14),  # up to the TCP flags
        (bytes(IPv6(src=SRC, dst=DST) / IPv6ExtHdrHopByHop(options=[slice_option(1)]) / UDP()), 40 + 8 + 4),  # ports
        (bytes(IPv6(src=SRC, dst=DST) / IPv6ExtHdrSegmentRouting(addresses=[DST]) / UDP()), 40 + 24 + 4),
        (bytes(IP(src="192.0.2.1", dst="192.0.2.2") / TCP()), 20 + 14),
    ],
)
def test_every_truncation_raises_malformed_packet(packet: bytes, needed: int) -> None:
    """Cut anywhere before the last field read, a packet is malformed; from there on, it reads."""
    for cut in range(needed):
        with pytest.raises(MalformedPacket):
            dissect_ip(packet[:cut])
    assert dissect_ip(packet[:needed]) == dissect_ip(packet)
    with pytest.raises(MalformedPacket):
        dissect_ethernet(bytes(Ether(src=MAC_A, dst=MAC_B, type=0x86DD)) + packet[: needed - 1])


def test_slice_option_of_the_wrong_length_is_malformed() -> None:
    packet = (
        IPv6() / IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=DEFAULT_SLICE_OPTION, optdata=b"\x01\x02")]) / UDP()
    )
    with pytest.raises(MalformedPacket, match="slice-ID option"):
        dissect_ip(bytes(packet))


def _ipv6_like() -> st.SearchStrategy[bytes]:
    """Bytes that start like an IPv6 header with extension headers, so fuzzing gets past the
    first checks; the rest is arbitrary."""
    return st.builds(
        lambda nh, plen, rest: bytes([0x60, 0, 0, 0]) + plen.to_bytes(2, "big") + bytes([nh, 64]) + b"\x20" * 32 + rest,
        st.sampled_from([0, 6, 17, 43, 44, 50, 51, 58, 59, 60, 135, 253]),
        st.integers(0, 0xFFFF),
        st.binary(max_size=200),
    )


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=120), _ipv6_like(), st.builds(lambda b: bytes([0x45]) + b, st.binary(max_size=80))))
def test_fuzz_only_malformed_packet_escapes(data: bytes) -> None:
    for call in (
        lambda: dissect_ip(data),
        lambda: dissect_ethernet(b"\x00" * 12 + b"\x86\xdd" + data),
        lambda: dissect_ethernet(data),
    ):
        try:
            result = call()
        except MalformedPacket:
            continue
        assert result is None or isinstance(result, PacketFields)


def _batch_rows(packets: list[bytes], per_packet: bool) -> tuple:
    buffer = np.frombuffer(b"".join(packets) + bytes(64), dtype=np.uint8)  # slack: room to read past the last
    lengths = np.array([len(p) for p in packets], dtype=np.int64)
    offsets = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64)
    batch = dissect_batch(buffer, offsets, lengths, per_packet=per_packet)
    columns = [
        getattr(batch, name).tolist()
        for name in (
            "kept",
            "src_high",
            "src_low",
            "dst_high",
            "dst_low",
            "dscp",
            "flow_label",
            "protocol",
            "source_port",
            "destination_port",
            "length",
            "tcp_flags",
        )
    ]
    return columns, batch.marks, dict(batch.malformed)


def _header_like(version: int) -> st.SearchStrategy[bytes]:
    """Packets whose first octets look like an IPv6 or IPv4 header, the rest arbitrary."""
    if version == 6:
        return _ipv6_like()
    return st.builds(
        lambda ihl, rest: bytes([0x40 | ihl]) + rest,
        st.sampled_from([5, 5, 5, 6, 4]),
        st.binary(min_size=0, max_size=90),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(_header_like(6), _header_like(4), st.binary(max_size=60)), min_size=1, max_size=30))
def test_fixed_offset_path_equals_dissect_ip(packets: list[bytes]) -> None:
    """Whatever the bytes, the vectorised batch gives what dissect_ip gives packet by packet."""
    assert _batch_rows(packets, per_packet=False) == _batch_rows(packets, per_packet=True)
