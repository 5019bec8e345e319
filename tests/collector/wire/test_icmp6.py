"""ICMPv6 echo codec against scapy, the independent implementation: bytes, checksums, errors."""

from __future__ import annotations

import socket

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrHopByHop,
)

from collector.wire.icmp6 import (
    COOKIE_LEN,
    ECHO_REPLY,
    ECHO_REQUEST,
    Echo,
    Icmp6DecodeError,
    checksum,
    checksum_ok,
    decode_echo,
    decode_error,
    echo_request,
    encode_echo,
    has_cookie,
    make_payload,
)

SRC, DST = "fd00:cafe::1", "fd00:cafe::2"
PSRC, PDST = socket.inet_pton(socket.AF_INET6, SRC), socket.inet_pton(socket.AF_INET6, DST)


def scapy_icmp(layer) -> bytes:
    """The ICMPv6 octets scapy builds (checksum included) under an IPv6 header."""
    return bytes(IPv6(src=SRC, dst=DST) / layer)[40:]


@pytest.mark.parametrize("size", [8, 56, 57, 1452])  # odd sizes exercise the checksum's padding
def test_echo_request_matches_scapy_bytes_and_checksum(size):
    payload = make_payload(0xDEADBEEF, size)
    ours = encode_echo(Echo(ECHO_REQUEST, 0x1234, 0xBEEF, payload), PSRC, PDST)
    assert ours == scapy_icmp(ICMPv6EchoRequest(id=0x1234, seq=0xBEEF, data=payload))
    assert checksum_ok(PSRC, PDST, ours)


def test_echo_reply_matches_scapy_and_parses_back():
    payload = make_payload(7, 56)
    theirs = scapy_icmp(ICMPv6EchoReply(id=42, seq=3, data=payload))
    assert encode_echo(Echo(ECHO_REPLY, 42, 3, payload), PSRC, PDST) == theirs
    echo = decode_echo(theirs)
    assert (echo.type, echo.identifier, echo.sequence, echo.payload) == (ECHO_REPLY, 42, 3, payload)
    assert echo.is_reply and echo.checksum == int.from_bytes(theirs[2:4], "big")
    assert ICMPv6EchoReply(theirs).cksum == echo.checksum


def test_request_for_a_socket_leaves_the_checksum_to_the_kernel():
    octets = echo_request(1, 2, make_payload(3, 16))
    assert octets[2:4] == b"\0\0"
    parsed = ICMPv6EchoRequest(octets)
    assert (parsed.type, parsed.id, parsed.seq, bytes(parsed.data)) == (128, 1, 2, make_payload(3, 16))


def test_a_corrupted_message_fails_the_checksum():
    good = scapy_icmp(ICMPv6EchoReply(id=1, seq=1, data=b"x" * 20))
    assert checksum_ok(PSRC, PDST, good)
    bad = good[:10] + bytes([good[10] ^ 1]) + good[11:]
    assert not checksum_ok(PSRC, PDST, bad)
    assert checksum(PSRC, PDST, good[:2] + b"\0\0" + good[4:]) == int.from_bytes(good[2:4], "big")


def test_cookie_is_the_payload_prefix():
    payload = make_payload(0xCAFE, 56)
    assert len(payload) == 56 and has_cookie(payload, 0xCAFE)
    assert not has_cookie(payload, 0xCAFF)
    assert not has_cookie(payload[: COOKIE_LEN - 1], 0xCAFE)
    assert not has_cookie(b"\0" * 56, 0)  # ping's own payload is not ours
    with pytest.raises(ValueError, match="below the 8 octets"):
        make_payload(1, COOKIE_LEN - 1)


@pytest.mark.parametrize(
    "layer, kind, description",
    [
        (ICMPv6DestUnreach(code=3), 1, "address unreachable"),
        (ICMPv6DestUnreach(code=0), 1, "no route to destination"),
        (ICMPv6TimeExceeded(code=0), 3, "hop limit exceeded in transit"),
    ],
)
def test_error_quoting_our_request_is_matched_to_it(layer, kind, description):
    request = IPv6(src=DST, dst="fd00:beef::9") / ICMPv6EchoRequest(id=99, seq=5, data=make_payload(1, 56))
    error = decode_error(scapy_icmp(layer / request))
    assert (error.type, error.describe()) == (kind, description)
    assert error.destination == socket.inet_pton(socket.AF_INET6, "fd00:beef::9")
    assert error.source == PDST
    assert (error.echo.identifier, error.echo.sequence) == (99, 5)
    assert has_cookie(error.echo.payload, 1)


def test_error_quote_behind_a_hop_by_hop_header_is_found():
    request = IPv6(src=SRC, dst=DST) / IPv6ExtHdrHopByHop() / ICMPv6EchoRequest(id=4, seq=6)
    error = decode_error(scapy_icmp(ICMPv6TimeExceeded() / request))
    assert (error.echo.identifier, error.echo.sequence) == (4, 6)


def test_error_about_another_protocol_is_not_ours():
    quoted = IPv6(src=SRC, dst=DST) / UDP(sport=1, dport=2)
    with pytest.raises(Icmp6DecodeError) as info:
        decode_error(scapy_icmp(ICMPv6DestUnreach(code=4) / quoted))
    assert info.value.kind == "not-echo"


@pytest.mark.parametrize(
    "octets, kind",
    [
        (b"", "short"),
        (b"\x81\x00\x00", "short"),
        (bytes([135, 0, 0, 0, 0, 0, 0, 0]), "not-echo"),  # a neighbour solicitation
        (bytes([129, 1, 0, 0, 0, 0, 0, 0]), "bad-code"),
    ],
)
def test_malformed_echo_raises_the_one_error_type(octets, kind):
    with pytest.raises(Icmp6DecodeError) as info:
        decode_echo(octets)
    assert info.value.kind == kind and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "octets, kind",
    [
        (bytes([1, 3, 0, 0]), "short"),
        (bytes([129, 0, 0, 0, 0, 0, 0, 0]), "not-error"),
        (bytes([1, 3, 0, 0, 0, 0, 0, 0]) + b"\x60" + b"\0" * 20, "short-quote"),
        (bytes([1, 3, 0, 0, 0, 0, 0, 0]) + b"\x45" + b"\0" * 60, "bad-quote"),  # an IPv4 header
    ],
)
def test_malformed_error_raises_the_one_error_type(octets, kind):
    with pytest.raises(Icmp6DecodeError) as info:
        decode_error(octets)
    assert info.value.kind == kind


def test_out_of_range_fields_are_refused():
    with pytest.raises(ValueError):
        encode_echo(Echo(ECHO_REQUEST, 0x10000, 0, b""))
    with pytest.raises(ValueError):
        checksum(b"\0" * 4, PDST, b"")
