"""Batched receive and reply with recvmmsg/sendmmsg, and the reflector's per-datagram fallback."""

from __future__ import annotations

import select
import socket
import time

import pytest

from collector.reflector.session_reflector import Reflector, ReflectorConfig
from collector.system import measurement_sockets, mmsg
from collector.wire.stamp import ErrorEstimate, SenderPacket, decode_reflector, encode_sender, ns_to_ntp
from tests.support import DEADLINE_S, wait_until

pytestmark = pytest.mark.skipif(not mmsg.available(), reason="recvmmsg/sendmmsg need Linux on a 64-bit ABI")


def arrived(server: socket.socket) -> None:
    """Until the burst is there to read. Loopback queues each datagram at the receiver within
    its sendto, in order: once the first is readable, the burst sent before is whole."""
    wait_until(lambda: select.select([server], [], [], 0)[0], what="the burst at the receiver")


def requests_received(server: socket.socket, client: socket.socket, count: int) -> mmsg.DatagramBatch:
    """`count` requests from `client` (which reads its replies' metadata), in one batch of 4."""
    measurement_sockets.enable_receive_metadata(client)
    for i in range(count):
        client.sendto(b"request-%d" % i, server.getsockname())
    arrived(server)
    batch = mmsg.DatagramBatch(capacity=4, size=2048)
    assert batch.receive(server.fileno()) == count
    return batch


@pytest.fixture
def pair():
    server = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    server.bind(("::1", 0))
    measurement_sockets.enable_receive_metadata(server)
    client = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    client.bind(("::1", 0))
    client.settimeout(DEADLINE_S)  # bounds a missing reply only
    measurement_sockets.set_traffic_class(client, 26 << 2)
    yield server, client
    server.close()
    client.close()


def test_a_burst_is_received_in_one_call_with_sender_and_metadata(pair):
    server, client = pair
    for i in range(5):
        client.sendto(bytes([i]) * (10 + i), server.getsockname())
    arrived(server)
    batch = mmsg.DatagramBatch(capacity=8, size=2048)
    assert batch.receive(server.fileno()) == 5
    for i in range(5):
        assert batch.length(i) == 10 + i
        assert bytes(batch.slots[i][: batch.length(i)]) == bytes([i]) * (10 + i)
        family, address, port = batch.source(i)
        assert (family, address, port) == (
            socket.AF_INET6,
            socket.inet_pton(socket.AF_INET6, "::1"),
            client.getsockname()[1],
        )
        kernel_ns, hop_limit, traffic_class, _ = measurement_sockets.ancillary_fields(batch.control(i))
        assert abs(kernel_ns - time.time_ns()) < 5e9 and hop_limit == 64 and traffic_class == 26 << 2
    assert batch.receive(server.fileno()) == 0  # nothing left, and no blocking


def test_replies_go_back_in_one_call_with_their_own_traffic_class(pair):
    server, client = pair
    batch = requests_received(server, client, 3)
    count = 3
    for i in range(count):
        batch.slots[i][:5] = b"reply"
        batch.queue_reply(i, batch.length(i), [measurement_sockets.traffic_class_cmsg(socket.AF_INET6, (10 + i) << 2)])
    assert batch.send(server.fileno()) == (3, 0)
    replies = []
    for _ in range(3):
        data, anc, _flags, _addr = client.recvmsg(100, 256)
        replies.append((data, measurement_sockets.parse_ancillary(anc).dscp))
    assert replies == [(b"reply" + b"st-%d" % i, 10 + i) for i in range(3)]


def test_a_bursts_senders_are_read_at_once_as_one_by_one(pair):
    server, client = pair
    other = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    other.bind(("::1", 0))
    try:
        for sender in (client, other, client):
            sender.sendto(b"x", server.getsockname())
        arrived(server)
        batch = mmsg.DatagramBatch(capacity=4, size=64)
        count = batch.receive(server.fileno())
        ports = [client.getsockname()[1], other.getsockname()[1], client.getsockname()[1]]
        assert count == 3 and ports[0] != ports[1]
        loopback = socket.inet_pton(socket.AF_INET6, "::1")
        assert batch.sources(count, socket.AF_INET6) == [(port, loopback) for port in ports]
        assert [batch.source(i)[:0:-1] for i in range(count)] == [(port, loopback) for port in ports]
    finally:
        other.close()


def test_replies_queued_at_once_keep_their_slot_length_and_class(pair):
    server, client = pair
    batch = requests_received(server, client, 4)
    control = {
        dscp: mmsg.pack_control([measurement_sockets.traffic_class_cmsg(socket.AF_INET6, dscp << 2)])
        for dscp in (10, 46)
    }

    def answered(replies: list[tuple[int, int, bytes]]) -> list[tuple[bytes, int]]:
        batch.queue_packed_replies(replies)
        assert batch.send(server.fileno()) == (len(replies), 0)
        received = [client.recvmsg(100, 256) for _ in replies]
        return [(data, measurement_sockets.parse_ancillary(anc).dscp) for data, anc, _flags, _addr in received]

    # Out of slot order, shorter than received, two consecutive replies with one control.
    burst = [(3, 9, control[46]), (1, 8, control[46]), (0, 9, control[10]), (2, 9, control[46])]
    expected = [(b"request-3", 46), (b"request-", 46), (b"request-0", 10), (b"request-2", 46)]
    assert answered(burst) == expected
    assert answered(burst) == expected  # the same burst again: laid out as it was
    # Each reply changed in one thing only: its slot, its length, its control.
    changed = [(2, 9, control[46]), (1, 9, control[46]), (0, 9, control[46]), (2, 9, control[10])]
    assert answered(changed) == [(b"request-2", 46), (b"request-1", 46), (b"request-0", 46), (b"request-2", 10)]
    assert answered(burst[:1]) == expected[:1]  # fewer replies than before
    batch.queue_packed_reply(2, 4, control[10])  # one by one, after the burst
    batch.queue_packed_reply(0, 9, control[10])
    assert batch.send(server.fileno()) == (2, 0)
    assert [client.recv(100) for _ in range(2)] == [b"requ", b"request-0"]


def test_more_replies_than_slots_are_refused(pair):
    batch = mmsg.DatagramBatch(capacity=2, size=64)
    with pytest.raises(ValueError, match="room for 2"):
        batch.queue_packed_replies([(0, 1, b""), (1, 1, b""), (0, 1, b"")])


def test_reflector_answers_the_same_without_batching(monkeypatch):
    monkeypatch.setattr(mmsg, "available", lambda: False)
    with Reflector(ReflectorConfig(bind=("::1",), port=0, stateful=True)) as reflector:
        client = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        client.settimeout(DEADLINE_S)  # bounds a missing reply only
        seqs = []
        for seq in (4, 5):
            client.sendto(
                encode_sender(SenderPacket(seq, ns_to_ntp(time.time_ns()), ErrorEstimate(), 3)), ("::1", reflector.port)
            )
            reply = decode_reflector(client.recv(100))
            seqs.append((reply.seq, reply.sender_seq))
        client.close()
    assert seqs == [(0, 4), (1, 5)]
