"""Passive TCP RTT of a real connection against the sending kernel's own RTT (`ss -ti`).

Three namespaces: sender -- router -- receiver, over veth pairs. The router forwards to
the receiver through a token bucket (tbf) at `RATE`, and the sender keeps about
`IN_FLIGHT` octets in flight (a fixed send buffer, cubic), so a steady queue of tens of
milliseconds builds in the router. (The bucket is not on the sender itself, where TCP
small queues would keep the queue to a packet or two.) The capture point is the
receiver's end. There, the receiver's TSvals (on its ACKs) come back echoed by data
segments that waited in the router's queue: those samples measure the path beyond the
capture point, queue included. The sender's TSvals, echoed by the receiver's ACKs, time
the near side (the receiver's ACK delay). The two added up are the connection's round
trip, which is what the sender's kernel sees as its RTT.

The sender answers ACKs with bursts of segments sent in one clock tick (one TSval) that
wait in the queue one behind the other; timing only the first of each burst (one sample
per TSval) read 25% low, as every burst's head waits least.
"""

from __future__ import annotations

import re
import socket
import statistics
import struct
import subprocess
import threading
import time
from dataclasses import dataclass

import pytest

from collector.capture.tcp_rtt import PassiveTcpRtt
from tests.capture_support import Capture, created_in
from tests.support import DEADLINE_S, network_namespace, wait_until

pytestmark = pytest.mark.root

RATE = "20mbit"
IN_FLIGHT = 48 * 1024  # send buffer; the kernel doubles it for its bookkeeping
TRANSFER = 6 * 1024 * 1024
PORT = 5201
# family: (sender's subnet, receiver's subnet, prefix length); the router is ::1 / .1 in both
SUBNETS = {"ipv6": ("fd00:7c:1::", "fd00:7c:2::", 64), "ipv4": ("10.77.1.", "10.77.2.", 24)}


def ip(namespace: str, *args: str) -> None:
    subprocess.run(["ip", "-n", namespace, *args], check=True)


def kernel_rtt_ms(namespace: str, destination: str) -> float | None:
    """The smoothed RTT the sender's kernel keeps for the connection, from `ss -ti`."""
    peer = f"[{destination}]:{PORT}" if ":" in destination else f"{destination}:{PORT}"
    out = subprocess.run(
        ["ip", "netns", "exec", namespace, "ss", "-tin", "dst", peer], capture_output=True, text=True
    ).stdout
    found = re.search(r"\brtt:([\d.]+)/", out)
    return float(found.group(1)) if found else None


def sender_retransmissions(sock: socket.socket) -> tuple[int] | None:
    """(segments the kernel retransmitted,) once nothing it sent is unacknowledged (TCP_INFO's
    tcpi_unacked and tcpi_total_retrans); None before."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    unacked, total_retrans = struct.unpack_from("=I", info, 24)[0], struct.unpack_from("=I", info, 100)[0]
    return None if unacked else (total_retrans,)


def wire(sender: str, router: str, receiver: str, family: str, rate: str = RATE) -> tuple[str, str]:
    """sender --veth-- router --veth-- receiver, the router's way to the receiver through a
    token bucket; returns the sender's and the receiver's addresses."""
    sender_net, receiver_net, length = SUBNETS[family]
    ip(sender, "link", "add", "tx0", "type", "veth", "peer", "name", "r0", "netns", router)
    ip(receiver, "link", "add", "rx0", "type", "veth", "peer", "name", "r1", "netns", router)
    for namespace, interface, address in (
        (sender, "tx0", sender_net + "2"),
        (router, "r0", sender_net + "1"),
        (router, "r1", receiver_net + "1"),
        (receiver, "rx0", receiver_net + "2"),
    ):
        ip(namespace, "addr", "add", f"{address}/{length}", "dev", interface, *(["nodad"] if family == "ipv6" else []))
        # segments of wire size, so that every TSval and every queue slot is one real packet
        ip(namespace, "link", "set", interface, "up", "gso_max_size", "1500")
    for namespace, gateway in ((sender, sender_net + "1"), (receiver, receiver_net + "1")):
        ip(namespace, "route", "add", "default", "via", gateway)
    forwarding = "net.ipv6.conf.all.forwarding=1" if family == "ipv6" else "net.ipv4.ip_forward=1"
    subprocess.run(["ip", "netns", "exec", router, "sysctl", "-qw", forwarding], check=True)
    subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            router,
            "tc",
            "qdisc",
            "add",
            "dev",
            "r1",
            "root",
            "tbf",
            "rate",
            rate,
            "burst",
            "16kb",
            "latency",
            "500ms",
        ],
        check=True,
    )
    sender_address, receiver_address = sender_net + "2", receiver_net + "2"
    # links up and neighbours resolved before the handshake, so that no SYN waits for them
    wait_until(
        lambda: (
            subprocess.run(
                ["ip", "netns", "exec", sender, "ping", "-c", "1", "-W", "1", receiver_address], capture_output=True
            ).returncode
            == 0
        ),
        what=f"{receiver_address} reachable from the sender",
    )
    return sender_address, receiver_address


@pytest.mark.parametrize("family", ["ipv6", "ipv4"])
def test_passive_rtt_agrees_with_the_senders_kernel(family):
    with network_namespace() as receiver, network_namespace() as router, network_namespace() as sender:
        sender_address, receiver_address = wire(sender, router, receiver, family)

        meter = PassiveTcpRtt(remote_prefix_len=128, remote_prefix_len_v4=32)
        # Packets captured while the kernel's RTT is read in steady state (from its second
        # reading until the last write): the same stretch of the transfer on both sides, not
        # the slow start before the queue builds.
        window = [float("inf"), float("inf")]  # capture times, ns

        def observe_steady(ts_ns: int, frame, offset: int) -> None:
            if window[0] <= ts_ns <= window[1]:
                meter.observe(ts_ns, frame, offset)

        capture = Capture(receiver, "rx0", "both", observe_steady)
        try:
            server, client = connected_pair(sender, receiver, family, receiver_address)
            transfer = timed_transfer(sender, receiver_address, server, client, TRANSFER, window)
        finally:
            dropped = capture.stop()

    received, kernel, retransmitted = transfer.received, transfer.kernel_ms, transfer.retransmitted
    assert dropped == 0 and received == [TRANSFER]
    report = meter.report()
    prefix_len = 128 if family == "ipv6" else 32
    beyond = report.by_prefix[("best-effort", f"{sender_address}/{prefix_len}")]  # echoed by the sender
    near = report.by_prefix[("best-effort", f"{receiver_address}/{prefix_len}")]  # echoed by the receiver
    steady_kernel_ms = statistics.median(kernel[1:])
    round_trip_ms = (beyond.sum_s / beyond.samples + near.sum_s / near.samples) * 1000
    assert beyond.samples >= 1000 and near.samples >= 100  # every segment of a burst is timed
    assert steady_kernel_ms > 10, "the queue did not build; the comparison would be of two near-zeros"
    assert abs(round_trip_ms - steady_kernel_ms) <= 0.05 * steady_kernel_ms, (round_trip_ms, steady_kernel_ms)
    assert steady_kernel_ms / 2 <= beyond.p50_s * 1000 <= steady_kernel_ms * 1.5  # the histogram's estimate
    assert beyond.min_s * 1000 <= steady_kernel_ms
    # The bucket queues, it never drops here; but a loaded machine can hold an ACK past the
    # sender's timeout, and the sender retransmits. The capture counts none it did not make.
    assert report.by_slice["best-effort"].retransmissions <= retransmitted


def connected_pair(
    sender: str, receiver: str, family: str, receiver_address: str
) -> tuple[socket.socket, socket.socket]:
    """A listening socket in `receiver` and a client in `sender` connected to it, with
    `IN_FLIGHT` of send buffer and cubic (which keeps the window in flight; bbr would cycle
    the queue)."""
    af = socket.AF_INET6 if family == "ipv6" else socket.AF_INET

    def listen() -> socket.socket:
        sock = socket.socket(af, socket.SOCK_STREAM)
        sock.bind((receiver_address, PORT))
        sock.listen(1)
        return sock

    def connect() -> socket.socket:
        sock = socket.socket(af, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, IN_FLIGHT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"cubic")
        sock.connect((receiver_address, PORT))
        return sock

    return created_in(receiver, listen), created_in(sender, connect)


@dataclass
class Transfer:
    received: list[int]  # octets the receiver read, once it ended
    kernel_ms: list[float]  # the sender kernel's RTT, read every 0.1 s while it sent
    retransmitted: int  # the sender's retransmissions, once all was acknowledged


def timed_transfer(
    sender: str, receiver_address: str, server: socket.socket, client: socket.socket, size: int, window: list[float]
) -> Transfer:
    """Send `size` octets from `client` to `server`'s peer while reading the sender kernel's
    RTT; `window` gets the capture times of the steady state: from the kernel's second
    reading until the last write (the queue drains from there: no kernel RTT of the tail).
    Closes all three sockets."""
    peer, _ = server.accept()
    received: list[int] = []
    reader = threading.Thread(target=lambda: received.append(drain(peer)))
    reader.start()
    kernel: list[float] = []
    done = threading.Event()

    def poll_kernel() -> None:
        while not done.is_set():
            value = kernel_rtt_ms(sender, receiver_address)
            if value is not None:
                kernel.append(value)
                if len(kernel) == 2:
                    window[0] = time.time_ns()
            done.wait(0.1)

    poller = threading.Thread(target=poll_kernel)
    poller.start()
    try:
        client.sendall(b"\x00" * size)
        window[1] = time.time_ns()
        done.set()
        client.shutdown(socket.SHUT_WR)
        [retransmitted] = wait_until(
            lambda: sender_retransmissions(client), what="the sender's data and FIN acknowledged"
        )
    finally:
        done.set()
        poller.join()
        client.close()
        reader.join(timeout=DEADLINE_S)
        peer.close()
        server.close()
    return Transfer(received, kernel, retransmitted)


def drain(sock) -> int:
    total = 0
    while chunk := sock.recv(1 << 16):
        total += len(chunk)
    return total
