"""A fixed delay for one direction of a link, without netem: an NFQUEUE delay line.

The kernel here has no netem, so the lab sends a link's egress packets to an NFQUEUE
(an ip6tables rule in the sender's mangle/POSTROUTING, before the HTB queues) and this
small program, running in the sending site's namespace, holds each packet's verdict for
the set delay.
Only packet metadata crosses to userspace (copy mode META), the packet itself waits in
the kernel, and since every packet waits the same time they leave in arrival order, so a
single batch verdict ("accept everything up to id N") releases all that are due.

Precision: the added delay is the set value plus the time to wake this process and
deliver the verdict; lab/README.md gives the figures measured on the lab machines.

Run as `python -m lab.delay --queue N --delay-ms D` inside a namespace; the lab does that.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import gc
import os
import select
import signal
import socket
import struct
import sys
import time
from collections import deque
from pathlib import Path

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT_BATCH = 3
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_META = 1
NF_ACCEPT = 1
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2
NLMSG_HEADER = struct.Struct("=IHHII")
NLA_HEADER = struct.Struct("=HH")
QUEUE_MAXLEN = 20000  # packets; about 1 s of a 200 Mbit/s link at 1500 bytes
PR_SET_TIMERSLACK = 29


def _attr(kind: int, payload: bytes) -> bytes:
    length = NLA_HEADER.size + len(payload)
    return NLA_HEADER.pack(length, kind) + payload + b"\0" * (-length % 4)


def _message(kind: int, queue: int, attrs: bytes, seq: int, flags: int = NLM_F_REQUEST) -> bytes:
    nfgen = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack(">H", queue)
    body = nfgen + attrs
    return NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, seq, 0) + body


def _attrs(data: bytes) -> dict[int, bytes]:
    found, offset = {}, 0
    while offset + NLA_HEADER.size <= len(data):
        length, kind = NLA_HEADER.unpack_from(data, offset)
        if length < NLA_HEADER.size:
            break
        found[kind & 0x3FFF] = data[offset + NLA_HEADER.size : offset + length]
        offset += (length + 3) & ~3
    return found


class Stopped(Exception):
    """Raised by the SIGTERM/SIGINT handler to leave the serving loop at once."""


class DelayLine:
    def __init__(self, queue: int, delay: float):
        self.queue = queue
        self.delay = delay
        self.seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: bursts must not overflow
        self.sock.bind((0, 0))
        self.pending: deque[tuple[float, int]] = deque()
        self.last_seen: int | None = None

    def _request(self, kind: int, attrs: bytes) -> None:
        self.seq += 1
        self.sock.send(_message(kind, self.queue, attrs, self.seq, NLM_F_REQUEST | NLM_F_ACK))
        reply = self.sock.recv(65536)
        _length, kind_, _, _, _ = NLMSG_HEADER.unpack_from(reply)
        if kind_ == NLMSG_ERROR:
            code = -struct.unpack_from("=i", reply, NLMSG_HEADER.size)[0]
            if code:
                raise OSError(code, f"NFQUEUE {self.queue}: {os.strerror(code)}")

    def bind(self) -> None:
        self._request(NFQNL_MSG_CONFIG, _attr(NFQA_CFG_CMD, struct.pack(">BBH", NFQNL_CFG_CMD_BIND, 0, 0)))
        params = struct.pack(">IB", 0, NFQNL_COPY_META)
        config = _attr(NFQA_CFG_PARAMS, params) + _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", QUEUE_MAXLEN))
        self._request(NFQNL_MSG_CONFIG, config)
        self.sock.setblocking(False)

    def _receive(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped what it could not deliver
                    continue
                raise
            now = time.monotonic()
            offset = 0
            while offset + NLMSG_HEADER.size <= len(data):
                length, kind, _, _, _ = NLMSG_HEADER.unpack_from(data, offset)
                if length < NLMSG_HEADER.size:
                    break
                if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    attrs = _attrs(data[offset + NLMSG_HEADER.size + 4 : offset + length])
                    header = attrs.get(NFQA_PACKET_HDR)
                    if header is not None:
                        packet_id = struct.unpack_from(">I", header)[0]
                        self.pending.append((now + self.delay, packet_id))
                        self.last_seen = packet_id
                offset += (length + 3) & ~3

    def _accept_through(self, packet_id: int) -> None:
        self.seq += 1
        verdict = _attr(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, packet_id))
        self.sock.send(_message(NFQNL_MSG_VERDICT_BATCH, self.queue, verdict, self.seq))

    def release_due(self) -> None:
        now = time.monotonic()
        last = None
        while self.pending and self.pending[0][0] <= now:
            last = self.pending.popleft()[1]
        if last is not None:
            self._accept_through(last)

    def run(self) -> None:
        """Serve until a signal raises Stopped."""
        while True:
            timeout = None if not self.pending else max(0.0, self.pending[0][0] - time.monotonic())
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if ready:
                self._receive()
            self.release_due()

    def close(self) -> None:
        # Let everything still held go now, rather than have the kernel drop it on close.
        if self.last_seen is not None:
            self._accept_through(self.last_seen)
        try:
            self.sock.setblocking(True)
            self._request(NFQNL_MSG_CONFIG, _attr(NFQA_CFG_CMD, struct.pack(">BBH", NFQNL_CFG_CMD_UNBIND, 0, 0)))
        except OSError:
            pass
        self.sock.close()


def _tight_timers() -> None:
    """Make wake-ups punctual; each step is best effort (the delay still works without it)."""
    # The default 50 us timer slack would be added to every wake-up; ask for 1 ns.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    # Real-time priority: wake before the load generators sharing the two cores. The loop
    # always blocks in select(), so it cannot starve anything.
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (OSError, AttributeError):
        pass
    # A garbage-collector pause would hold every packet in flight; the loop makes no cycles.
    gc.disable()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.delay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", type=int, required=True, help="NFQUEUE number to serve")
    parser.add_argument("--delay-ms", type=float, required=True, help="added delay in milliseconds")
    parser.add_argument("--ready-file", type=Path, help="created once the queue is bound")
    args = parser.parse_args(argv)

    def _stop(*_: object) -> None:
        raise Stopped

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    _tight_timers()
    line = DelayLine(args.queue, args.delay_ms / 1000.0)
    line.bind()
    if args.ready_file:
        args.ready_file.write_text(str(os.getpid()))
    try:
        line.run()
    except Stopped:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        line.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
