"""One packet -> the header fields the slice classifier and the flow aggregator need.

`dissect_ip` reads an IPv6 or IPv4 packet (by its version nibble), `dissect_ethernet` an
Ethernet frame (with up to two VLAN tags) around one. This is the per-packet path: live
capture uses it for every sampled packet, and `dissect_batch` for the packets it cannot
read at fixed offsets (IPv6 extension headers, IPv4 options and fragments, short packets).

Choices:
- IPv6 extension headers are walked by `collector.wire.ipv6_ext.walk_extension_headers`,
  and only when Next Header says there are some, so a plain packet costs one unpack.
- The slice ID is the 32-bit data of the Hop-by-Hop option `slice_option_type`. No type is
  assigned for it yet, so the default is 0x1E, an RFC 4727 experimental type whose top
  bits say "skip if unknown, does not change en route".
- The active SRv6 segment is the destination address of a packet with a Segment Routing
  Header: RFC 8754 section 4.3 copies Segment List[Segments Left] into it at every segment
  endpoint, and in reduced mode the first segment is only there.
- Ports: TCP, UDP, UDP-Lite, SCTP and DCCP ports; ICMP and ICMPv6 put type and code in the
  destination port (type * 256 + code) as NetFlow and IPFIX exporters do. A fragment other
  than the first has no upper-layer header: protocol 44 (IPv6) or the IPv4 protocol, ports 0.
- `length` is the IP packet length from the header (IPv6: 40 + payload length, or the
  Jumbo Payload option), not the captured length, so a capture cut at a snap length still
  counts the bytes that crossed the wire.
- Anything truncated or impossible raises MalformedPacket; nothing else escapes.

`dissect_batch` does the same for many packets of a memory buffer at once: IPv6 packets
whose Next Header is an upper layer (TCP, UDP, ICMPv6 ...) and IPv4 packets with a
20-octet header that are not later fragments have every field at a fixed offset, so numpy
reads them for all such packets together, as seven big-endian 64-bit words from the IP
header on. Everything else goes through `dissect_ip` one by one; the tests hold both
paths to the same fields.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from collector.wire.ipv6_ext import MalformedPacket, walk_extension_headers
from collector.wire.slice_option import DEFAULT_SLICE_OPTION, decode_slice_id

JUMBO_PAYLOAD_OPTION = 0xC2

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
VLAN_ETHERTYPES = frozenset({0x8100, 0x88A8, 0x9100})
ETHERNET_HEADER_LEN = 14
MAX_VLAN_TAGS = 2

TCP = 6
UDP = 17
ICMP = 1
ICMPV6 = 58
FRAGMENT = 44
PORT_PROTOCOLS = frozenset({TCP, UDP, 33, 132, 136})  # TCP, UDP, DCCP, SCTP, UDP-Lite
ICMP_PROTOCOLS = frozenset({ICMP, ICMPV6})
# Next Header values after which another IPv6 header follows rather than the payload.
IPV6_EXTENSION_HEADERS = frozenset({0, 43, 44, 51, 60, 135, 139, 140, 253, 254})

IPV4_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"

_IPV6_FIXED = struct.Struct("!IHBB16s16s")  # version/class/label, payload length, next header, hop limit
_IPV4_FIXED = struct.Struct("!BBHHHBBH4s4s")
_PORTS = struct.Struct("!HH")
_ETHERTYPE = struct.Struct("!H")


@dataclass(frozen=True, slots=True)
class PacketFields:
    source: bytes  # 16 octets; IPv4 as IPv4-mapped ::ffff:a.b.c.d
    destination: bytes
    dscp: int
    flow_label: int  # 0 for IPv4
    protocol: int  # upper-layer protocol after any extension headers
    source_port: int
    destination_port: int
    length: int  # IP packet length from its header
    tcp_flags: int
    active_sid: bytes | None  # the active SRv6 segment, when an SRH is present
    slice_id: int | None  # the Hop-by-Hop slice-ID option's value, when present


def dissect_ethernet(
    frame: bytes | memoryview, *, slice_option_type: int = DEFAULT_SLICE_OPTION
) -> PacketFields | None:
    """The IP packet in an Ethernet II frame (VLAN tags skipped); None when it carries no IP."""
    offset = ip_offset_in_ethernet(frame)
    if offset is None:
        return None
    return dissect_ip(frame, offset, slice_option_type=slice_option_type)


def ip_offset_in_ethernet(frame: bytes | memoryview) -> int | None:
    """Where the IP header of an Ethernet frame starts; None when it carries no IP."""
    if len(frame) < ETHERNET_HEADER_LEN:
        raise MalformedPacket("truncated Ethernet header")
    ethertype = _ETHERTYPE.unpack_from(frame, 12)[0]
    offset = ETHERNET_HEADER_LEN
    tags = 0
    while ethertype in VLAN_ETHERTYPES:
        tags += 1
        if tags > MAX_VLAN_TAGS or len(frame) < offset + 4:
            raise MalformedPacket("truncated or too many VLAN tags")
        ethertype = _ETHERTYPE.unpack_from(frame, offset + 2)[0]
        offset += 4
    if ethertype in (ETHERTYPE_IPV6, ETHERTYPE_IPV4):
        return offset
    return None


def dissect_ip(
    packet: bytes | memoryview, offset: int = 0, *, slice_option_type: int = DEFAULT_SLICE_OPTION
) -> PacketFields:
    """The fields of the IPv6 or IPv4 packet that starts at `offset`."""
    if offset < 0 or len(packet) <= offset:
        raise MalformedPacket("no IP header")
    version = packet[offset] >> 4
    if version == 6:
        return _dissect_ipv6(packet, offset, slice_option_type)
    if version == 4:
        return _dissect_ipv4(packet, offset)
    raise MalformedPacket(f"IP version {version}")


def _dissect_ipv6(packet: bytes | memoryview, offset: int, slice_option_type: int) -> PacketFields:
    if len(packet) < offset + 40:
        raise MalformedPacket("truncated IPv6 header")
    first_word, payload_length, next_header, _, source, destination = _IPV6_FIXED.unpack_from(packet, offset)
    length = 40 + payload_length
    active_sid = slice_id = None
    if next_header in IPV6_EXTENSION_HEADERS:
        chain = walk_extension_headers(packet, offset)
        protocol, upper = chain.upper_protocol, chain.upper_offset
        for option_type, data in chain.hop_by_hop:
            if option_type == slice_option_type:
                slice_id = decode_slice_id(data)
            elif option_type == JUMBO_PAYLOAD_OPTION and payload_length == 0 and len(data) == 4:
                length = 40 + int.from_bytes(data, "big")
        if chain.segments:
            active_sid = destination
    else:
        protocol, upper = next_header, offset + 40
    source_port, destination_port, tcp_flags = _transport(packet, upper, protocol)
    return PacketFields(
        source,
        destination,
        (first_word >> 22) & 0x3F,
        first_word & 0xFFFFF,
        protocol,
        source_port,
        destination_port,
        length,
        tcp_flags,
        active_sid,
        slice_id,
    )


def _dissect_ipv4(packet: bytes | memoryview, offset: int) -> PacketFields:
    if len(packet) < offset + 20:
        raise MalformedPacket("truncated IPv4 header")
    version_ihl, tos, total_length, _, fragment, _, protocol, _, source, destination = _IPV4_FIXED.unpack_from(
        packet, offset
    )
    header_length = (version_ihl & 0x0F) * 4
    if header_length < 20 or total_length < header_length or len(packet) < offset + header_length:
        raise MalformedPacket("bad IPv4 header or total length")
    if fragment & 0x1FFF:  # not the first fragment: no upper-layer header here
        ports = (0, 0, 0)
    else:
        ports = _transport(packet, offset + header_length, protocol)
    return PacketFields(
        IPV4_MAPPED_PREFIX + source,
        IPV4_MAPPED_PREFIX + destination,
        tos >> 2,
        0,
        protocol,
        ports[0],
        ports[1],
        total_length,
        ports[2],
        None,
        None,
    )


def _transport(packet: bytes | memoryview, offset: int, protocol: int) -> tuple[int, int, int]:
    """(source port, destination port, TCP flags) of the upper-layer header at `offset`."""
    if protocol in PORT_PROTOCOLS:
        needed = 14 if protocol == TCP else 4
        if len(packet) < offset + needed:
            raise MalformedPacket(f"truncated protocol {protocol} header")
        source_port, destination_port = _PORTS.unpack_from(packet, offset)
        return source_port, destination_port, packet[offset + 13] if protocol == TCP else 0
    if protocol in ICMP_PROTOCOLS:
        if len(packet) < offset + 2:
            raise MalformedPacket("truncated ICMP header")
        return 0, packet[offset] << 8 | packet[offset + 1], 0
    return 0, 0, 0


# -- many packets at once ----------------------------------------------------------------------


def gather(data: np.ndarray, offsets: np.ndarray, dtype: np.dtype | str) -> np.ndarray:
    """The integer of `dtype` at each of `offsets` (any alignment) in the uint8 array `data`."""
    return gather_rows(data, offsets, 1, dtype)[:, 0]


def gather_rows(data: np.ndarray, offsets: np.ndarray, count: int, dtype: np.dtype | str) -> np.ndarray:
    """`count` consecutive integers of `dtype` from each of `offsets`: shape (len(offsets), count).
    Every offset must leave room for them before the end of `data`.

    The buffer is viewed as overlapping fixed-size records that start at every octet (a
    stride of one), so one fancy index copies each packet's octets in a single move,
    whatever their alignment."""
    dtype = np.dtype(dtype)
    width = dtype.itemsize * count
    offsets = np.asarray(offsets, dtype=np.int64)
    if not len(offsets):
        return np.empty((0, count), dtype=dtype.newbyteorder("="))
    records = np.ndarray((len(data) - width + 1,), dtype=np.dtype((np.void, width)), buffer=data, strides=(1,))
    return records[offsets].view(dtype).reshape(len(offsets), count).astype(dtype.newbyteorder("="))


# Octets the fixed-offset path must have, by protocol (0: not that path for IPv6).
_IPV6_NEEDED = np.full(256, 40, dtype=np.int64)
_IPV6_NEEDED[list(IPV6_EXTENSION_HEADERS)] = 0
_IPV4_NEEDED = np.full(256, 20, dtype=np.int64)
for _needed, _header in ((_IPV6_NEEDED, 40), (_IPV4_NEEDED, 20)):
    _needed[list(PORT_PROTOCOLS)] = _header + 4
    _needed[TCP] = _header + 14  # up to the flags
    _needed[list(ICMP_PROTOCOLS)] = _header + 2
_HAS_PORTS = np.zeros(256, dtype=bool)
_HAS_PORTS[list(PORT_PROTOCOLS)] = True
_IS_ICMP = np.zeros(256, dtype=bool)
_IS_ICMP[list(ICMP_PROTOCOLS)] = True
_FAST_WORDS = 7  # 56 octets: an IPv6 header and the first 16 of the upper layer
_IPV4_MAPPED_HIGH = np.uint64(0xFFFF << 32)  # the low half of ::ffff:0:0/96


@dataclass(frozen=True)
class PacketBatch:
    """Fields of the packets of a batch that could be dissected, as parallel arrays."""

    kept: np.ndarray  # int64: positions (in the input) of these packets
    src_high: np.ndarray  # uint64: top 64 bits of the source address
    src_low: np.ndarray
    dst_high: np.ndarray
    dst_low: np.ndarray
    dscp: np.ndarray  # int64, like all columns below
    flow_label: np.ndarray
    protocol: np.ndarray
    source_port: np.ndarray
    destination_port: np.ndarray
    length: np.ndarray
    tcp_flags: np.ndarray
    # row -> (active SID, slice ID), only for rows that carry one of them
    marks: dict[int, tuple[bytes | None, int | None]] = field(default_factory=dict)
    malformed: Counter = field(default_factory=Counter)  # kind -> packets dropped


def dissect_batch(
    data: np.ndarray,
    ip_offsets: np.ndarray,
    ip_lengths: np.ndarray,
    *,
    slice_option_type: int = DEFAULT_SLICE_OPTION,
    per_packet: bool = False,
) -> PacketBatch:
    """Dissects the IP packets at `ip_offsets` of `data` (uint8), each `ip_lengths` octets
    long as captured. `per_packet=True` sends every packet through `dissect_ip` (the
    reference the fixed-offset path is tested against)."""
    count = len(ip_offsets)
    columns = np.zeros((7, count), dtype=np.int64)
    high_low = np.zeros((4, count), dtype=np.uint64)
    fast = np.zeros(count, dtype=bool)
    if not per_packet and count:
        readable = np.flatnonzero(ip_offsets + _FAST_WORDS * 8 <= len(data))
        words = gather_rows(data, ip_offsets[readable], _FAST_WORDS, ">u8")
        version = words[:, 0] >> np.uint64(60)
        for fixed_offsets in (_ipv6_fixed, _ipv4_fixed):
            rows, addresses, values = fixed_offsets(words, version, ip_lengths[readable])
            rows = readable[rows]
            fast[rows] = True
            high_low[:, rows] = addresses
            columns[:, rows] = values
    malformed: Counter = Counter()
    marks: dict[int, tuple[bytes | None, int | None]] = {}
    dropped = np.zeros(count, dtype=bool)
    slow_rows, slow_addresses, slow_columns = [], [], []
    view = memoryview(data)  # type: ignore[arg-type]  # numpy declares ndarray.__buffer__ for Python >= 3.12 only
    for row in np.flatnonzero(~fast).tolist():
        start = int(ip_offsets[row])
        try:
            fields = dissect_ip(view[start : start + int(ip_lengths[row])], slice_option_type=slice_option_type)
        except MalformedPacket as exc:
            malformed[malformed_kind(exc)] += 1
            dropped[row] = True
            continue
        slow_rows.append(row)
        slow_addresses.append(fields.source + fields.destination)
        slow_columns.append(
            (
                fields.dscp,
                fields.flow_label,
                fields.protocol,
                fields.source_port,
                fields.destination_port,
                fields.length,
                fields.tcp_flags,
            )
        )
        if fields.active_sid is not None or fields.slice_id is not None:
            marks[row] = (fields.active_sid, fields.slice_id)
    if slow_rows:
        high_low[:, slow_rows] = np.frombuffer(b"".join(slow_addresses), dtype=">u8").reshape(-1, 4).T
        columns[:, slow_rows] = np.array(slow_columns, dtype=np.int64).T
    kept = np.flatnonzero(~dropped)
    if len(kept) != count:  # renumber the marked rows to their place among the kept ones
        position = np.cumsum(~dropped) - 1
        marks = {int(position[row]): value for row, value in marks.items()}
        high_low, columns = high_low[:, kept], columns[:, kept]
    src_high, src_low, dst_high, dst_low = high_low
    dscp, flow_label, protocol, source_port, destination_port, length, tcp_flags = columns
    return PacketBatch(
        kept,
        src_high,
        src_low,
        dst_high,
        dst_low,
        dscp,
        flow_label,
        protocol,
        source_port,
        destination_port,
        length,
        tcp_flags,
        marks=marks,
        malformed=malformed,
    )


def _ipv6_fixed(words: np.ndarray, version: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rows of IPv6 packets without extension headers, their addresses and other columns."""
    next_header = ((words[:, 0] >> np.uint64(8)) & np.uint64(0xFF)).astype(np.int64)
    needed = _IPV6_NEEDED[next_header]
    rows = np.flatnonzero((version == 6) & (needed > 0) & (lengths >= needed))
    words, next_header = words[rows], next_header[rows]
    first = words[:, 0]
    return (
        rows,
        words[:, 1:5].T,
        _columns(
            dscp=(first >> np.uint64(54)) & np.uint64(0x3F),
            flow_label=(first >> np.uint64(32)) & np.uint64(0xFFFFF),
            protocol=next_header,
            upper=words[:, 5],
            tcp_flags=(words[:, 6] >> np.uint64(16)) & np.uint64(0xFF),
            length=40 + ((first >> np.uint64(16)) & np.uint64(0xFFFF)),
        ),
    )


def _ipv4_fixed(words: np.ndarray, version: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """Rows of IPv4 packets with a 20-octet header that are not later fragments, their
    addresses (IPv4-mapped) and other columns."""
    first = words[:, 0]
    protocol = ((words[:, 1] >> np.uint64(48)) & np.uint64(0xFF)).astype(np.int64)
    total_length = (first >> np.uint64(32)) & np.uint64(0xFFFF)
    header_length = (first >> np.uint64(56)) & np.uint64(0x0F)
    later_fragment = (first & np.uint64(0x1FFF)) != 0
    needed = _IPV4_NEEDED[protocol]
    rows = np.flatnonzero(
        (version == 4) & (header_length == 5) & (total_length >= 20) & ~later_fragment & (lengths >= needed)
    )
    words, protocol, first = words[rows], protocol[rows], first[rows]
    addresses = np.stack(
        [
            np.zeros(len(rows), dtype=np.uint64),
            _IPV4_MAPPED_HIGH | (words[:, 1] & np.uint64(0xFFFFFFFF)),
            np.zeros(len(rows), dtype=np.uint64),
            _IPV4_MAPPED_HIGH | (words[:, 2] >> np.uint64(32)),
        ]
    )
    return (
        rows,
        addresses,
        _columns(
            dscp=(first >> np.uint64(50)) & np.uint64(0x3F),
            flow_label=np.zeros(len(rows), dtype=np.uint64),
            protocol=protocol,
            upper=words[:, 2] << np.uint64(32),  # octets 20-23 (the ports) as the top of a word
            tcp_flags=(words[:, 4] >> np.uint64(48)) & np.uint64(0xFF),  # octet 33
            length=total_length[rows],
        ),
    )


def _columns(*, dscp, flow_label, protocol, upper, tcp_flags, length) -> np.ndarray:
    """The seven integer columns of PacketBatch, from the upper-layer header's first word."""
    has_ports, is_icmp = _HAS_PORTS[protocol], _IS_ICMP[protocol]
    zero = np.uint64(0)
    return np.stack(
        [
            dscp,
            flow_label,
            protocol,
            np.where(has_ports, upper >> np.uint64(48), zero),
            np.where(
                has_ports, (upper >> np.uint64(32)) & np.uint64(0xFFFF), np.where(is_icmp, upper >> np.uint64(48), zero)
            ),
            length,
            np.where(protocol == TCP, tcp_flags, zero),
        ]
    ).astype(np.int64)


def malformed_kind(exc: MalformedPacket) -> str:
    """A short label for the metric's `kind`: messages carry numbers, kinds must not."""
    return "truncated" if "truncated" in str(exc) else "bad-header"
