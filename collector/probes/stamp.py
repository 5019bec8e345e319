"""STAMP Session-Sender over a real UDP socket (RFC 8762 section 4.2), driven by asyncio.

The socket layer only: per-slice traffic class, IPv6 flow label, source address, kernel
receive timestamps (SO_TIMESTAMPNS), and T1 read immediately before `sendto`. Matching,
timeouts and loss attribution live in `stamp_session`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from collector import netsock
from collector.probes.stamp_session import ReplyFacts, SenderSettings, StampSession
from collector.records import ProbeResult

RECEIVE_BUFFER = 65535


@dataclass(frozen=True)
class StampEndpoint:
    address: str
    port: int = 862
    source: str | None = None  # local address to send from
    flow_label: int | None = None  # IPv6 flow label, leased from the kernel


class StampProbe:
    """One STAMP test session towards one reflector."""

    def __init__(self, endpoint: StampEndpoint, settings: SenderSettings) -> None:
        self.endpoint = endpoint
        self.session = StampSession(settings)
        self.send_errors = 0
        self.last_send_error: str | None = None
        self._sock = self._open()
        self._results: asyncio.Queue[ProbeResult] | None = None
        self._sent_seqs: dict[int, int] = {}  # kernel send index -> sequence number
        self._send_index = 0
        self._failure: Exception | None = None

    def _open(self) -> socket.socket:
        ep = self.endpoint
        family = netsock.family_of(ep.address)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            netsock.enable_receive_metadata(sock)
            netsock.enable_tx_timestamps(sock)
            netsock.enable_icmp_errors(sock)
            netsock.set_traffic_class(sock, self.session.settings.dscp << 2)
            netsock.set_hop_limit(sock, 255)  # so the reflector's copy tells the forward hop count
            if ep.source:
                sock.bind((ep.source, 0))
            if ep.flow_label:
                if family != socket.AF_INET6:
                    raise ValueError("a flow label needs an IPv6 target")
                netsock.lease_flow_label(sock, ep.address, ep.flow_label)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    @property
    def destination(self) -> tuple:
        ep = self.endpoint
        if netsock.family_of(ep.address) == socket.AF_INET6:
            return (ep.address, ep.port, ep.flow_label or 0, 0)
        return (ep.address, ep.port)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> StampProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending and receiving -----------------------------------------------------------

    def send_one(self) -> int:
        """Send the next request now; returns its sequence number."""
        send_ns = time.time_ns()
        seq, octets = self.session.request(send_ns)
        try:
            self._sock.sendto(octets, self.destination)
        except OSError as exc:
            self.send_errors += 1
            self.last_send_error = f"{exc.strerror or exc}"
            return seq
        self._sent_seqs[self._send_index] = seq
        self._send_index += 1
        return seq

    def _read_error_queue(self) -> None:
        assert self._results is not None
        stamps, icmp_errors = netsock.read_error_queue(self._sock)
        for index, kernel_ns in stamps:
            seq = self._sent_seqs.pop(index, None)
            if seq is not None:
                self.session.on_transmitted(seq, kernel_ns)
        if len(self._sent_seqs) > 4096:  # reports that never came (e.g. a send was dropped)
            for index in sorted(self._sent_seqs)[:-1024]:
                del self._sent_seqs[index]
        for error in icmp_errors:
            if len(error.payload) >= 4:  # our sequence number leads the payload
                seq = int.from_bytes(error.payload[:4], "big")
                for result in self.session.on_icmp_error(seq, error.describe()):
                    self._results.put_nowait(result)

    def _on_readable(self) -> None:
        try:
            self._drain()
        except Exception as exc:  # a bug: stop the run with it rather than spin on the socket
            self._failure = exc
            asyncio.get_running_loop().remove_reader(self._sock.fileno())

    def _drain(self) -> None:
        assert self._results is not None
        self._read_error_queue()  # first, so that T1 is the kernel's before replies match
        while True:
            try:
                data, ancdata, _flags, _addr = self._sock.recvmsg(RECEIVE_BUFFER, netsock.ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # a queued ICMP error surfaced here; its details are on the error queue
                self._read_error_queue()
                continue
            meta = netsock.parse_ancillary(ancdata)
            facts = ReplyFacts(meta.kernel_ns or time.time_ns(), meta.hop_limit, meta.dscp)
            for result in self.session.on_reply(data, facts):
                self._results.put_nowait(result)

    async def run(self, count: int | None, interval_s: float) -> AsyncIterator[ProbeResult]:
        """Send `count` requests (None: until cancelled) every `interval_s`, yielding results
        as they settle; after the last request, wait for its reply or timeout."""
        loop = asyncio.get_running_loop()
        self._results = asyncio.Queue()
        loop.add_reader(self._sock.fileno(), self._on_readable)
        sender = asyncio.create_task(self._send_loop(count, interval_s))
        try:
            while True:
                try:
                    result = await asyncio.wait_for(self._results.get(), timeout=0.05)
                    yield result
                except asyncio.TimeoutError:
                    pass
                for result in self.session.expire(time.time_ns()):
                    yield result
                if self._failure is not None:
                    raise self._failure
                if sender.done() and self.session.outstanding == 0 and self._results.empty():
                    break
            sender.result()
            for result in self.session.flush():
                yield result
        finally:
            sender.cancel()
            loop.remove_reader(self._sock.fileno())

    async def _send_loop(self, count: int | None, interval_s: float) -> None:
        start = time.monotonic()
        sent = 0
        while count is None or sent < count:
            self.send_one()
            sent += 1
            if count is not None and sent >= count:
                break
            # An absolute schedule, so send times do not drift with processing time.
            await asyncio.sleep(max(0.0, start + sent * interval_s - time.monotonic()))
        # Wait out the last timeout; the receive loop settles or expires what is left.
        deadline = time.monotonic() + self.session.settings.timeout_ns / 1e9
        while self.session.outstanding and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
