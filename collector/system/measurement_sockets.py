"""Datagram sockets for measurement (UDP, ICMPv6 ping sockets): kernel receive timestamps, hop limit and
traffic class of each datagram, per-packet traffic class on send, and IPv6 flow labels.

Linux-specific socket options that Python's `socket` module does not name are spelled out
here once, with their values from the kernel headers.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
IPV6_RECVTCLASS = getattr(socket, "IPV6_RECVTCLASS", 66)
IPV6_TCLASS = getattr(socket, "IPV6_TCLASS", 67)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
IPV6_FLOWLABEL_MGR = 32  # linux/in6.h
IPV6_FLOWINFO_SEND = 33
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IP_TTL = socket.IP_TTL
IP_RECVTOS = getattr(socket, "IP_RECVTOS", 13)
IP_TOS = socket.IP_TOS
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)

# struct in6_flowlabel_req: dst and label in network order, then host-order fields
# action, share, flags, expires, linger, pad.
_FLOWLABEL_DST_LABEL = struct.Struct("!16sI")
_FLOWLABEL_REST = struct.Struct("=BBHHHI")
_IPV6_FL_A_GET = 0
IPV6_FL_S_EXCL = 1  # the label belongs to one socket
IPV6_FL_S_USER = 3  # any socket of the same effective user may lease it too
_IPV6_FL_F_CREATE = 1
_TIMESPEC = struct.Struct("@qq")
_INT = struct.Struct("@i")
ANCILLARY_SPACE = 256  # room for a timestamp, hop limit, traffic class and packet info
FLOW_LABEL_MASK = 0xFFFFF


@dataclass(frozen=True, slots=True)
class DatagramMeta:
    """What the kernel told us about one received datagram."""

    kernel_ns: int | None  # SO_TIMESTAMPNS receive time (CLOCK_REALTIME), None if absent
    hop_limit: int | None
    traffic_class: int | None  # the whole octet: DSCP << 2 | ECN
    destination: bytes | None  # packed local address it was sent to (IPV6_PKTINFO/IP_PKTINFO)

    @property
    def dscp(self) -> int | None:
        return None if self.traffic_class is None else self.traffic_class >> 2

    @property
    def ecn(self) -> int | None:
        return None if self.traffic_class is None else self.traffic_class & 0x3


def family_of(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address.split("%")[0]).version == 6 else socket.AF_INET


def enable_receive_metadata(sock: socket.socket, *, packet_info: bool = False) -> None:
    """Ask the kernel for a receive timestamp, hop limit / TTL and traffic class / TOS."""
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVTCLASS, 1)
        if packet_info:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
        if packet_info:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)


def parse_ancillary(ancdata: list[tuple[int, int, bytes]]) -> DatagramMeta:
    return DatagramMeta(*ancillary_fields(ancdata))


def ancillary_fields(
    ancdata: Iterable[tuple[int, int, bytes | memoryview]],
) -> tuple[int | None, int | None, int | None, bytes | None]:
    """(kernel receive ns, hop limit, traffic class, destination) without building an object,
    for the reflector's per-datagram path."""
    kernel_ns = hop_limit = traffic_class = None
    destination = None
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            kernel_ns = seconds * 1_000_000_000 + nanoseconds
        elif level == socket.IPPROTO_IPV6:
            if kind == IPV6_HOPLIMIT:
                hop_limit = _INT.unpack_from(data)[0]
            elif kind == IPV6_TCLASS:
                traffic_class = _INT.unpack_from(data)[0]
            elif kind == IPV6_PKTINFO:
                destination = bytes(data[:16])
        elif level == socket.IPPROTO_IP:
            if kind == IP_TTL:
                hop_limit = _INT.unpack_from(data)[0] if len(data) >= 4 else data[0]
            elif kind == IP_TOS:
                traffic_class = data[0]
            elif kind == IP_PKTINFO:
                destination = bytes(data[8:12])  # struct in_pktinfo: ifindex, spec_dst, addr
    return kernel_ns, hop_limit, traffic_class, destination


_CMSG_HEADER_FORMAT = "Qii"  # cmsg_len, cmsg_level, cmsg_type (LP64)
_CMSG_HEADER = struct.Struct("@" + _CMSG_HEADER_FORMAT)
LAYOUT_CACHE_SIZE = 16  # control-data layouts remembered per reader; a socket shows one or two


class _Layout(NamedTuple):
    """How to read one arrangement of control items: two formats over the same octets, one that
    yields only the item headers and one that yields only the fields."""

    headers: str  # the (len, level, type) of every item, checked against `expected`
    fields: str
    size: int  # octets both formats cover
    expected: tuple
    # Where the fields' values hold each field, or None: the receive time's seconds (its
    # nanoseconds follow), hop limit, traffic class, destination address.
    seconds: int | None
    hop: int | None
    traffic_class: int | None
    destination: int | None


class AncillaryReader:
    """`ancillary_fields` on raw control data as recvmmsg(2) leaves it, for a hot loop.

    A socket's options fix which items the kernel writes and in what order, so the walk
    over the items is done once per layout (known by the data's length); afterwards a burst
    whose control data all have that length is read with two `iter_unpack`s, one of every
    area's item headers, compared with the layout's at once, and one of their fields. An
    area whose headers differ (another arrangement of the same length) is walked item by item.
    """

    def __init__(self) -> None:
        self._layouts: dict[int, _Layout] = {}
        # (length, stride) -> the layout's two formats padded to the stride
        self._strided: dict[tuple[int, int], tuple[struct.Struct, struct.Struct]] = {}

    def fields(
        self, data: memoryview, offset: int, length: int
    ) -> tuple[int | None, int | None, int | None, bytes | None]:
        return self.burst(data[offset : offset + length], length, [length])[0]

    def burst(
        self, data: memoryview, stride: int, lengths: list[int]
    ) -> list[tuple[int | None, int | None, int | None, bytes | None]]:
        """`fields` of consecutive control areas: the i-th starts at i * stride, lengths[i] long."""
        count = len(lengths)
        if not count:
            return []
        length = lengths[0]
        if lengths.count(length) != count:  # mixed lengths: each is a burst of one
            return [self.fields(data, i * stride, n) for i, n in enumerate(lengths)]
        layout = self._layouts.get(length) or self._learn(data, 0, length)
        if layout is None:
            return [ancillary_fields(_items(data, i * stride, length)) for i in range(count)]
        strided = self._strided.get((length, stride))
        if strided is None:
            pad = f"{stride - layout.size}x"
            strided = self._strided[length, stride] = (
                struct.Struct(layout.headers + pad),
                struct.Struct(layout.fields + pad),
            )
        window = data[: count * stride]
        headers = list(strided[0].iter_unpack(window))
        seconds, hop, traffic_class, destination = layout[4:]
        read = [
            (
                None if seconds is None else values[seconds] * 1_000_000_000 + values[seconds + 1],
                None if hop is None else values[hop],
                None if traffic_class is None else values[traffic_class],
                None if destination is None else values[destination],
            )
            for values in strided[1].iter_unpack(window)
        ]
        expected = layout.expected
        if headers != [expected] * count:
            read = [
                fields if found == expected else ancillary_fields(_items(data, i * stride, length))
                for i, (found, fields) in enumerate(zip(headers, read, strict=True))
            ]
        return read

    def _learn(self, data: memoryview, offset: int, length: int) -> _Layout | None:
        """The layout of these items, remembered; None when there are none, when they overrun
        the data, or when one is of an unusual size or repeated."""
        header_format = ["="]
        field_format = ["="]
        expected: list[int] = []
        wanted: dict[str, int] = {}
        count = 0  # values the field format yields so far
        position = 0
        while position + _CMSG_HEADER.size <= length:
            cmsg_len, level, kind = _CMSG_HEADER.unpack_from(data, offset + position)
            if cmsg_len < _CMSG_HEADER.size or position + cmsg_len > length:
                return None
            expected += [cmsg_len, level, kind]
            header_format.append(_CMSG_HEADER_FORMAT)
            field_format.append(f"{_CMSG_HEADER.size}x")
            size = cmsg_len - _CMSG_HEADER.size
            known = _KNOWN_ITEMS.get((level, kind))
            if known is None:
                field_format.append(f"{size}x")
            else:
                name, usual_size, item_format, values = known
                if size != usual_size or name in wanted:  # odd items are for the item-by-item walk
                    return None
                wanted[name] = count
                field_format.append(item_format)
                count += values
            header_format.append(f"{size}x")
            padded = min((cmsg_len + 7) & ~7, length - position)
            if padded > cmsg_len:
                header_format.append(f"{padded - cmsg_len}x")
                field_format.append(f"{padded - cmsg_len}x")
            position += padded
        if not expected:
            return None
        headers = "".join(header_format)
        layout = _Layout(
            headers,
            "".join(field_format),
            struct.calcsize(headers),
            tuple(expected),
            wanted.get("time"),
            wanted.get("hop"),
            wanted.get("class"),
            wanted.get("destination"),
        )
        if len(self._layouts) >= LAYOUT_CACHE_SIZE:
            self._layouts.clear()
            self._strided.clear()
        self._layouts[length] = layout
        return layout


# The control items `ancillary_fields` reads, in their usual size: (level, type) -> (field, octets,
# struct format, values it yields). Others are skipped by both.
_KNOWN_ITEMS = {
    (socket.SOL_SOCKET, SCM_TIMESTAMPNS): ("time", 16, "qq", 2),
    (socket.IPPROTO_IPV6, IPV6_HOPLIMIT): ("hop", 4, "i", 1),
    (socket.IPPROTO_IPV6, IPV6_TCLASS): ("class", 4, "i", 1),
    (socket.IPPROTO_IPV6, IPV6_PKTINFO): ("destination", 20, "16s4x", 1),
    (socket.IPPROTO_IP, IP_TTL): ("hop", 4, "i", 1),
    (socket.IPPROTO_IP, IP_TOS): ("class", 1, "B", 1),
    (socket.IPPROTO_IP, IP_PKTINFO): ("destination", 12, "8x4s", 1),
}


def _items(data: memoryview, offset: int, length: int) -> list[tuple[int, int, memoryview]]:
    """Raw control data as the (level, type, data) items `socket.recvmsg` gives."""
    items = []
    position = 0
    while position + _CMSG_HEADER.size <= length:
        cmsg_len, level, kind = _CMSG_HEADER.unpack_from(data, offset + position)
        if cmsg_len < _CMSG_HEADER.size:
            break
        start = offset + position + _CMSG_HEADER.size
        items.append((level, kind, data[start : offset + position + cmsg_len]))
        position += (cmsg_len + 7) & ~7
    return items


def traffic_class_cmsg(family: int, traffic_class: int) -> tuple[int, int, bytes]:
    """Ancillary item that sets the traffic class (IPv6) or TOS (IPv4) of one datagram."""
    if family == socket.AF_INET6:
        return (socket.IPPROTO_IPV6, IPV6_TCLASS, _INT.pack(traffic_class))
    return (socket.IPPROTO_IP, IP_TOS, bytes((traffic_class,)))


def source_address_cmsg(family: int, packed_source: bytes) -> tuple[int, int, bytes]:
    """Ancillary item that sends a datagram from a given local address (for wildcard binds)."""
    if family == socket.AF_INET6:
        return (socket.IPPROTO_IPV6, IPV6_PKTINFO, packed_source + _INT.pack(0))
    return (socket.IPPROTO_IP, IP_PKTINFO, _INT.pack(0) + packed_source + bytes(4))


def set_traffic_class(sock: socket.socket, traffic_class: int) -> None:
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_TCLASS, traffic_class)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_TOS, traffic_class)


def set_hop_limit(sock: socket.socket, hop_limit: int) -> None:
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, hop_limit)
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_TTL, hop_limit)


def lease_flow_label(sock: socket.socket, destination: str, label: int, *, share: int = IPV6_FL_S_EXCL) -> None:
    """Reserve an IPv6 flow label towards `destination` and let the socket send it.

    Linux only sends a chosen flow label after the flow label manager has leased it to the
    socket; the label then goes in the flowinfo of each `sendto` address. An exclusive
    lease lingers a few seconds after its socket closes, during which nobody else gets the
    label; IPV6_FL_S_USER shares it with every socket of the same user instead.
    """
    if not 0 < label <= FLOW_LABEL_MASK:
        raise ValueError(f"flow label {label} not in 1..{FLOW_LABEL_MASK}")
    request = _FLOWLABEL_DST_LABEL.pack(socket.inet_pton(socket.AF_INET6, destination), label) + _FLOWLABEL_REST.pack(
        _IPV6_FL_A_GET, share, _IPV6_FL_F_CREATE, 0, 0, 0
    )
    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FLOWLABEL_MGR, request)
    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FLOWINFO_SEND, 1)


def packed(address: str) -> bytes:
    ip = ipaddress.ip_address(address.split("%")[0])
    return ip.packed


# -- kernel transmit timestamps (Documentation/networking/timestamping.rst) ---------------

SO_TIMESTAMPING = getattr(socket, "SO_TIMESTAMPING", 37)
SCM_TIMESTAMPING = SO_TIMESTAMPING
_SOF_TIMESTAMPING_TX_SOFTWARE = 1 << 1
_SOF_TIMESTAMPING_SOFTWARE = 1 << 4
_SOF_TIMESTAMPING_OPT_ID = 1 << 7
_SOF_TIMESTAMPING_OPT_TSONLY = 1 << 11
_IPV6_RECVERR = 25
_IP_RECVERR = 11
_SO_EE_ORIGIN_TIMESTAMPING = 4
# struct sock_extended_err: errno, origin, type, code, pad, info, data
_EXTENDED_ERR = struct.Struct("=IBBBBII")
_SCM_TIMESTAMPING_TRIPLE = struct.Struct("@qqqqqq")


def enable_tx_timestamps(sock: socket.socket) -> None:
    """Have the kernel report when each datagram left (software timestamp at the driver).

    Reports arrive on the socket's error queue, numbered from 0 in send order (OPT_ID),
    and carry no copy of the packet (OPT_TSONLY).
    """
    flags = (
        _SOF_TIMESTAMPING_TX_SOFTWARE
        | _SOF_TIMESTAMPING_SOFTWARE
        | _SOF_TIMESTAMPING_OPT_ID
        | _SOF_TIMESTAMPING_OPT_TSONLY
    )
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, flags)


_SO_EE_ORIGIN_ICMP = 2
_SO_EE_ORIGIN_ICMP6 = 3
_ICMP6_MESSAGES = {
    (1, 0): "no route to destination",
    (1, 1): "administratively prohibited",
    (1, 3): "address unreachable",
    (1, 4): "port unreachable",
    (2, 0): "packet too big",
    (3, 0): "hop limit exceeded in transit",
}
_ICMP4_MESSAGES = {
    (3, 0): "net unreachable",
    (3, 1): "host unreachable",
    (3, 3): "port unreachable",
    (3, 13): "administratively prohibited",
    (11, 0): "TTL exceeded in transit",
}


@dataclass(frozen=True, slots=True)
class IcmpError:
    """An ICMP(v6) error the kernel matched to one of our datagrams."""

    payload: bytes  # the start of our datagram's UDP payload
    icmp_type: int
    icmp_code: int
    offender: str | None  # who sent the error
    ipv6: bool
    kernel_ns: int | None = None  # when the error arrived (SO_TIMESTAMPNS), if the socket asked for it
    destination: str | None = None  # where our datagram was going (the error queue's msg_name)

    def describe(self) -> str:
        table = _ICMP6_MESSAGES if self.ipv6 else _ICMP4_MESSAGES
        what = table.get((self.icmp_type, self.icmp_code), f"ICMP type {self.icmp_type} code {self.icmp_code}")
        return f"{what} from {self.offender}" if self.offender else what


def enable_icmp_errors(sock: socket.socket) -> None:
    """Queue ICMP errors about our datagrams on the error queue, with the offender."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)


def _offender(data: bytes) -> str | None:
    """The sockaddr that follows struct sock_extended_err (SO_EE_OFFENDER)."""
    rest = data[_EXTENDED_ERR.size :]
    if len(rest) >= 24 and int.from_bytes(rest[:2], "little") == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, rest[8:24])
    if len(rest) >= 8 and int.from_bytes(rest[:2], "little") == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, rest[4:8])
    return None


def read_error_queue(sock: socket.socket) -> tuple[list[tuple[int, int]], list[IcmpError]]:
    """Drain the error queue: transmit timestamps as (send index, ns), and ICMP errors."""
    stamps: list[tuple[int, int]] = []
    errors: list[IcmpError] = []
    while True:
        try:
            data, ancdata, _flags, addr = sock.recvmsg(64, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return stamps, errors
        except OSError:
            return stamps, errors
        kernel_ns = received_ns = None
        report = None
        for level, kind, cmsg in ancdata:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPING:
                seconds, nanoseconds = _SCM_TIMESTAMPING_TRIPLE.unpack_from(cmsg)[:2]
                kernel_ns = seconds * 1_000_000_000 + nanoseconds
            elif level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                seconds, nanoseconds = _TIMESPEC.unpack_from(cmsg)
                received_ns = seconds * 1_000_000_000 + nanoseconds
            elif (level, kind) in ((socket.IPPROTO_IPV6, _IPV6_RECVERR), (socket.IPPROTO_IP, _IP_RECVERR)):
                report = cmsg
        if report is None:
            continue
        _errno, origin, icmp_type, icmp_code, _pad, _info, data_field = _EXTENDED_ERR.unpack_from(report)
        if origin == _SO_EE_ORIGIN_TIMESTAMPING and kernel_ns:
            stamps.append((data_field, kernel_ns))
        elif origin in (_SO_EE_ORIGIN_ICMP, _SO_EE_ORIGIN_ICMP6):
            errors.append(
                IcmpError(
                    bytes(data),
                    icmp_type,
                    icmp_code,
                    _offender(report),
                    origin == _SO_EE_ORIGIN_ICMP6,
                    kernel_ns=received_ns,
                    destination=addr[0] if isinstance(addr, tuple) and addr else None,
                )
            )
