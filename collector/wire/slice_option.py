"""The slice ID option: the design's 32-bit slice/NRP ID, carried in a Hop-by-Hop Options
header (RFC 8200 section 4.3) beside the RFC 9343 alternate-marking option when marking is
configured with a slice ID, and in the agents' probes of a slice that has one.

Layout (one definition, read by `collector.wire.dissect` and written by the ingress marker
and the probes): option type (0x1E by default; configurable, no IANA code point exists: its
top bits 00 tell a node that does not know it to skip it, its third bit 0 that it does not
change en route), option data length 4, the slice ID as an unsigned 32-bit big-endian
integer. Its data sits at 4n+2 behind the alternate-marking option (2 + 6 octets) and so
at the 4-octet alignment a 32-bit field wants.
"""

from __future__ import annotations

from collector.wire.ipv6_ext import HOP_BY_HOP, MalformedPacket, options_header

DEFAULT_SLICE_OPTION = 0x1E
SLICE_ID_LEN = 4
MAX_SLICE_ID = (1 << 32) - 1


def encode_slice_option(slice_id: int, option_type: int = DEFAULT_SLICE_OPTION) -> bytes:
    """The option's 6 octets: type, length, slice ID."""
    if not 0 <= slice_id <= MAX_SLICE_ID:
        raise ValueError(f"a slice ID is a 32-bit number, got {slice_id}")
    if not 2 <= option_type <= 0xFF:  # 0 and 1 are Pad1 and PadN
        raise ValueError(f"option type must be 2..255, got {option_type}")
    return bytes((option_type, SLICE_ID_LEN)) + slice_id.to_bytes(SLICE_ID_LEN, "big")


def decode_slice_id(data: bytes | memoryview) -> int:
    """The slice ID from the option's data."""
    if len(data) != SLICE_ID_LEN:
        raise MalformedPacket(f"slice-ID option of {len(data)} octets, expected {SLICE_ID_LEN}")
    return int.from_bytes(data, "big")


def slice_hop_by_hop(slice_id: int, option_type: int = DEFAULT_SLICE_OPTION) -> bytes:
    """A Hop-by-Hop header holding only the option (8 octets), as a socket's IPV6_HOPOPTS
    takes it: the kernel fills in the Next Header."""
    return options_header(HOP_BY_HOP, [encode_slice_option(slice_id, option_type)])
