"""Bytes of Paris traceroute probes over IPv6, and of what comes back.

Builders for the probe kinds (UDP payload, the checksum-neutral ICMPv6 echo payload, TCP
SYN) and parsers for what a raw socket receives about them: the probe an ICMPv6 error
quotes, whatever its protocol and with the traffic class it still had at the router, and
TCP segments. Echo messages themselves are `collector.wire.icmp6`'s.

Every probe of one trace keeps the fields that ECMP hashes on constant: ports, ICMPv6
identifier, and for echo the checksum too (a payload word compensates the sequence
number), because some routers hash the first words of the transport header. Probes are told
apart by fields outside that: the UDP payload, the echo sequence number, the TCP sequence number.

Checksums of ICMPv6 and TCP are left zero: the kernel fills them in on raw sockets
(always for ICMPv6, with IPV6_CHECKSUM for TCP), since it knows the source address.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

UDP_MAGIC = b"XT"  # leads every UDP probe payload, so foreign datagrams are not mistaken for ours
_UDP_PROBE = struct.Struct("!2sH")
_TCP = struct.Struct("!HHIIBBHHH")  # ports, seq, ack, offset, flags, window, checksum, urgent
_IPV6 = struct.Struct("!IHBB16s16s")

PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMP6 = 58
_EXTENSION_HEADERS = {0, 43, 60}  # hop-by-hop (slice ID option), routing (SRv6), destination options
_FRAGMENT = 44

TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10
TCP_CHECKSUM_OFFSET = 16  # where IPV6_CHECKSUM has the kernel write the TCP checksum


# -- probes ------------------------------------------------------------------------------


def udp_payload(seq: int, size: int = 4) -> bytes:
    """A UDP probe payload: magic and the probe's sequence number, zero-padded to `size`."""
    return _UDP_PROBE.pack(UDP_MAGIC, seq & 0xFFFF).ljust(max(size, _UDP_PROBE.size), b"\0")


def udp_seq(payload: bytes) -> int | None:
    """The sequence number in a (quoted) UDP probe payload, None if it is not ours."""
    if len(payload) < _UDP_PROBE.size:
        return None
    magic, seq = _UDP_PROBE.unpack_from(payload)
    return seq if magic == UDP_MAGIC else None


def echo_payload(seq: int, size: int = 4) -> bytes:
    """The payload of an ICMPv6 echo probe that keeps the message's checksum the same for
    every `seq` (build the message with `collector.wire.icmp6.echo_request`).

    Its first word is the one's complement of the sequence number, so the two sum to 0xFFFF
    in one's complement arithmetic whatever `seq` is: with the identifier and the rest
    fixed, the checksum the kernel computes never changes.
    """
    return struct.pack("!H", (seq & 0xFFFF) ^ 0xFFFF).ljust(max(size, 2), b"\0")


def tcp_syn(source_port: int, destination_port: int, seq: int, window: int = 1024) -> bytes:
    """A bare TCP SYN (20 octets, no options), checksum left to the kernel."""
    return _TCP.pack(source_port, destination_port, seq & 0xFFFFFFFF, 0, 5 << 4, TCP_SYN, window, 0, 0)


# -- answers -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuotedPacket:
    """The start of our probe as an ICMPv6 error quotes it (RFC 4443 section 2.4 (c))."""

    traffic_class: int  # as the probe arrived at the router that answered
    flow_label: int
    next_header: int  # the transport protocol, after any extension headers
    source: str
    destination: str
    transport: bytes  # the transport header and what follows of it

    @property
    def dscp(self) -> int:
        return self.traffic_class >> 2


@dataclass(frozen=True, slots=True)
class TcpSegment:
    source_port: int
    destination_port: int
    seq: int
    ack: int
    flags: int


def parse_quote(data: bytes) -> QuotedPacket | None:
    """The quoted IPv6 packet of an error, skipping extension headers; None if cut short."""
    if len(data) < _IPV6.size:
        return None
    first, _length, next_header, _hlim, source, destination = _IPV6.unpack_from(data)
    offset = _IPV6.size
    while next_header in _EXTENSION_HEADERS or next_header == _FRAGMENT:
        if len(data) < offset + 8:
            return None
        following = data[offset]
        offset += 8 if next_header == _FRAGMENT else (data[offset + 1] + 1) * 8
        next_header = following
    return QuotedPacket(
        traffic_class=(first >> 20) & 0xFF,
        flow_label=first & 0xFFFFF,
        next_header=next_header,
        source=str(ipaddress.IPv6Address(source)),
        destination=str(ipaddress.IPv6Address(destination)),
        transport=bytes(data[offset:]),
    )


def parse_tcp(data: bytes) -> TcpSegment | None:
    if len(data) < 14:  # enough for ports, seq, ack and flags (a quote may stop at 8)
        return None
    source_port, destination_port, seq, ack = struct.unpack_from("!HHII", data)
    return TcpSegment(source_port, destination_port, seq, ack, data[13])


def quoted_ports(transport: bytes) -> tuple[int, int] | None:
    """Source and destination port of a quoted UDP or TCP header."""
    if len(transport) < 4:
        return None
    return struct.unpack_from("!HH", transport)


def quoted_tcp_seq(transport: bytes) -> int | None:
    """The sequence number of a quoted TCP header (RFC 4443 quotes enough; RFC 792 routers only 8 octets)."""
    if len(transport) < 8:
        return None
    return struct.unpack_from("!I", transport, 4)[0]
