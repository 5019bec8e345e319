"""Measurement socket options over real loopback sockets: what the kernel reports about each
datagram, per-datagram markings, flow label leases, and the error queue."""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterator

import pytest

from collector.system.measurement_sockets import (
    IPV6_FL_S_USER,
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

IPV6_FLOWINFO = 11  # linux/in6.h: receive the flow information as ancillary data


@contextlib.contextmanager
def pair(family: socket.AddressFamily, host: str) -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.socket(family, socket.SOCK_DGRAM) as receiver, socket.socket(family, socket.SOCK_DGRAM) as sender:
        receiver.bind((host, 0))
        receiver.settimeout(5)
        yield receiver, sender


def closed_udp_port(host: str) -> int:
    with socket.socket(family_of(host), socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


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
    port = closed_udp_port(host)
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
