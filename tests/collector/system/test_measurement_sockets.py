"""Measurement socket options over real loopback sockets: what the kernel reports about each
datagram, per-datagram markings, flow label leases, and the error queue."""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from collector.system import mmsg
from collector.system.measurement_sockets import (
    IP_TTL,
    IPV6_FL_S_USER,
    IPV6_HOPLIMIT,
    IPV6_TCLASS,
    SCM_TIMESTAMPNS,
    AncillaryReader,
    ancillary_fields,
    enable_icmp_errors,
    enable_receive_metadata,
    enable_tx_timestamps,
    family_of,
    lease_flow_label,
    packed,
    parse_ancillary,
    read_error_queue,
    set_hop_limit,
    set_traffic_class,
    source_address_cmsg,
    traffic_class_cmsg,
)
from tests.support import free_udp_port

IPV6_FLOWINFO = 11  # linux/in6.h: receive the flow information as ancillary data


@contextlib.contextmanager
def pair(family: socket.AddressFamily, host: str) -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.socket(family, socket.SOCK_DGRAM) as receiver, socket.socket(family, socket.SOCK_DGRAM) as sender:
        receiver.bind((host, 0))
        receiver.settimeout(5)
        yield receiver, sender


@pytest.mark.parametrize("family, host", [(socket.AF_INET6, "::1"), (socket.AF_INET, "127.0.0.1")])
def test_the_kernel_reports_time_hop_limit_marking_and_destination(family, host):
    with pair(family, host) as (receiver, sender):
        enable_receive_metadata(receiver, packet_info=True)
        set_traffic_class(sender, 46 << 2 | 1)
        set_hop_limit(sender, 7)
        before = time.time_ns()
        sender.sendto(b"probe", receiver.getsockname())
        data, ancdata, _, _ = receiver.recvmsg(64, 256)
    meta = parse_ancillary(ancdata)
    assert data == b"probe"
    assert (meta.hop_limit, meta.dscp, meta.ecn, meta.destination) == (7, 46, 1, packed(host))
    assert before <= meta.kernel_ns <= time.time_ns()


@pytest.mark.parametrize("family, host", [(socket.AF_INET6, "::1"), (socket.AF_INET, "127.0.0.1")])
def test_one_datagram_carries_its_own_marking_over_the_sockets(family, host):
    with pair(family, host) as (receiver, sender):
        enable_receive_metadata(receiver)
        set_traffic_class(sender, 26 << 2)
        sender.sendmsg([b"a"], [traffic_class_cmsg(family, 34 << 2)], 0, receiver.getsockname())
        sender.sendto(b"b", receiver.getsockname())
        marks = [parse_ancillary(receiver.recvmsg(16, 256)[1]).dscp for _ in range(2)]
    assert marks == [34, 26]


def test_a_wildcard_socket_sends_from_the_address_it_is_told():
    with pair(socket.AF_INET, "127.0.0.1") as (receiver, sender):
        sender.bind(("0.0.0.0", 0))
        sender.sendmsg([b"x"], [source_address_cmsg(socket.AF_INET, packed("127.0.0.5"))], 0, receiver.getsockname())
        assert receiver.recvfrom(16)[1][0] == "127.0.0.5"


def test_a_leased_flow_label_goes_on_the_wire_and_an_exclusive_lease_is_one_sockets():
    with pair(socket.AF_INET6, "::1") as (receiver, sender), socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as other:
        receiver.setsockopt(socket.IPPROTO_IPV6, IPV6_FLOWINFO, 1)
        label = 0x5A5A5
        lease_flow_label(sender, "::1", label)
        with pytest.raises(PermissionError):
            lease_flow_label(other, "::1", label)
        host, port = receiver.getsockname()[:2]
        sender.sendto(b"x", (host, port, label, 0))
        [(_, _, flowinfo)] = receiver.recvmsg(16, 64)[1]
    assert int.from_bytes(flowinfo, "big") & 0xFFFFF == label


def test_a_shared_lease_is_open_to_every_socket_of_the_user_and_labels_stay_in_range():
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as b:
        lease_flow_label(a, "::1", 0x6B6B6, share=IPV6_FL_S_USER)
        lease_flow_label(b, "::1", 0x6B6B6, share=IPV6_FL_S_USER)
        for bad in (0, 0x100000):
            with pytest.raises(ValueError, match=r"not in 1\.\.1048575"):
                lease_flow_label(a, "::1", bad)


@pytest.mark.parametrize(
    "host, described", [("::1", "port unreachable from ::1"), ("127.0.0.1", "port unreachable from 127.0.0.1")]
)
def test_an_icmp_error_and_transmit_times_arrive_on_the_error_queue(host, described):
    port = free_udp_port(host)  # nobody listens on it
    with socket.socket(family_of(host), socket.SOCK_DGRAM) as sock:
        enable_icmp_errors(sock)
        enable_tx_timestamps(sock)
        before = time.time_ns()
        sock.sendto(b"hello", (host, port))
        waiting = select.poll()
        waiting.register(sock, 0)  # POLLERR, always reported: something is on the error queue
        stamps, errors = [], []
        while not (stamps and errors) and waiting.poll(5000):
            got = read_error_queue(sock)
            stamps += got[0]
            errors += got[1]
    [(index, sent_ns)] = stamps
    [error] = errors
    assert index == 0 and before <= sent_ns <= time.time_ns()
    assert (error.payload, error.describe(), error.destination) == (b"hello", described, host)


def test_addresses_tell_their_family_and_pack_without_a_scope():
    assert (family_of("fe80::1%lo"), family_of("192.0.2.1")) == (socket.AF_INET6, socket.AF_INET)
    assert packed("fe80::1%eth0") == socket.inet_pton(socket.AF_INET6, "fe80::1")


@pytest.mark.parametrize("packet_info", [False, True], ids=["bound", "wildcard"])
@pytest.mark.parametrize("family,host", [(socket.AF_INET6, "::1"), (socket.AF_INET, "127.0.0.1")], ids=["v6", "v4"])
def test_the_layout_reader_gives_what_the_item_walk_gives(family, host, packet_info):
    server = socket.socket(family, socket.SOCK_DGRAM)
    client = socket.socket(family, socket.SOCK_DGRAM)
    try:
        server.bind((host, 0))
        enable_receive_metadata(server, packet_info=packet_info)
        set_traffic_class(client, 26 << 2)
        for _ in range(3):
            client.sendto(b"x" * 10, server.getsockname())
        batch = mmsg.DatagramBatch(capacity=4, size=64)
        assert select.select([server], [], [], 5)[0]  # loopback queues each datagram within its sendto
        count = batch.receive(server.fileno())
        assert count == 3
        reader = AncillaryReader()
        for i, (control_length, _flags, length) in enumerate(batch.headers(count)):
            assert length == 10
            fields = reader.fields(batch.control_area, i * batch.control_size, control_length)
            assert fields == ancillary_fields(batch.control(i))  # the first learns the layout, the rest reuse it
            assert fields[1:3] == (64, 26 << 2) and (fields[3] is not None) == packet_info
        lengths = [header[0] for header in batch.headers(count)]
        assert AncillaryReader().burst(batch.control_area, batch.control_size, lengths) == [
            ancillary_fields(batch.control(i)) for i in range(count)
        ]
    finally:
        server.close()
        client.close()


def test_an_unusual_arrangement_of_the_same_length_is_read_item_by_item():
    timestamp = struct.pack("@Qii", 32, socket.SOL_SOCKET, SCM_TIMESTAMPNS) + struct.pack("@qq", 5, 6)
    hop = struct.pack("@Qii", 20, socket.IPPROTO_IPV6, IPV6_HOPLIMIT) + struct.pack("@i", 9) + bytes(4)
    tclass = struct.pack("@Qii", 20, socket.IPPROTO_IPV6, IPV6_TCLASS) + struct.pack("@i", 7) + bytes(4)
    reader = AncillaryReader()
    first, swapped = timestamp + hop, timestamp + tclass
    assert reader.fields(memoryview(first), 0, len(first)) == (5_000_000_006, 9, None, None)
    assert reader.fields(memoryview(swapped), 0, len(swapped)) == (5_000_000_006, None, 7, None)
    # An item of an odd size is left to the walk, which reads it the same way.
    short_ttl = struct.pack("@Qii", 17, socket.IPPROTO_IP, IP_TTL) + bytes([33]) + bytes(7)
    assert reader.fields(memoryview(short_ttl), 0, len(short_ttl)) == ancillary_fields(
        [(socket.IPPROTO_IP, IP_TTL, bytes([33]))]
    )


def test_a_burst_is_read_at_once_and_an_odd_area_in_it_item_by_item():
    timestamp = struct.pack("@Qii", 32, socket.SOL_SOCKET, SCM_TIMESTAMPNS) + struct.pack("@qq", 5, 6)
    hop = struct.pack("@Qii", 20, socket.IPPROTO_IPV6, IPV6_HOPLIMIT) + struct.pack("@i", 9) + bytes(4)
    tclass = struct.pack("@Qii", 20, socket.IPPROTO_IPV6, IPV6_TCLASS) + struct.pack("@i", 7) + bytes(4)
    stride = 64
    areas = [timestamp + hop, timestamp + tclass, timestamp + hop]  # one length, the middle arranged otherwise
    data = memoryview(b"".join(area.ljust(stride, b"\xee") for area in areas))
    with_hop, with_class = (5_000_000_006, 9, None, None), (5_000_000_006, None, 7, None)
    assert AncillaryReader().burst(data, stride, [len(area) for area in areas]) == [with_hop, with_class, with_hop]
    # Lengths that differ within the burst: each area is read on its own.
    assert AncillaryReader().burst(data, stride, [len(timestamp), len(timestamp + hop), 0]) == [
        (5_000_000_006, None, None, None),
        with_class,
        (None, None, None, None),
    ]
    assert AncillaryReader().burst(data, stride, []) == []
