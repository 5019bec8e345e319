"""Walk the IPv6 extension-header chain (RFC 8200) to the upper-layer header.

`walk_extension_headers` starts at an IPv6 header and follows Next Header through
Hop-by-Hop Options (0), Routing (43, with the Segment Routing Header of RFC 8754 read
into its segment list), Fragment (44), Destination Options (60), Authentication Header
(51, RFC 4302: its length counts 4-octet units) and the other headers RFC 7045 lists with
the generic layout (Mobility, HIP, Shim6, the experimental 253/254). It stops at the
first upper-layer protocol, at ESP (50: what follows is encrypted), at No Next Header (59)
and at a fragment other than the first, whose upper-layer header travels in another
packet: there the chain reports protocol 44 and points at the fragment's data.

Choices:
- Only the RFC 8200 rule receivers can check is enforced: Hop-by-Hop comes right after
  the IPv6 header. Any other order is accepted, as the RFC asks receivers to.
- Options come back as (type, data) with Pad1 and PadN left out; the type byte is kept
  whole (action and change bits included), so the alternate-marking option is 0x12.
- Every length is checked against the buffer, and the walk gives up after
  `MAX_EXTENSION_HEADERS`, so a hostile packet costs bounded work. The IPv6 payload
  length bounds the walk when it is shorter than the buffer (Ethernet padding) and is
  ignored when longer (a capture cut at a snap length still has its headers).
- Nothing is copied except option data and segments, which the caller keeps.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

HOP_BY_HOP = 0
ROUTING = 43
FRAGMENT = 44
ESP = 50
AUTHENTICATION = 51
NO_NEXT_HEADER = 59
DESTINATION_OPTIONS = 60
# RFC 7045 extension headers that share the generic layout (next header, length in 8 octets)
_GENERIC_HEADERS = frozenset({135, 139, 140, 253, 254})
# Next Header values after which another IPv6 header follows: a packet whose fixed header
# names none of these has its upper layer at offset 40 and needs no walk
EXTENSION_HEADERS = frozenset({HOP_BY_HOP, ROUTING, FRAGMENT, AUTHENTICATION, DESTINATION_OPTIONS}) | _GENERIC_HEADERS

ROUTING_TYPE_SRH = 4
PAD1 = 0
PADN = 1
MAX_EXTENSION_HEADERS = 16  # far above any real chain; bounds the work per packet
IPV6_HEADER_LEN = 40

_SEGMENT_LEN = 16
_SRH_FIXED_LEN = 8
_FRAGMENT_LEN = 8


def options_header(next_header: int, options: Sequence[bytes]) -> bytes:
    """A Hop-by-Hop or Destination Options header (RFC 8200 sections 4.3, 4.6) holding
    `options` (each encoded whole: type, length, data) in order, padded with Pad1 or PadN to
    a multiple of 8 octets; `next_header` is the header that follows it."""
    body = b"".join(options)
    pad = -(2 + len(body)) % 8
    padding = bytes((PAD1,)) if pad == 1 else bytes((PADN, pad - 2)) + bytes(pad - 2) if pad else b""
    return bytes((next_header, (2 + len(body) + pad) // 8 - 1)) + body + padding


class MalformedPacket(ValueError):
    """The packet is truncated or a length or field in it is impossible."""


@dataclass(frozen=True, slots=True)
class ExtensionChain:
    upper_protocol: int
    upper_offset: int
    hop_by_hop: tuple[tuple[int, bytes], ...]  # (option type, option data), Pad1/PadN left out
    destination: tuple[tuple[int, bytes], ...]  # from every Destination Options header
    segments: tuple[bytes, ...]  # SRH segment list as on the wire (16 octets each), () without SRH
    segments_left: int  # the SRH's Segments Left; 0 without SRH
    fragment: bool


def walk_extension_headers(packet: bytes | memoryview, offset: int = 0) -> ExtensionChain:
    """Follow the chain of the IPv6 packet that starts at `offset`."""
    view = memoryview(packet)
    if offset < 0 or len(view) < offset + IPV6_HEADER_LEN:
        raise MalformedPacket("truncated IPv6 header")
    if view[offset] >> 4 != 6:
        raise MalformedPacket("not an IPv6 header")
    payload_length = struct.unpack_from("!H", view, offset + 4)[0]
    end = len(view)
    if payload_length and offset + IPV6_HEADER_LEN + payload_length < end:
        end = offset + IPV6_HEADER_LEN + payload_length
    next_header = view[offset + 6]
    position = offset + IPV6_HEADER_LEN
    hop_by_hop: tuple[tuple[int, bytes], ...] = ()
    destination: list[tuple[int, bytes]] = []
    segments: tuple[bytes, ...] = ()
    segments_left = 0
    fragment = False

    for count in range(MAX_EXTENSION_HEADERS + 1):
        if next_header == HOP_BY_HOP and count != 0:
            raise MalformedPacket("Hop-by-Hop Options header not first")
        if next_header in (HOP_BY_HOP, DESTINATION_OPTIONS, ROUTING) or next_header in _GENERIC_HEADERS:
            header_end = _header_end(view, position, end, unit=8, extra=1)
        elif next_header == AUTHENTICATION:
            header_end = _header_end(view, position, end, unit=4, extra=2)
        elif next_header == FRAGMENT:
            header_end = position + _FRAGMENT_LEN
            if header_end > end:
                raise MalformedPacket("truncated Fragment header")
        else:
            return ExtensionChain(
                next_header, position, hop_by_hop, tuple(destination), segments, segments_left, fragment
            )
        if count == MAX_EXTENSION_HEADERS:
            break

        if next_header == HOP_BY_HOP:
            hop_by_hop = _options(view, position + 2, header_end)
        elif next_header == DESTINATION_OPTIONS:
            destination.extend(_options(view, position + 2, header_end))
        elif next_header == ROUTING and view[position + 2] == ROUTING_TYPE_SRH:
            segments, segments_left = _segment_routing_header(view, position, header_end)
        elif next_header == FRAGMENT:
            fragment = True
            fragment_offset = struct.unpack_from("!H", view, position + 2)[0] >> 3
            if fragment_offset:
                # the upper-layer header is in the first fragment, not here
                return ExtensionChain(
                    FRAGMENT, header_end, hop_by_hop, tuple(destination), segments, segments_left, fragment
                )
        next_header = view[position]
        position = header_end
    raise MalformedPacket(f"more than {MAX_EXTENSION_HEADERS} extension headers")


def _header_end(view: memoryview, position: int, end: int, *, unit: int, extra: int) -> int:
    """End of a header whose second octet is its length in `unit`s, not counting `extra`."""
    if position + 2 > end:
        raise MalformedPacket("truncated extension header")
    header_end = position + (view[position + 1] + extra) * unit
    if header_end > end:
        raise MalformedPacket("extension header longer than the packet")
    return header_end


def _options(view: memoryview, position: int, end: int) -> tuple[tuple[int, bytes], ...]:
    """The TLV options between `position` and `end`, padding left out."""
    options = []
    while position < end:
        option_type = view[position]
        if option_type == PAD1:
            position += 1
            continue
        if position + 2 > end:
            raise MalformedPacket("truncated option")
        data_end = position + 2 + view[position + 1]
        if data_end > end:
            raise MalformedPacket("option longer than its header")
        if option_type != PADN:
            options.append((option_type, bytes(view[position + 2 : data_end])))
        position = data_end
    return tuple(options)


def _segment_routing_header(view: memoryview, position: int, end: int) -> tuple[tuple[bytes, ...], int]:
    """The segment list and Segments Left of an SRH (RFC 8754 section 2)."""
    if end - position < _SRH_FIXED_LEN:
        raise MalformedPacket("truncated Segment Routing Header")
    segments_left = view[position + 3]
    last_entry = view[position + 4]
    list_start = position + _SRH_FIXED_LEN
    list_end = list_start + (last_entry + 1) * _SEGMENT_LEN
    if list_end > end:
        raise MalformedPacket("SRH segment list longer than the header")
    if segments_left > last_entry + 1:
        raise MalformedPacket("SRH Segments Left beyond the segment list")
    segments = tuple(bytes(view[start : start + _SEGMENT_LEN]) for start in range(list_start, list_end, _SEGMENT_LEN))
    return segments, segments_left
