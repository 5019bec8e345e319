"""NFQUEUE spoken over netlink: the kernel's counters read, a queue bound in a namespace
that gets real packets, and verdicts that drop, accept, or replace them."""

from __future__ import annotations

import socket
import subprocess
import threading

import pytest

from collector.capture.nfqueue import NF_DROP, NfQueue, NfQueueError, kernel_counters
from tests.capture_support import created_in
from tests.support import DEADLINE_S, network_namespace

PROC = """\
    0  12345     0 2 65535     3     4        17  1
    7 -4101      2 2 65535    11     1       900  1
"""


def test_kernel_counters_are_read_per_queue():
    counters = kernel_counters(7, PROC)
    assert (counters.waiting, counters.dropped, counters.user_dropped) == (2, 11, 1)
    assert kernel_counters(0, PROC).dropped == 3
    assert kernel_counters(5, PROC) is None


def test_queue_numbers_are_bounded():
    with pytest.raises(ValueError):
        NfQueue(70000)


@pytest.mark.root
@pytest.mark.tool("ip6tables")
def test_verdicts_drop_accept_and_replace_real_packets():
    """Loopback UDP in a fresh namespace through queue 3: the first datagram dropped, the
    second accepted as it was, the third replaced by its two 16-bit words swapped (the UDP
    checksum, a one's-complement sum of words, stays right)."""
    with network_namespace() as ns:
        subprocess.run(
            ["ip", "netns", "exec", ns, "ip6tables", "-w", "-A", "OUTPUT", "-p", "udp", "--dport", "9",
             "-j", "NFQUEUE", "--queue-num", "3"],
            check=True,
        )  # fmt: skip
        queue = created_in(ns, lambda: NfQueue(3))
        receiver = created_in(ns, lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
        sender = created_in(ns, lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
        try:
            receiver.bind(("::1", 9))
            receiver.settimeout(DEADLINE_S)
            queue.settimeout(DEADLINE_S)
            hooks = []

            def judge() -> None:
                for verdict in ("drop", "accept", "replace"):
                    queued = queue.receive()
                    hooks.append(queued.hook)
                    if verdict == "drop":
                        queue.verdict(queued.packet_id, NF_DROP)
                    elif verdict == "accept":
                        queue.verdict(queued.packet_id)
                    else:
                        queue.verdict(queued.packet_id, payload=queued.payload.replace(b"AABB", b"BBAA"))

            thread = threading.Thread(target=judge)
            thread.start()
            for word in (b"one", b"two", b"AABB"):
                sender.sendto(word, ("::1", 9))
            thread.join(DEADLINE_S)
            received = [receiver.recv(100), receiver.recv(100)]
            counters = created_in(ns, lambda: kernel_counters(3))
        finally:
            queue.close()
            receiver.close()
            sender.close()
    assert received[0] == b"two"
    assert received[1] == b"BBAA"
    assert hooks == [3, 3, 3]  # NF_INET_LOCAL_OUT
    assert counters is not None and counters.dropped == 0


@pytest.mark.root
def test_a_queue_bound_twice_is_refused_with_the_kernels_reason():
    with network_namespace() as ns:
        first = created_in(ns, lambda: NfQueue(4))
        try:
            with pytest.raises(NfQueueError):
                created_in(ns, lambda: NfQueue(4))
        finally:
            first.close()


@pytest.mark.root
@pytest.mark.tool("ip6tables")
def test_a_metadata_queue_holds_packets_until_one_batch_verdict_releases_them_in_order():
    """copy_packets=False: messages carry no bytes, the packets wait in the kernel, and one
    batch verdict for the last id lets all three through."""
    with network_namespace() as ns:
        subprocess.run(
            ["ip", "netns", "exec", ns, "ip6tables", "-w", "-A", "OUTPUT", "-p", "udp", "--dport", "9",
             "-j", "NFQUEUE", "--queue-num", "5"],
            check=True,
        )  # fmt: skip
        queue = created_in(ns, lambda: NfQueue(5, copy_packets=False, fail_open=False))
        receiver = created_in(ns, lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
        sender = created_in(ns, lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
        try:
            receiver.bind(("::1", 9))
            queue.settimeout(DEADLINE_S)
            for word in (b"one", b"two", b"three"):
                sender.sendto(word, ("::1", 9))
            queued = [queue.receive() for _ in range(3)]
            receiver.setblocking(False)
            with pytest.raises(BlockingIOError):
                receiver.recv(100)  # all three still held
            queue.verdict_batch(queued[-1].packet_id)
            receiver.settimeout(DEADLINE_S)
            received = [receiver.recv(100) for _ in range(3)]
        finally:
            queue.close()
            receiver.close()
            sender.close()
    assert [packet.payload for packet in queued] == [b"", b"", b""]
    assert received == [b"one", b"two", b"three"]
