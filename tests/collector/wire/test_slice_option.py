"""The slice ID option: its layout written once, read back by the dissector, and the
bounds of what it can carry."""

from __future__ import annotations

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6

from collector.wire.dissect import dissect_ip
from collector.wire.ipv6_ext import HOP_BY_HOP, MalformedPacket, options_header, walk_extension_headers
from collector.wire.slice_option import DEFAULT_SLICE_OPTION, decode_slice_id, encode_slice_option, slice_hop_by_hop


def with_hop_by_hop(options: list[bytes]) -> bytes:
    plain = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=1, dport=2) / b"x")
    header = options_header(plain[6], options)
    length = int.from_bytes(plain[4:6], "big") + len(header)
    return plain[:4] + length.to_bytes(2, "big") + bytes((HOP_BY_HOP,)) + plain[7:40] + header + plain[40:]


def test_the_option_is_type_length_and_the_id_big_endian():
    assert encode_slice_option(0xDEADBEEF) == bytes((DEFAULT_SLICE_OPTION, 4, 0xDE, 0xAD, 0xBE, 0xEF))
    assert encode_slice_option(7, 0x3E)[:2] == b"\x3e\x04"
    assert decode_slice_id(b"\x00\x00\x01\x00") == 256


@pytest.mark.parametrize("slice_id", [0, 1, 0xFFFFFFFF])
def test_the_dissector_reads_back_what_was_written(slice_id):
    packet = with_hop_by_hop([encode_slice_option(slice_id)])
    assert dissect_ip(packet).slice_id == slice_id
    assert walk_extension_headers(packet).upper_protocol == 17


def test_what_the_option_cannot_carry_is_refused():
    with pytest.raises(ValueError, match="32-bit"):
        encode_slice_option(1 << 32)
    with pytest.raises(ValueError, match="option type"):
        encode_slice_option(1, option_type=1)  # PadN
    with pytest.raises(MalformedPacket, match="expected 4"):
        decode_slice_id(b"\x01\x02")


def test_a_hop_by_hop_header_of_the_option_alone_is_eight_octets():
    header = slice_hop_by_hop(9, 0x3E)
    assert header == bytes((HOP_BY_HOP, 0, 0x3E, 4, 0, 0, 0, 9))
