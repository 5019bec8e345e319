"""pcap and pcapng files -> where every packet is, when it was seen, and where its IP header starts.

`read_flows` turns a whole file into flow records. Underneath, `index_capture` maps the
file into memory and lists its packets as numpy arrays (offset of the captured octets,
captured and original length, time in ns, link type) without copying a packet, and
`locate_ip` finds each packet's IP header for the link types we read: Ethernet (1, with
VLAN tags), raw IP (101, and 228/229 for IPv4/IPv6 only) and Linux cooked capture SLL
(113) and SLL2 (276). `dissect_batch` and `FlowAggregator.add_batch` do the rest, a
million packets per chunk.

Formats: pcap in both byte orders with microsecond (0xA1B2C3D4) or nanosecond
(0xA1B23C4D) timestamps; pcapng (Section Header, Interface Description with if_tsresol,
Enhanced, Simple and the obsolete Packet blocks; other blocks skipped), several sections
and interfaces, each section in its own byte order.

Choices:
- The only per-packet Python loop is the walk over record (or block) headers, which must
  be sequential because each header gives the next one's position; it keeps just the
  offset and checks nothing (for pcap in native byte order it reads the length through
  32-bit memoryviews, twice as fast as struct). Lengths and times are then read and
  checked for all packets at once with numpy.
- Damage is counted, not raised: a record that runs past the end of the file, a block with
  an impossible length or a packet longer than its block ends or skips what it must and
  adds to `malformed[kind]` (reported as protocol "pcap"). Only a file that is not a
  capture at all raises CaptureFileError.
"""

from __future__ import annotations

import mmap
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from collector.capture.aggregate import FlowAggregator
from collector.wire.dissect import (
    DEFAULT_SLICE_OPTION,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    VLAN_ETHERTYPES,
    dissect_batch,
    dissect_ip,
    gather,
    gather_rows,
    ip_offset_in_ethernet,
    malformed_kind,
)
from collector.wire.ipv6_ext import MalformedPacket

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
RAW_IP_LINKTYPES = frozenset({LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6})
SUPPORTED_LINKTYPES = frozenset({LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2}) | RAW_IP_LINKTYPES

PCAP_MAGIC_MICROSECONDS = 0xA1B2C3D4
PCAP_MAGIC_NANOSECONDS = 0xA1B23C4D
PCAPNG_SECTION_HEADER = 0x0A0D0D0A
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
PCAPNG_INTERFACE_DESCRIPTION = 1
PCAPNG_OBSOLETE_PACKET = 2
PCAPNG_SIMPLE_PACKET = 3
PCAPNG_ENHANCED_PACKET = 6
PCAPNG_OPTION_TSRESOL = 9

PCAP_GLOBAL_HEADER_LEN = 24
PCAP_RECORD_HEADER_LEN = 16
MAX_PACKET_LEN = 262_144  # libpcap's own bound on a snapshot length
# if_tsresol: ticks per second as 10^n or 2^n; beyond these the ticks no longer fit the int64
# arithmetic (and no clock ticks that fast)
MAX_TSRESOL_DECIMAL, MAX_TSRESOL_BINARY = 18, 62


class CaptureFileError(ValueError):
    """The file is not a pcap or pcapng capture we can read."""


@dataclass(frozen=True)
class PacketIndex:
    """Every packet of a capture, as parallel arrays over the mapped file `data`."""

    name: str
    data: np.ndarray  # uint8, the whole file
    offsets: np.ndarray  # int64: first captured octet
    captured: np.ndarray  # int64: captured length
    wire: np.ndarray  # int64: length on the wire
    ts_ns: np.ndarray  # int64: wall-clock time in ns
    linktypes: np.ndarray  # int32
    malformed: Counter  # kind -> count, for damage found while indexing

    def __len__(self) -> int:
        return len(self.offsets)

    def frame(self, index: int) -> memoryview:
        start = int(self.offsets[index])
        return memoryview(self.data)[start : start + int(self.captured[index])]  # type: ignore[arg-type]  # numpy declares ndarray.__buffer__ for Python >= 3.12 only


def index_capture(path: str | Path) -> PacketIndex:
    """Maps `path` and indexes its packets; raises CaptureFileError if it is no capture."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            size = path.stat().st_size
            if size < 12:
                raise CaptureFileError(f"{path}: too short to be a pcap or pcapng file ({size} octets)")
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise CaptureFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    data = np.frombuffer(mapped, dtype=np.uint8)
    magic_le = struct.unpack_from("<I", mapped, 0)[0]
    if magic_le == PCAPNG_SECTION_HEADER:
        return _index_pcapng(str(path), mapped, data)
    for order in "<>":
        magic = struct.unpack_from(order + "I", mapped, 0)[0]
        if magic in (PCAP_MAGIC_MICROSECONDS, PCAP_MAGIC_NANOSECONDS):
            return _index_pcap(str(path), mapped, data, order, magic == PCAP_MAGIC_NANOSECONDS)
    raise CaptureFileError(f"{path}: not a pcap or pcapng file (magic {magic_le:#010x})")


def _walk_records(mapped: mmap.mmap, order: str) -> list[int]:
    """Offsets of the record headers, each found from the previous one's captured length.
    Lengths are not checked here (the caller does it for all at once): the walk only has
    to end, and it does, as every step moves at least 16 octets forward."""
    end = len(mapped)
    offsets: list[int] = []
    keep = offsets.append
    position = PCAP_GLOBAL_HEADER_LEN
    if order == "<" and struct.pack("=I", 1) == struct.pack("<I", 1):
        # Native order: read the length through 32-bit views at the four alignments.
        whole = memoryview(mapped)
        words = [whole[shift : shift + (end - shift) // 4 * 4].cast("I") for shift in range(4)]
        try:
            while position + PCAP_RECORD_HEADER_LEN <= end:
                field = position + 8
                step = PCAP_RECORD_HEADER_LEN + words[field & 3][field >> 2]
                keep(position)
                position += step
        finally:
            for view in words:
                view.release()
            whole.release()
        return offsets
    record_len = struct.Struct(order + "I").unpack_from
    while position + PCAP_RECORD_HEADER_LEN <= end:
        keep(position)
        position += PCAP_RECORD_HEADER_LEN + record_len(mapped, position + 8)[0]
    return offsets


def _index_pcap(name: str, mapped: mmap.mmap, data: np.ndarray, order: str, nanoseconds: bool) -> PacketIndex:
    if len(mapped) < PCAP_GLOBAL_HEADER_LEN:
        raise CaptureFileError(f"{name}: truncated pcap file header")
    linktype = struct.unpack_from(order + "I", mapped, 20)[0] & 0xFFFF  # upper bits: FCS length
    malformed: Counter = Counter()
    headers = np.array(_walk_records(mapped, order), dtype=np.int64)
    # The walk trusted every length; the first impossible one ends the file here.
    captured = gather(data, headers + 8, order + "u4").astype(np.int64)
    bad = np.flatnonzero((captured > MAX_PACKET_LEN) | (headers + PCAP_RECORD_HEADER_LEN + captured > len(mapped)))
    if len(bad):
        malformed["bad-record-length" if captured[bad[0]] > MAX_PACKET_LEN else "truncated-record"] += 1
        headers = headers[: bad[0]]
    elif len(headers) and headers[-1] + PCAP_RECORD_HEADER_LEN + captured[-1] != len(mapped):
        malformed["truncated-record"] += 1  # a piece of a record header at the end
    elif not len(headers) and len(mapped) != PCAP_GLOBAL_HEADER_LEN:
        malformed["truncated-record"] += 1
    seconds, fraction, captured, wire = gather_rows(data, headers, 4, order + "u4").astype(np.int64).T
    ts_ns = seconds * 1_000_000_000 + (fraction if nanoseconds else fraction * 1000)
    return PacketIndex(
        name,
        data,
        headers + PCAP_RECORD_HEADER_LEN,
        captured,
        wire,
        ts_ns,
        np.full(len(headers), linktype, dtype=np.int32),
        malformed,
    )


@dataclass(slots=True)
class _Section:
    order: str
    interfaces: list[tuple[int, int, int]]  # (link type, snap length, ticks per second)
    packet_blocks: list[int]  # offsets of Enhanced and obsolete Packet blocks
    simple_blocks: list[int]  # offsets of Simple Packet blocks


def _index_pcapng(name: str, mapped: mmap.mmap, data: np.ndarray) -> PacketIndex:
    malformed: Counter = Counter()
    sections: list[_Section] = []
    end = len(mapped)
    position = 0
    section: _Section | None = None
    header = struct.Struct("<II")
    while position + 12 <= end:
        block_type, block_len = header.unpack_from(mapped, position)
        if block_type == PCAPNG_SECTION_HEADER:  # the same in both byte orders
            byte_order = struct.unpack_from("<I", mapped, position + 8)[0]
            order = "<" if byte_order == PCAPNG_BYTE_ORDER_MAGIC else ">"
            if struct.unpack_from(order + "I", mapped, position + 8)[0] != PCAPNG_BYTE_ORDER_MAGIC:
                if section is None:
                    raise CaptureFileError(f"{name}: pcapng section header without a byte-order magic")
                malformed["bad-block"] += 1
                break
            section = _Section(order, [], [], [])
            sections.append(section)
            header = struct.Struct(order + "II")
            block_len = header.unpack_from(mapped, position)[1]
        if section is None:
            raise CaptureFileError(f"{name}: pcapng file does not start with a section header")
        if block_len < 12 or block_len % 4 or position + block_len > end:
            malformed["bad-block-length" if position + block_len <= end else "truncated-block"] += 1
            break  # the next block's position is unknown
        if block_type in (PCAPNG_ENHANCED_PACKET, PCAPNG_OBSOLETE_PACKET):
            section.packet_blocks.append(position)
        elif block_type == PCAPNG_SIMPLE_PACKET:
            section.simple_blocks.append(position)
        elif block_type == PCAPNG_INTERFACE_DESCRIPTION:
            interface = _interface(mapped, position, block_len, section.order)
            if interface is None:
                malformed["bad-interface-block"] += 1
                interface = (-1, 0, 1_000_000)
            section.interfaces.append(interface)
        position += block_len
    else:
        if position != end:
            malformed["truncated-block"] += 1
    parts = [_section_packets(data, s, malformed) for s in sections]
    columns = [np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, np.int64) for i in range(5)]
    offsets, captured, wire, ts_ns, linktypes = columns
    return PacketIndex(name, data, offsets, captured, wire, ts_ns, linktypes.astype(np.int32), malformed)


def _interface(mapped: mmap.mmap, position: int, block_len: int, order: str) -> tuple[int, int, int] | None:
    """(link type, snap length, ticks per second) from an Interface Description Block."""
    if block_len < 20:
        return None
    linktype, _, snaplen = struct.unpack_from(order + "HHI", mapped, position + 8)
    ticks = 1_000_000  # if_tsresol absent: microseconds
    option = position + 16
    options_end = position + block_len - 4
    while option + 4 <= options_end:
        code, length = struct.unpack_from(order + "HH", mapped, option)
        if code == 0:
            break
        if option + 4 + length > options_end:
            return None
        if code == PCAPNG_OPTION_TSRESOL and length >= 1:
            resolution = mapped[option + 4]
            exponent = resolution & 0x7F
            if exponent > (MAX_TSRESOL_BINARY if resolution & 0x80 else MAX_TSRESOL_DECIMAL):
                return None  # finer than a 64-bit timestamp can count
            ticks = 2**exponent if resolution & 0x80 else 10**exponent
        option += 4 + (length + 3) // 4 * 4
    return linktype, snaplen, ticks


def _section_packets(data: np.ndarray, section: _Section, malformed: Counter) -> tuple[np.ndarray, ...]:
    """offsets, captured, wire, ts_ns, linktypes of one section's packets."""
    u32 = np.dtype(section.order + "u4")
    u16 = np.dtype(section.order + "u2")
    interfaces = section.interfaces or [(-1, 0, 1_000_000)]
    linktype_of = np.array([i[0] for i in interfaces], dtype=np.int64)
    ticks_of = np.array([i[2] for i in interfaces], dtype=np.int64)
    snaplen_of = np.array([i[1] or MAX_PACKET_LEN for i in interfaces], dtype=np.int64)

    blocks = np.array(section.packet_blocks, dtype=np.int64)
    block_len = gather(data, blocks + 4, u32).astype(np.int64)
    is_enhanced = gather(data, blocks, u32) == PCAPNG_ENHANCED_PACKET
    interface = np.where(
        is_enhanced, gather(data, blocks + 8, u32).astype(np.int64), gather(data, blocks + 8, u16).astype(np.int64)
    )
    ticks = (gather(data, blocks + 12, u32).astype(np.uint64) << np.uint64(32)) | gather(data, blocks + 16, u32)
    captured = gather(data, blocks + 20, u32).astype(np.int64)
    wire = gather(data, blocks + 24, u32).astype(np.int64)
    valid = (interface < len(interfaces)) & (captured + 32 <= block_len)
    malformed["bad-packet-block"] += int(np.count_nonzero(~valid))
    interface = np.where(valid, interface, 0)
    ts_ns = _ticks_to_ns(ticks, ticks_of[interface])

    simple = np.array(section.simple_blocks, dtype=np.int64)
    simple_len = gather(data, simple + 4, u32).astype(np.int64)
    simple_wire = gather(data, simple + 8, u32).astype(np.int64)
    simple_captured = np.minimum(simple_wire, snaplen_of[0])  # Simple blocks belong to interface 0
    simple_valid = simple_captured + 16 <= simple_len
    malformed["bad-packet-block"] += int(np.count_nonzero(~simple_valid))

    # Simple blocks carry no time; keep the packets in file order either way.
    offsets = np.concatenate([blocks[valid] + 28, simple[simple_valid] + 12])
    order = np.argsort(offsets, kind="stable")
    return (
        offsets[order],
        np.concatenate([captured[valid], simple_captured[simple_valid]])[order],
        np.concatenate([wire[valid], simple_wire[simple_valid]])[order],
        np.concatenate([ts_ns[valid], np.zeros(int(simple_valid.sum()), np.int64)])[order],
        np.concatenate([linktype_of[interface[valid]], np.full(int(simple_valid.sum()), linktype_of[0])])[order],
    )


def _ticks_to_ns(ticks: np.ndarray, per_second: np.ndarray) -> np.ndarray:
    """Timestamps in units of 1/per_second -> ns, exactly for the usual 10^-6 and 10^-9."""
    ts_ns = np.empty(len(ticks), dtype=np.int64)
    for rate in np.unique(per_second):
        chosen = per_second == rate
        rate = int(rate)
        if rate <= 1_000_000_000 and 1_000_000_000 % rate == 0:
            ts_ns[chosen] = ticks[chosen].astype(np.int64) * (1_000_000_000 // rate)
        else:  # finer than ns, or a power of two: whole seconds plus the rounded-down rest
            whole, rest = np.divmod(ticks[chosen], np.uint64(rate))
            ts_ns[chosen] = whole.astype(np.int64) * 1_000_000_000 + (rest.astype(np.float64) * (1e9 / rate)).astype(
                np.int64
            )
    return ts_ns


# -- link layer -> IP header -------------------------------------------------------------------

NOT_IP = -1


def locate_ip(index: PacketIndex) -> tuple[np.ndarray, Counter, Counter]:
    """For every packet, the offset of its IP header in `index.data`, or NOT_IP (-1) for
    packets that carry no IP (ARP, other link types) and link-layer headers cut short.
    Also returns what was skipped and what was malformed, by kind."""
    data = index.data
    offsets, captured, linktypes = index.offsets, index.captured, index.linktypes
    ip = np.full(len(offsets), NOT_IP, dtype=np.int64)
    skipped: Counter = Counter()
    be16 = np.dtype(">u2")

    raw = np.isin(linktypes, list(RAW_IP_LINKTYPES)) & (captured > 0)
    ip[raw] = offsets[raw]
    # (link type, header length, where the EtherType-like protocol field sits)
    for linktype, header_len, field in (
        (LINKTYPE_ETHERNET, 14, 12),
        (LINKTYPE_LINUX_SLL, 16, 14),
        (LINKTYPE_LINUX_SLL2, 20, 0),
    ):
        chosen = np.flatnonzero((linktypes == linktype) & (captured >= header_len))
        protocol = gather(data, offsets[chosen] + field, be16)
        is_ip = (protocol == ETHERTYPE_IPV6) | (protocol == ETHERTYPE_IPV4)
        ip[chosen[is_ip]] = offsets[chosen[is_ip]] + header_len
        if linktype == LINKTYPE_ETHERNET:  # VLAN tags: rare enough for the per-packet path
            for packet in chosen[np.isin(protocol, list(VLAN_ETHERTYPES))]:
                try:
                    found = ip_offset_in_ethernet(index.frame(packet))
                except MalformedPacket:
                    found = None
                if found is not None:
                    ip[packet] = offsets[packet] + found
    unsupported = ~np.isin(linktypes, list(SUPPORTED_LINKTYPES))
    short = ~unsupported & (ip == NOT_IP) & (captured < _link_header_len(linktypes))
    skipped["unsupported-linktype"] = int(np.count_nonzero(unsupported))
    skipped["not-ip"] = (
        int(np.count_nonzero(ip == NOT_IP)) - skipped["unsupported-linktype"] - int(np.count_nonzero(short))
    )
    malformed = Counter({"truncated-link-header": int(np.count_nonzero(short))})
    return ip, +skipped, +malformed


def _link_header_len(linktypes: np.ndarray) -> np.ndarray:
    lengths = np.ones(len(linktypes), dtype=np.int64)  # raw IP: at least the version octet
    lengths[linktypes == LINKTYPE_ETHERNET] = 14
    lengths[linktypes == LINKTYPE_LINUX_SLL] = 16
    lengths[linktypes == LINKTYPE_LINUX_SLL2] = 20
    return lengths


# -- a whole file -> flow records ----------------------------------------------------------------

CHUNK_PACKETS = 1 << 20  # bounds the memory of the column arrays; flows carry across chunks


@dataclass(frozen=True)
class CaptureFlows:
    """What reading a capture file gave."""

    records: list  # FlowRecord, finished when the file ended
    packets: int  # every packet in the file
    ip_packets: int  # packets dissected and aggregated
    skipped: Counter  # kind -> packets that carry no IP or use a link type we do not read
    malformed: Counter  # kind -> damaged records or packets (xnet_malformed_packets_total{protocol="pcap"})


def read_flows(
    path: str | Path,
    aggregator: FlowAggregator,
    *,
    per_packet: bool = False,
    slice_option_type: int = DEFAULT_SLICE_OPTION,
    observers: tuple = (),
) -> CaptureFlows:
    """Reads every packet of `path` into `aggregator` and ends its records at the end.

    The default path dissects with `dissect_batch` and aggregates with `add_batch`;
    `per_packet=True` uses `dissect_ip` and `add` for each packet instead (the reference).
    Each of `observers` gets `observe(ts_ns, packet, offset)` for every IP packet, in file
    order (passive TCP RTT, alternate marking); they make the read per-packet."""
    index = index_capture(path)
    ip, skipped, malformed = locate_ip(index)
    malformed.update(index.malformed)
    has_ip = np.flatnonzero(ip != NOT_IP)
    ip_lengths = index.offsets[has_ip] + index.captured[has_ip] - ip[has_ip]
    dissected = 0
    if per_packet or observers:
        view = memoryview(index.data)  # type: ignore[arg-type]  # numpy declares ndarray.__buffer__ for Python >= 3.12 only
        for row, start, length in zip(has_ip.tolist(), ip[has_ip].tolist(), ip_lengths.tolist()):
            packet = view[start : start + length]
            ts_ns = int(index.ts_ns[row])
            for observer in observers:
                observer.observe(ts_ns, packet, 0)
            try:
                fields = dissect_ip(packet, slice_option_type=slice_option_type)
            except MalformedPacket as exc:
                malformed[malformed_kind(exc)] += 1
                continue
            aggregator.add(ts_ns, fields)
            dissected += 1
    else:
        for begin in range(0, len(has_ip), CHUNK_PACKETS):
            rows = has_ip[begin : begin + CHUNK_PACKETS]
            batch = dissect_batch(
                index.data, ip[rows], ip_lengths[begin : begin + CHUNK_PACKETS], slice_option_type=slice_option_type
            )
            aggregator.add_batch(index.ts_ns[rows][batch.kept], batch)
            malformed.update(batch.malformed)
            dissected += len(batch.kept)
    return CaptureFlows(aggregator.flush(), len(index), dissected, +skipped, +malformed)
