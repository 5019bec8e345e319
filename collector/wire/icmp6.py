"""ICMPv6 Echo Request/Reply and the error messages that quote them (RFC 4443): bytes <-> dataclasses.

Pure codec, no sockets. What a socket hands us starts at the ICMPv6 header: raw IPv6
sockets never include the IPv6 header (RFC 3542 section 3), and neither do ping sockets.

Our echo payload opens with a magic and a per-run cookie, so that replies to another
program's pings (a raw socket sees every echo reply of the host) are told apart from ours
by content, not only by the 16-bit identifier.

Checksums: the kernel computes and verifies the ICMPv6 checksum for ping sockets and for
raw ICMPv6 sockets alike (RFC 3542 section 3.1); `checksum` is here for packets built
outside a socket (tests, captures) and to verify what a capture shows.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

ECHO_REQUEST = 128
ECHO_REPLY = 129
DESTINATION_UNREACHABLE = 1
PACKET_TOO_BIG = 2
TIME_EXCEEDED = 3
PARAMETER_PROBLEM = 4
ERROR_TYPES = frozenset((DESTINATION_UNREACHABLE, PACKET_TOO_BIG, TIME_EXCEEDED, PARAMETER_PROBLEM))
NEXT_HEADER_ICMPV6 = 58

HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
HEADER_LEN = HEADER.size  # 8
IPV6_HEADER_LEN = 40
ERROR_HEADER_LEN = 8  # type, code, checksum, then 4 octets (MTU, pointer or unused)
MAGIC = b"xNM6"
COOKIE = struct.Struct("!4sI")  # magic, per-run cookie
COOKIE_LEN = COOKIE.size  # 8: the smallest payload we send
_ERROR_WORD = struct.Struct("!I")
_IPV6_FIXED = struct.Struct("!IHBB16s16s")  # version/class/label, payload length, next header, hop limit, src, dst
# Extension headers we step over to reach a quoted echo: Hop-by-Hop, Routing, Destination Options.
_SKIPPABLE_EXTENSIONS = frozenset((0, 43, 60))

_ERROR_NAMES = {
    (DESTINATION_UNREACHABLE, 0): "no route to destination",
    (DESTINATION_UNREACHABLE, 1): "administratively prohibited",
    (DESTINATION_UNREACHABLE, 2): "beyond scope of source address",
    (DESTINATION_UNREACHABLE, 3): "address unreachable",
    (DESTINATION_UNREACHABLE, 4): "port unreachable",
    (DESTINATION_UNREACHABLE, 5): "source address failed ingress/egress policy",
    (DESTINATION_UNREACHABLE, 6): "reject route to destination",
    (PACKET_TOO_BIG, 0): "packet too big",
    (TIME_EXCEEDED, 0): "hop limit exceeded in transit",
    (TIME_EXCEEDED, 1): "fragment reassembly time exceeded",
    (PARAMETER_PROBLEM, 0): "erroneous header field",
    (PARAMETER_PROBLEM, 1): "unrecognized next header",
    (PARAMETER_PROBLEM, 2): "unrecognized IPv6 option",
}


class Icmp6DecodeError(ValueError):
    """Octets that are not the ICMPv6 message expected. `kind` is a short, stable label
    for the malformed-packet counter; every parser here raises only this."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Echo:
    """An Echo Request (type 128) or Echo Reply (type 129)."""

    type: int
    identifier: int
    sequence: int
    payload: bytes
    code: int = 0
    checksum: int = 0  # as received; 0 in packets the kernel checksums for us

    @property
    def is_reply(self) -> bool:
        return self.type == ECHO_REPLY


@dataclass(frozen=True, slots=True)
class QuotedEcho:
    """An ICMPv6 error and the echo request of ours it quotes (RFC 4443 section 2.4 (c))."""

    type: int
    code: int
    source: bytes  # packed: the quoted request's source (us)
    destination: bytes  # packed: where the quoted request was going
    echo: Echo  # its payload may be cut short by the error's size limit

    def describe(self) -> str:
        return error_name(self.type, self.code)


def error_name(icmp_type: int, code: int) -> str:
    return _ERROR_NAMES.get((icmp_type, code), f"ICMPv6 type {icmp_type} code {code}")


# -- building --------------------------------------------------------------------------------


def make_payload(cookie: int, size: int) -> bytes:
    """`size` octets that open with our magic and the run's cookie, then a fixed pattern
    (as iputils ping fills its data, so a capture shows where padding starts)."""
    if size < COOKIE_LEN:
        raise ValueError(f"payload size {size} is below the {COOKIE_LEN} octets of magic and cookie")
    fill = bytes(i & 0xFF for i in range(size - COOKIE_LEN))
    return COOKIE.pack(MAGIC, cookie & 0xFFFFFFFF) + fill


def has_cookie(payload: bytes, cookie: int) -> bool:
    return len(payload) >= COOKIE_LEN and payload[:4] == MAGIC and COOKIE.unpack_from(payload)[1] == cookie


def encode_echo(echo: Echo, source: bytes | None = None, destination: bytes | None = None) -> bytes:
    """The message's octets; with both packed addresses the checksum is filled in, else 0."""
    if not 0 <= echo.identifier <= 0xFFFF or not 0 <= echo.sequence <= 0xFFFF:
        raise ValueError("identifier and sequence are 16-bit")
    octets = HEADER.pack(echo.type, echo.code, 0, echo.identifier, echo.sequence) + echo.payload
    if source is not None and destination is not None:
        value = checksum(source, destination, octets)
        octets = octets[:2] + value.to_bytes(2, "big") + octets[4:]
    return octets


def echo_request(identifier: int, sequence: int, payload: bytes) -> bytes:
    """An Echo Request for a socket that checksums it (ping or raw ICMPv6)."""
    return encode_echo(Echo(ECHO_REQUEST, identifier, sequence, payload))


def checksum(source: bytes, destination: bytes, message: bytes) -> int:
    """RFC 4443 section 2.3: one's complement sum over the pseudo-header of RFC 8200
    section 8.1 (source, destination, upper-layer length, next header 58) and the message,
    whose checksum field must be zero, or be the received value for a verification
    (a correct message then sums to 0)."""
    if len(source) != 16 or len(destination) != 16:
        raise ValueError("addresses must be packed IPv6 (16 octets)")
    pseudo = source + destination + struct.pack("!IxxxB", len(message), NEXT_HEADER_ICMPV6)
    data = pseudo + message
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def checksum_ok(source: bytes, destination: bytes, message: bytes) -> bool:
    return checksum(source, destination, message) == 0


# -- parsing ---------------------------------------------------------------------------------


def decode_echo(data: bytes) -> Echo:
    """An Echo Request or Reply; anything else raises Icmp6DecodeError."""
    if len(data) < HEADER_LEN:
        raise Icmp6DecodeError("short", f"{len(data)} octets, an echo message has at least {HEADER_LEN}")
    icmp_type, code, check, identifier, sequence = HEADER.unpack_from(data)
    if icmp_type not in (ECHO_REQUEST, ECHO_REPLY):
        raise Icmp6DecodeError("not-echo", f"ICMPv6 type {icmp_type}")
    if code != 0:
        raise Icmp6DecodeError("bad-code", f"echo with code {code}")
    return Echo(icmp_type, identifier, sequence, bytes(data[HEADER_LEN:]), code, check)


def decode_error(data: bytes) -> QuotedEcho:
    """An ICMPv6 error message whose quoted packet is an echo request; anything else
    (another message type, a quoted packet of another protocol, a truncated quote) raises."""
    if len(data) < ERROR_HEADER_LEN:
        raise Icmp6DecodeError("short", f"{len(data)} octets, an error message has at least {ERROR_HEADER_LEN}")
    icmp_type, code = data[0], data[1]
    if icmp_type not in ERROR_TYPES:
        raise Icmp6DecodeError("not-error", f"ICMPv6 type {icmp_type}")
    quoted = data[ERROR_HEADER_LEN:]
    if len(quoted) < IPV6_HEADER_LEN:
        raise Icmp6DecodeError("short-quote", f"quoted packet of {len(quoted)} octets has no IPv6 header")
    first_word, _length, next_header, _hop_limit, source, destination = _IPV6_FIXED.unpack_from(quoted)
    if first_word >> 28 != 6:
        raise Icmp6DecodeError("bad-quote", f"quoted packet has IP version {first_word >> 28}")
    offset = IPV6_HEADER_LEN
    while next_header in _SKIPPABLE_EXTENSIONS:
        if len(quoted) < offset + 2:
            raise Icmp6DecodeError("short-quote", "quoted extension header cut short")
        next_header = quoted[offset]
        offset += (quoted[offset + 1] + 1) * 8
    if next_header != NEXT_HEADER_ICMPV6:
        raise Icmp6DecodeError("not-echo", f"quoted packet carries next header {next_header}")
    echo = decode_echo(quoted[offset:])
    if echo.type != ECHO_REQUEST:
        raise Icmp6DecodeError("not-echo", "quoted ICMPv6 message is not an echo request")
    return QuotedEcho(icmp_type, code, bytes(source), bytes(destination), echo)
