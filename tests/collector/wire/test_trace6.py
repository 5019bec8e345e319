"""Paris traceroute probe bytes, checked against scapy's independent dissectors."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrHopByHop,
)

from collector.wire import icmp6, trace6

SRC, DST = "2001:db8::10", "2001:db8:0:9::1"


def test_udp_payload_carries_the_sequence_number_behind_a_magic():
    payload = trace6.udp_payload(0xBEEF, size=12)
    assert len(payload) == 12 and payload.startswith(trace6.UDP_MAGIC)
    assert trace6.udp_seq(payload) == 0xBEEF
    assert trace6.udp_seq(payload[:4]) == 0xBEEF  # what a short quote keeps is enough
    assert trace6.udp_seq(b"ZZ\x00\x01") is None  # another program's datagram
    assert trace6.udp_seq(b"XT") is None


@pytest.mark.parametrize("size", [2, 4, 32])
def test_echo_probes_keep_one_checksum_whatever_the_sequence_number(size):
    sums = {
        icmp6.checksum(
            ipaddress.IPv6Address(SRC).packed,
            ipaddress.IPv6Address(DST).packed,
            icmp6.echo_request(0x4242, seq, trace6.echo_payload(seq, size)),
        )
        for seq in [0, 1, 2, 255, 256, 0x7FFF, 0xFFFE, 0xFFFF, *range(3, 65535, 977)]
    }
    assert len(sums) == 1


def test_scapy_computes_the_same_constant_echo_checksum():
    """An independent checksum: scapy fills it in over the same pseudo-header."""
    sums = set()
    for seq in (0, 7, 40000):
        packet = IPv6(
            bytes(IPv6(src=SRC, dst=DST) / ICMPv6EchoRequest(id=0x4242, seq=seq, data=trace6.echo_payload(seq, 8)))
        )
        sums.add(packet[ICMPv6EchoRequest].cksum)
        assert packet[ICMPv6EchoRequest].seq == seq
    assert len(sums) == 1


def test_tcp_syn_is_a_bare_syn_with_our_ports_and_sequence_number():
    segment = TCP(trace6.tcp_syn(41000, 443, 0xFFFFFFFF + 3))
    assert (segment.sport, segment.dport, segment.seq) == (41000, 443, 2)
    assert segment.flags == "S" and segment.dataofs == 5 and segment.ack == 0


def test_a_time_exceeded_quote_gives_the_probe_and_the_dscp_it_still_carried():
    probe = (
        IPv6(src=SRC, dst=DST, tc=34 << 2, fl=0x12345, hlim=1) / UDP(sport=40000, dport=33434) / trace6.udp_payload(9)
    )
    message = bytes(IPv6(src="2001:db8::1", dst=SRC) / ICMPv6TimeExceeded() / probe)[40:]
    quote = trace6.parse_quote(message[8:])
    assert quote is not None
    assert (quote.dscp, quote.flow_label, quote.next_header) == (34, 0x12345, trace6.PROTO_UDP)
    assert (quote.source, quote.destination) == (SRC, "2001:db8:0:9::1")
    assert trace6.quoted_ports(quote.transport) == (40000, 33434)
    assert trace6.udp_seq(quote.transport[8:]) == 9


def test_quotes_skip_a_hop_by_hop_header_such_as_the_slice_id_option():
    probe = IPv6(src=SRC, dst=DST) / IPv6ExtHdrHopByHop() / TCP(sport=1234, dport=80, seq=77, flags="S")
    message = bytes(ICMPv6DestUnreach(code=1) / probe)
    quote = trace6.parse_quote(message[8:])
    assert quote is not None and quote.next_header == trace6.PROTO_TCP
    assert trace6.quoted_ports(quote.transport) == (1234, 80)
    assert trace6.quoted_tcp_seq(quote.transport) == 77


def test_cut_short_quotes_are_refused_not_misread():
    probe = bytes(IPv6(src=SRC, dst=DST) / IPv6ExtHdrHopByHop() / UDP())
    assert trace6.parse_quote(probe[:39]) is None
    assert trace6.parse_quote(probe[:44]) is None  # extension header cut
    quote = trace6.parse_quote(probe[:50])
    assert quote is not None and trace6.quoted_ports(quote.transport) is None
    assert trace6.quoted_tcp_seq(b"\0" * 7) is None


def test_tcp_segments_parse_flags_and_acknowledgement():
    segment = trace6.parse_tcp(bytes(TCP(sport=80, dport=41000, seq=5, ack=1001, flags="SA")))
    assert segment == trace6.TcpSegment(80, 41000, 5, 1001, trace6.TCP_SYN | trace6.TCP_ACK)
    assert trace6.parse_tcp(b"\0" * 13) is None
