"""Live capture from an interface (AF_PACKET) with 1:N packet sampling, into flow records.

Every packet is received and counted (packets and octets, whatever it carries); one in N
on average is dissected, classified and aggregated, and its flow record's packets and
bytes are multiplied by N. `observers` (passive TCP RTT, alternate marking) see every IP
packet, sampled or not, as they need full-rate traffic.

Choices:
- Sampling is random, as sFlow's is: after each sampled packet the number of packets to
  skip is drawn from the geometric distribution of mean N-1, so every packet is sampled
  independently with probability 1/N. A count-based "every Nth packet" is cheaper by a
  random draw but locks onto periodic traffic (a probe stream every N packets would be
  always or never seen); random sampling gives unbiased estimates whose error shrinks as
  1/sqrt(samples). The seed can be fixed for tests.
- Packets come in bursts with recvmmsg(2) (`collector.system.mmsg.DatagramBatch`): one system
  call for up to `batch` packets instead of one each, and no kernel filter, so nothing is
  lost from the count. Kernel receive timestamps (SO_TIMESTAMPNS) are read only for
  packets that are dissected or observed.
- The socket sees both directions of the interface, as tcpdump does (on loopback, where
  each packet passes out and in, only once, as libpcap does); the kernel's own
  count of packets it could not queue (PACKET_STATISTICS) is reported as `kernel_drops`.
- A capture inside another network namespace is the caller's business (the command runs
  itself under `ip netns exec`).
"""

from __future__ import annotations

import logging
import math
import random
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from collector.capture.aggregate import FlowAggregator
from collector.contract.records import FlowRecord
from collector.system.mmsg import DatagramBatch
from collector.wire.dissect import DEFAULT_SLICE_OPTION, dissect_ip, ip_offset_in_ethernet, malformed_kind
from collector.wire.ipv6_ext import MalformedPacket

log = logging.getLogger(__name__)

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")
_PACKET_STATS = struct.Struct("@II")  # tp_packets, tp_drops
# ARPHRD_* link types whose frames start with the IP header (no Ethernet header)
RAW_IP_DEVICE_TYPES = frozenset({519, 0xFFFE})  # ARPHRD_RAWIP, ARPHRD_NONE (tun)
LOOPBACK_DEVICE_TYPE = 772  # ARPHRD_LOOPBACK
PACKET_OUTGOING = 4  # sll_pkttype of a packet this host sent
_SLL_PKTTYPE_OFFSET = 10  # in struct sockaddr_ll
MAX_FRAME = 65536  # a GRO super-packet on a veth can exceed the MTU
ERROR_PAUSE_S = 0.1  # after a receive error: an error that repeats must not spin a core


class Sampler:
    """Decides which packets to dissect: each with probability 1/rate (geometric skips)."""

    __slots__ = ("rate", "_skip", "_log", "_random")

    def __init__(self, rate: int, seed: int | None = None) -> None:
        if rate < 1:
            raise ValueError(f"sampling rate must be 1 or more (1:N), got {rate}")
        self.rate = rate
        self._random = random.Random(seed)
        self._log = math.log(1.0 - 1.0 / rate) if rate > 1 else 0.0
        self._skip = self._draw()

    def _draw(self) -> int:
        if self.rate == 1:
            return 0
        return int(math.log(1.0 - self._random.random()) / self._log)

    def take(self) -> bool:
        """True for a packet to dissect; call once per packet."""
        if self._skip:
            self._skip -= 1
            return False
        self._skip = self._draw()
        return True


@dataclass
class CaptureStats:
    packets: int = 0  # every packet received, sampled or not
    octets: int = 0  # their frame lengths
    sampled: int = 0  # packets dissected
    not_ip: int = 0  # sampled packets that carried no IP
    malformed: dict[str, int] = field(default_factory=dict)  # kind -> sampled packets dropped
    kernel_drops: int = 0  # packets the kernel could not queue for us
    errors: int = 0  # receive errors survived (the interface went down: ENETDOWN), and restarts of the loop


class LiveCapture:
    """Reads packets from `interface` into `aggregator` until `stop()` or the duration ends."""

    def __init__(
        self,
        interface: str,
        aggregator: FlowAggregator,
        *,
        sampler: Sampler | None = None,
        observers: tuple = (),
        slice_option_type: int = DEFAULT_SLICE_OPTION,
        batch: int = 64,
        receive_buffer_bytes: int = 8 << 20,
    ) -> None:
        self.interface = interface
        self.aggregator = aggregator
        self.sampler = sampler or Sampler(aggregator.sampling_rate)
        if self.sampler.rate != aggregator.sampling_rate:
            raise ValueError("the sampler's rate and the aggregator's must be the same")
        self.observers = observers
        # counting points need the direction a packet crossed the interface
        self._directed = tuple(o for o in observers if hasattr(o, "observe_directed"))
        self._undirected = tuple(o for o in observers if not hasattr(o, "observe_directed"))
        # counting points learn when the socket dropped packets and how far it was read, after
        # every turn of bursts
        self._drop_watchers = tuple(o for o in observers if hasattr(o, "note_drops"))
        self._first_since_read_ns: int | None = None  # the oldest packet received since the last reading
        self._last_read_ns = time.time_ns()
        # when a receive last found the socket empty: every packet queued before then has been
        # read (a turn that ends with packets still queued leaves it as it was)
        self._drained_ns: int | None = None
        self.slice_option_type = slice_option_type
        self.stats = CaptureStats()
        self.records: list[FlowRecord] = []  # finished records, in the order they ended
        device_type = _device_type(interface)
        self._raw_ip = device_type in RAW_IP_DEVICE_TYPES
        # On loopback every packet passes twice, out and back in: count it once, as libpcap does.
        self._loopback = device_type == LOOPBACK_DEVICE_TYPE
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
            self._sock.bind((interface, ETH_P_ALL))
            self._batch = DatagramBatch(capacity=batch, size=MAX_FRAME, control=64)
        except BaseException:
            self._sock.close()
            raise
        self._stopping = False

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> LiveCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stop(self) -> None:
        self._stopping = True

    def run(
        self,
        duration_s: float | None = None,
        *,
        on_records: Callable[[list[FlowRecord]], None] | None = None,
        expire_every_s: float = 1.0,
    ) -> list[FlowRecord]:
        """Captures for `duration_s` (or until stop()); ends every record at the end and
        returns all finished records. `on_records` gets them as they end instead."""
        deliver = on_records or self.records.extend
        deadline = None if duration_s is None else time.monotonic() + duration_s
        next_expiry = time.monotonic() + expire_every_s
        fd = self._sock.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        failing = False
        try:
            while not self._stopping:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                wait = min(next_expiry, deadline if deadline is not None else next_expiry) - now
                polled_ns = time.time_ns()
                if not poller.poll(max(0, int(wait * 1000) + 1)):
                    self._drained_ns = polled_ns  # nothing came all along: the socket was empty
                else:
                    try:
                        # A busy interface keeps the socket from ever running dry: the bursts
                        # stop for the expiry, the deadline and stop(), or records would pile
                        # up unreported (and a stop never be seen) for as long as traffic lasts.
                        turn_ends = next_expiry if deadline is None else min(next_expiry, deadline)
                        while True:
                            before_ns = time.time_ns()
                            if not self._receive_burst(fd):
                                self._drained_ns = before_ns  # every packet queued before it was read
                                break
                            failing = False
                            if self._stopping or time.monotonic() >= turn_ends:
                                break
                        if self._drop_watchers:
                            self._read_kernel_drops()
                    except OSError as exc:  # the interface went down (ENETDOWN): it may come back up
                        self.stats.errors += 1
                        if not failing:  # once per run of errors, not per retry
                            log.warning("capture on %s: %s; capturing on", self.interface, exc.strerror or exc)
                        failing = True
                        time.sleep(ERROR_PAUSE_S)
                if time.monotonic() >= next_expiry:
                    next_expiry = time.monotonic() + expire_every_s
                    self._read_kernel_drops()  # a long-running capture reports its drops as they happen
                    finished = self.aggregator.expire(time.time_ns())
                    if finished:
                        deliver(finished)
        finally:  # also on KeyboardInterrupt: what was captured is still reported
            self._read_kernel_drops()
            finished = self.aggregator.flush()
            if finished:
                deliver(finished)
        return self.records

    def _receive_burst(self, fd: int) -> int:
        batch = self._batch
        count = batch.receive(fd)
        stats = self.stats
        take = self.sampler.take
        observers = self.observers
        loopback = self._loopback
        for i in range(count):
            outgoing = batch.address(i)[_SLL_PKTTYPE_OFFSET] == PACKET_OUTGOING
            if loopback and outgoing:
                continue
            length = batch.length(i)
            stats.packets += 1
            stats.octets += length
            sampled = take()
            if not (sampled or observers):
                continue
            self._dissect(batch.slots[i][:length], _timestamp(batch.control(i)), sampled, outgoing)
        return count

    def _dissect(self, frame: memoryview, ts_ns: int, sampled: bool, outgoing: bool = False) -> None:
        stats = self.stats
        if self._first_since_read_ns is None:
            self._first_since_read_ns = ts_ns
        try:
            offset = 0 if self._raw_ip else ip_offset_in_ethernet(frame)
            if offset is None:
                stats.not_ip += sampled
                return
            for observer in self._undirected:
                observer.observe(ts_ns, frame, offset)
            for observer in self._directed:
                observer.observe_directed(ts_ns, frame, offset, outgoing)
            if sampled:
                stats.sampled += 1
                self.aggregator.add(ts_ns, dissect_ip(frame, offset, slice_option_type=self.slice_option_type))
        except MalformedPacket as exc:
            if sampled:
                kind = malformed_kind(exc)
                stats.malformed[kind] = stats.malformed.get(kind, 0) + 1

    def _read_kernel_drops(self) -> None:
        try:
            raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _PACKET_STATS.size)
        except OSError:
            return
        dropped = _PACKET_STATS.unpack(raw)[1]  # reading resets the kernel's counters
        self.stats.kernel_drops += dropped
        now_ns = time.time_ns()
        # a drop needs a full buffer, which held the oldest packet received since the last reading
        after_ns = self._last_read_ns if self._first_since_read_ns is None else self._first_since_read_ns
        for watcher in self._drop_watchers:
            watcher.note_drops(after_ns, now_ns, dropped, self._drained_ns)
        self._first_since_read_ns = None
        self._last_read_ns = now_ns


def _timestamp(control: list[tuple[int, int, memoryview]]) -> int:
    for level, kind, data in control:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return seconds * 1_000_000_000 + nanoseconds
    return time.time_ns()


def _device_type(interface: str) -> int:
    """The interface's ARPHRD_* type (1 Ethernet, 772 loopback, 65534 tun ...)."""
    try:
        with open(f"/sys/class/net/{interface}/type") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        raise OSError(f"no interface {interface!r} in this network namespace") from None
