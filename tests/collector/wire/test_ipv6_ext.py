"""The extension-header walker against packets scapy builds, and against random bytes."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (
    HBHOptUnknown,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    IPv6ExtHdrSegmentRouting,
    Pad1,
    PadN,
)
from scapy.layers.ipsec import AH, ESP

from collector.wire.ipv6_ext import (
    MAX_EXTENSION_HEADERS,
    ExtensionChain,
    MalformedPacket,
    options_header,
    walk_extension_headers,
)

SRC, DST = "2001:db8:1::1", "2001:db8:2::2"
ALTMARK = 0x12


def walk(packet, offset: int = 0) -> ExtensionChain:
    return walk_extension_headers(bytes(packet), offset)


def upper_offset_by_scapy(packet, layer) -> int:
    return len(bytes(packet)) - len(bytes(packet[layer]))


def test_plain_tcp_has_an_empty_chain():
    chain = walk(IPv6(src=SRC, dst=DST) / TCP(sport=1, dport=2))
    assert chain == ExtensionChain(6, 40, (), (), (), 0, False)


def test_offset_skips_a_link_layer_header():
    chain = walk(b"\x00" * 14 + bytes(IPv6(src=SRC, dst=DST) / UDP()), offset=14)
    assert (chain.upper_protocol, chain.upper_offset) == (17, 54)


def test_hop_by_hop_options_leave_out_padding():
    packet = (
        IPv6(src=SRC, dst=DST)
        / IPv6ExtHdrHopByHop(
            options=[
                Pad1(),
                HBHOptUnknown(otype=ALTMARK, optdata=b"\x12\x34\x58\x00"),
                PadN(optdata=b"\x00" * 3),
                HBHOptUnknown(otype=0x3E, optdata=b"\x00\x00\x00\x07"),
            ]
        )
        / UDP(dport=862)
    )
    chain = walk(packet)
    assert chain.hop_by_hop == ((ALTMARK, b"\x12\x34\x58\x00"), (0x3E, b"\x00\x00\x00\x07"))
    assert chain.upper_protocol == 17
    assert chain.upper_offset == upper_offset_by_scapy(packet, UDP)


def test_destination_options_from_both_headers_are_collected():
    packet = (
        IPv6(src=SRC, dst=DST)
        / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=ALTMARK, optdata=b"\x00\x00\x10\x00")])
        / IPv6ExtHdrRouting(addresses=["2001:db8::9"])
        / IPv6ExtHdrDestOpt(options=[HBHOptUnknown(otype=0x1E, optdata=b"ab")])
        / TCP()
    )
    chain = walk(packet)
    assert chain.destination == ((ALTMARK, b"\x00\x00\x10\x00"), (0x1E, b"ab"))
    assert chain.segments == () and chain.segments_left == 0  # a type-0 header is not an SRH
    assert (chain.upper_protocol, chain.upper_offset) == (6, upper_offset_by_scapy(packet, TCP))


def test_segment_routing_header_gives_its_segment_list():
    sids = ["2001:db8:ff::3", "2001:db8:ff::2", "2001:db8:ff::1"]
    packet = (
        IPv6(src=SRC, dst=sids[1]) / IPv6ExtHdrSegmentRouting(addresses=sids, segleft=1, lastentry=2) / UDP(dport=53)
    )
    chain = walk(packet)
    assert chain.segments == tuple(ipaddress.IPv6Address(sid).packed for sid in sids)
    assert chain.segments_left == 1
    assert chain.segments[chain.segments_left] == ipaddress.IPv6Address(packet[IPv6].dst).packed
    assert (chain.upper_protocol, chain.upper_offset) == (17, upper_offset_by_scapy(packet, UDP))


def test_first_fragment_reaches_the_upper_header():
    packet = IPv6(src=SRC, dst=DST) / IPv6ExtHdrFragment(offset=0, m=1, id=7) / UDP(dport=9)
    chain = walk(packet)
    assert chain.fragment and (chain.upper_protocol, chain.upper_offset) == (17, 48)


def test_later_fragment_stops_at_the_fragment_header():
    packet = IPv6(src=SRC, dst=DST) / IPv6ExtHdrFragment(offset=100, m=0, id=7, nh=17) / (b"x" * 64)
    chain = walk(packet)
    assert chain.fragment and (chain.upper_protocol, chain.upper_offset) == (44, 48)


def test_authentication_header_counts_four_octet_units():
    # 12 fixed octets + 12 of ICV = 6 units; the field holds units minus 2 (RFC 4302 section 2.2)
    packet = IPv6(src=SRC, dst=DST) / AH(nh=6, payloadlen=4, spi=1, seq=2, icv=b"\x00" * 12) / TCP()
    chain = walk(packet)
    assert (chain.upper_protocol, chain.upper_offset) == (6, upper_offset_by_scapy(packet, TCP))


def test_esp_stops_the_walk():
    packet = IPv6(src=SRC, dst=DST) / IPv6ExtHdrHopByHop() / ESP(spi=5, seq=1, data=b"secret")
    chain = walk(packet)
    assert (chain.upper_protocol, chain.upper_offset) == (50, 48)


def test_no_next_header_stops_the_walk():
    packet = IPv6(src=SRC, dst=DST) / IPv6ExtHdrDestOpt(nh=59) / (b"\x06" * 16)
    assert (walk(packet).upper_protocol, walk(packet).upper_offset) == (59, 48)


def test_ethernet_padding_after_the_payload_is_not_walked():
    # payload length 8 covers the Destination Options header only; the padding would be a bad header
    raw = bytes(IPv6(src=SRC, dst=DST, plen=8) / IPv6ExtHdrDestOpt(nh=60)) + b"\x00\xff" * 8
    with pytest.raises(MalformedPacket):
        walk_extension_headers(raw)  # nh=60 points past the payload length
    raw = bytes(IPv6(src=SRC, dst=DST, plen=8) / IPv6ExtHdrDestOpt(nh=17)) + b"\x00\xff" * 8
    assert (walk(raw).upper_protocol, walk(raw).upper_offset) == (17, 48)


def test_payload_length_longer_than_a_snapped_capture_still_walks():
    packet = bytes(IPv6(src=SRC, dst=DST) / IPv6ExtHdrDestOpt() / TCP() / (b"x" * 1000))
    assert walk_extension_headers(packet[:96]).upper_offset == 48


def test_hop_by_hop_after_another_header_is_refused():
    packet = IPv6(src=SRC, dst=DST) / IPv6ExtHdrDestOpt() / IPv6ExtHdrHopByHop() / UDP()
    with pytest.raises(MalformedPacket, match="Hop-by-Hop"):
        walk(packet)


@pytest.mark.parametrize("cut", [39, 41, 47, 50])
def test_truncation_is_malformed(cut):
    packet = bytes(
        IPv6(src=SRC, dst=DST)
        / IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=ALTMARK, optdata=b"\x00" * 4)])
        / IPv6ExtHdrFragment()
        / UDP()
    )
    with pytest.raises(MalformedPacket):
        walk_extension_headers(packet[:cut])


def test_option_longer_than_its_header_is_malformed():
    raw = bytearray(
        bytes(
            IPv6(src=SRC, dst=DST)
            / IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=ALTMARK, optdata=b"\x00" * 4)])
            / UDP()
        )
    )
    raw[40 + 3] = 200  # the option's data length now runs past the 8-octet header
    with pytest.raises(MalformedPacket, match="option"):
        walk_extension_headers(bytes(raw))


def test_segments_left_beyond_the_list_is_malformed():
    packet = (
        IPv6(src=SRC, dst=DST) / IPv6ExtHdrSegmentRouting(addresses=["2001:db8::1"], segleft=2, lastentry=0) / UDP()
    )
    with pytest.raises(MalformedPacket, match="Segments Left"):
        walk(packet)


def test_last_entry_beyond_the_header_is_malformed():
    packet = (
        IPv6(src=SRC, dst=DST) / IPv6ExtHdrSegmentRouting(addresses=["2001:db8::1"], segleft=0, lastentry=3) / UDP()
    )
    with pytest.raises(MalformedPacket, match="segment list"):
        walk(packet)


def test_a_long_chain_is_bounded():
    chain = IPv6(src=SRC, dst=DST)
    for _ in range(MAX_EXTENSION_HEADERS):
        chain = chain / IPv6ExtHdrDestOpt()
    assert walk(chain / UDP()).upper_protocol == 17
    with pytest.raises(MalformedPacket, match="more than"):
        walk(chain / IPv6ExtHdrDestOpt() / UDP())


def test_not_ipv6_is_malformed():
    with pytest.raises(MalformedPacket):
        walk_extension_headers(b"\x45" + b"\x00" * 59)


@settings(max_examples=3000, deadline=None)
@given(st.binary(min_size=0, max_size=200), st.sampled_from([0, 43, 44, 51, 60, 135, 6]))
def test_random_bytes_only_raise_malformed(tail, first_next_header):
    header = bytearray(bytes(IPv6(src=SRC, dst=DST, nh=first_next_header, plen=len(tail))))
    try:
        chain = walk_extension_headers(bytes(header) + tail)
    except MalformedPacket:
        return
    assert 40 <= chain.upper_offset <= 40 + len(tail)
    assert all(len(segment) == 16 for segment in chain.segments)


@settings(max_examples=1000, deadline=None)
@given(st.binary(min_size=0, max_size=120), st.integers(0, 60))
def test_random_prefixes_and_offsets_only_raise_malformed(data, offset):
    try:
        walk_extension_headers(b"\x60" + data, offset)
    except MalformedPacket:
        pass


@pytest.mark.parametrize("option_lengths", [[6], [6, 6], [4], [5], [1], []])
def test_an_options_header_is_padded_to_eight_octets_and_walks_back_to_its_options(option_lengths):
    options = [bytes((0x1E + i, n - 2)) + bytes(range(n - 2)) for i, n in enumerate(option_lengths) if n >= 2]
    header = options_header(17, options)
    assert len(header) % 8 == 0 and header[0] == 17 and header[1] == len(header) // 8 - 1
    packet = bytes(IPv6(src=SRC, dst=DST, nh=0, plen=len(header) + 8)) + header + bytes(8)
    chain = walk_extension_headers(packet)
    assert chain.upper_protocol == 17 and chain.upper_offset == 40 + len(header)
    assert list(chain.hop_by_hop) == [(o[0], bytes(o[2:])) for o in options]
