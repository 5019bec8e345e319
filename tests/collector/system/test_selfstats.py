"""The process's own CPU time and the datagrams the kernel dropped on its UDP sockets."""

from __future__ import annotations

import socket

from collector.system.selfstats import cpu_seconds, udp_socket_drops


def test_cpu_time_grows_while_the_process_works():
    before = cpu_seconds()
    while cpu_seconds() == before:  # busy until the kernel's accounting ticks
        sum(range(10_000))
    assert cpu_seconds() > before >= 0


def test_drops_on_a_full_receive_buffer_are_the_datagrams_that_never_arrived():
    before = udp_socket_drops()
    with (
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as receiver,
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender,
    ):
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        receiver.bind(("::1", 0))
        sent = 200
        for _ in range(sent):
            sender.sendto(bytes(1000), receiver.getsockname())  # loopback: queued or dropped at once
        dropped = udp_socket_drops() - before
        receiver.setblocking(False)
        received = 0
        while True:
            try:
                receiver.recv(2048)
            except BlockingIOError:
                break
            received += 1
    assert dropped > 0 and received + dropped == sent
    assert udp_socket_drops() == before  # a closed socket's drops are no longer ours
