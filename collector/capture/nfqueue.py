"""A netfilter queue (NFQUEUE) over its netlink protocol: packets in, verdicts out.

An ip6tables rule `-j NFQUEUE --queue-num N` hands the packets it matches to the process
bound to queue N, which answers each with a verdict (accept, drop) and, for accept,
optionally the packet's new bytes. `NfQueue` speaks nfnetlink_queue (linux/netfilter/
nfnetlink_queue.h) on an AF_NETLINK socket itself: the protocol is a handful of fixed
structures, and writing them here spares a C library and its build (libnetfilter_queue and
a Cython binding) for the one thing the marker needs.

Choices:
- The queue is bound in copy-packet mode with `NFQA_CFG_F_FAIL_OPEN`: when the queue is full
  the kernel lets packets pass unmarked instead of dropping them, so the marker can never
  lose business traffic; those passed and the ones the kernel dropped are counted in
  `/proc/net/netfilter/nfnetlink_queue` (`kernel_counters`).
- Without `NFQA_CFG_F_GSO` the kernel segments GSO packets and resolves partial checksums
  before queueing, so what arrives is a whole, checksummed IP packet per message.
- Verdicts are sent one per packet, in arrival order; the socket's receive buffer is large
  (forced past net.core.rmem_max, which CAP_NET_ADMIN allows) so a burst waits in the
  kernel rather than being refused (ENOBUFS is counted).
- A user that only holds packets (the lab's delay line) binds with `copy_packets=False`
  (metadata only: the packet stays in the kernel) and without fail-open, and releases
  packets in order with one batch verdict (`verdict_batch`).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_META = 1
NFQNL_COPY_PACKET = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQA_CFG_F_FAIL_OPEN = 1
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_PAYLOAD = 10
NF_DROP = 0
NF_ACCEPT = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 1
NLM_F_ACK = 4
SOL_NETLINK = 270
SO_RCVBUFFORCE = 33
MAX_PACKET = 65535
RECEIVE_BUFFER = 8 << 20

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("!BBH")
_NLATTR = struct.Struct("=HH")
_PACKET_HDR = struct.Struct("!IHB")
_VERDICT_HDR = struct.Struct("!II")
_HEADERS = _NLMSGHDR.size + _NFGENMSG.size
_PACKET_TYPE = NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_PACKET


class NfQueueError(OSError):
    """The kernel refused a configuration (no such queue, bound by another process, no CAP_NET_ADMIN)."""


@dataclass(frozen=True, slots=True)
class QueuedPacket:
    packet_id: int
    hook: int
    payload: bytes  # the IP packet (empty when bound with copy_packets=False)


@dataclass(frozen=True, slots=True)
class KernelQueueCounters:
    """One queue's line of /proc/net/netfilter/nfnetlink_queue."""

    waiting: int  # packets queued, without a verdict yet
    dropped: int  # the queue was full (with fail-open: passed unmarked instead)
    user_dropped: int  # the netlink socket was full


def _attr(kind: int, data: bytes) -> bytes:
    length = _NLATTR.size + len(data)
    return _NLATTR.pack(length, kind) + data + b"\x00" * (-length % 4)


def _attrs(buffer: memoryview, offset: int, end: int) -> dict[int, memoryview]:
    found: dict[int, memoryview] = {}
    while offset + _NLATTR.size <= end:
        length, kind = _NLATTR.unpack_from(buffer, offset)
        if length < _NLATTR.size or offset + length > end:
            break
        found[kind & 0x3FFF] = buffer[offset + _NLATTR.size : offset + length]
        offset += (length + 3) & ~3
    return found


class NfQueue:
    """Queue `number`, bound in this process's network namespace (needs CAP_NET_ADMIN).
    `copy_packets`: each message carries the packet's bytes (else metadata only);
    `fail_open`: a full queue passes packets instead of dropping them."""

    def __init__(
        self, number: int, *, max_length: int = 4096, copy_packets: bool = True, fail_open: bool = True
    ) -> None:
        if not 0 <= number <= 0xFFFF:
            raise ValueError(f"queue number must be 0..65535, got {number}")
        self.number = number
        self._socket = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self._sequence = 0
        self.overruns = 0  # ENOBUFS: the kernel had to drop messages for this socket
        self._buffer = bytearray(MAX_PACKET + 4096)
        try:
            self._set_receive_buffer()
            self._socket.bind((0, 0))
            self._configure(_attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)))
            copy = (MAX_PACKET, NFQNL_COPY_PACKET) if copy_packets else (0, NFQNL_COPY_META)
            flags = NFQA_CFG_F_FAIL_OPEN if fail_open else 0
            self._configure(
                _attr(NFQA_CFG_PARAMS, struct.pack("!IB", *copy))
                + _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", max_length))
                + _attr(NFQA_CFG_FLAGS, struct.pack("!I", flags))
                + _attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN))
            )
        except BaseException:
            self._socket.close()
            raise

    def _set_receive_buffer(self) -> None:
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
        except PermissionError:  # CAP_NET_ADMIN in a user namespace only: the capped buffer
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)

    def _message(self, kind: int, body: bytes, flags: int = NLM_F_REQUEST) -> bytes:
        self._sequence += 1
        header = _NFGENMSG.pack(socket.AF_UNSPEC, 0, self.number)
        return (
            _NLMSGHDR.pack(
                _NLMSGHDR.size + len(header) + len(body), NFNL_SUBSYS_QUEUE << 8 | kind, flags, self._sequence, 0
            )
            + header
            + body
        )

    def _configure(self, body: bytes) -> None:
        """Send a configuration message and wait for its acknowledgment."""
        self._socket.send(self._message(NFQNL_MSG_CONFIG, body, NLM_F_REQUEST | NLM_F_ACK))
        while True:
            size = self._socket.recv_into(self._buffer)
            view = memoryview(self._buffer)[:size]
            _length, kind, _flags, sequence, _pid = _NLMSGHDR.unpack_from(view, 0)
            if kind == NLMSG_ERROR and sequence == self._sequence:
                code = -struct.unpack_from("=i", view, _NLMSGHDR.size)[0]
                if code:
                    raise NfQueueError(code, f"nfqueue {self.number}: {os.strerror(code)}")
                return

    def fileno(self) -> int:
        return self._socket.fileno()

    def settimeout(self, seconds: float | None) -> None:
        self._socket.settimeout(seconds)

    def receive(self) -> QueuedPacket | None:
        """The next queued packet; None for a message that is not one (an ack, an error).
        TimeoutError after the socket's timeout (BlockingIOError with a timeout of 0: nothing
        waiting); an overrun is counted and returns None."""
        try:
            size = self._socket.recv_into(self._buffer)
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                self.overruns += 1
                return None
            raise
        view = memoryview(self._buffer)[:size]
        if size < _HEADERS:
            return None
        length, kind, _flags, _sequence, _pid = _NLMSGHDR.unpack_from(view, 0)
        if kind != _PACKET_TYPE or length > size:
            return None
        attrs = _attrs(view, _HEADERS, length)
        header, payload = attrs.get(NFQA_PACKET_HDR), attrs.get(NFQA_PAYLOAD)
        if header is None or len(header) < _PACKET_HDR.size:
            return None
        packet_id, _protocol, hook = _PACKET_HDR.unpack_from(header, 0)
        return QueuedPacket(packet_id, hook, b"" if payload is None else bytes(payload))

    def verdict(self, packet_id: int, verdict: int = NF_ACCEPT, payload: bytes | None = None) -> None:
        """Accept or drop a packet; with `payload`, the kernel sends those bytes instead."""
        body = _attr(NFQA_VERDICT_HDR, _VERDICT_HDR.pack(verdict, packet_id))
        if payload is not None:
            body += _attr(NFQA_PAYLOAD, payload)
        self._socket.send(self._message(NFQNL_MSG_VERDICT, body))

    def verdict_batch(self, last_id: int, verdict: int = NF_ACCEPT) -> None:
        """The same verdict for every packet still queued up to and including `last_id`."""
        body = _attr(NFQA_VERDICT_HDR, _VERDICT_HDR.pack(verdict, last_id))
        self._socket.send(self._message(NFQNL_MSG_VERDICT_BATCH, body))

    def close(self) -> None:
        """Unbind (queued packets without a verdict are then dropped by the kernel) and close."""
        try:
            self._socket.send(
                self._message(NFQNL_MSG_CONFIG, _attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_UNBIND, 0)))
            )
        except OSError:
            pass  # closing the socket unbinds as well
        self._socket.close()

    def __enter__(self) -> NfQueue:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def kernel_counters(number: int, text: str | None = None) -> KernelQueueCounters | None:
    """The kernel's counters of queue `number` in this network namespace (None: not bound).
    Columns: queue, peer port id, queue total, copy mode, copy range, queue dropped,
    user dropped, id sequence, 1."""
    if text is None:
        try:
            # thread-self: the calling thread's namespace (one may have joined another)
            with open("/proc/thread-self/net/netfilter/nfnetlink_queue") as file:
                text = file.read()
        except FileNotFoundError:
            return None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 7 and fields[0].isdigit() and int(fields[0]) == number:
            return KernelQueueCounters(int(fields[2]), int(fields[5]), int(fields[6]))
    return None
