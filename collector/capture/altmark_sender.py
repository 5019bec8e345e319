"""Send UDP traffic marked for alternate marking (RFC 9341/9343), to measure a path with it.

    python -m collector.capture.altmark_sender 2001:db8::1 --flow-mon-id 77 --count 1000 \\
        --block-packets 100 --interval-ms 1 --dscp 34

`Marker` decides each packet's mark: the colour (L flag) alternates every `block_packets`
packets or every `block_ms` milliseconds, and one packet per block, in its middle (away
from the boundaries where reordering blurs the colours), carries the D flag.
`AltMarkSender` puts the mark in a Hop-by-Hop or Destination Options header of an ordinary
UDP socket's packets through ancillary data (IPV6_HOPOPTS / IPV6_DSTOPTS), so the kernel
builds the rest of the packet and routes it; Hop-by-Hop needs CAP_NET_RAW.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

from collector.capture.altmark import AltMark, encode_altmark
from collector.wire.ipv6_ext import options_header as ipv6_options_header

HEADERS = {"hop-by-hop": socket.IPV6_HOPOPTS, "destination": socket.IPV6_DSTOPTS}
PAYLOAD_MAGIC = b"XAM"  # leads every payload, followed by the packet's sequence number
_PAYLOAD = struct.Struct("!3sQ")


class Marker:
    """The mark of each packet of one flow, in sending order."""

    def __init__(self, flow_mon_id: int, *, block_packets: int | None = None, block_ms: float | None = None) -> None:
        if (block_packets is None) == (block_ms is None):
            raise ValueError("give exactly one of block_packets and block_ms")
        if (block_packets is not None and block_packets < 1) or (block_ms is not None and block_ms <= 0):
            raise ValueError("a block must hold at least one packet and last more than 0 ms")
        encode_altmark(AltMark(flow_mon_id, 0, False))  # checks the FlowMonID
        self.flow_mon_id = flow_mon_id
        self._block_packets = block_packets
        self._block_ns = None if block_ms is None else int(block_ms * 1e6)
        self._sent = 0
        self._start_ns: int | None = None
        self._delay_marked_block = -1

    def next(self, now_ns: int) -> tuple[int, AltMark]:
        """(block number, mark) of the next packet, sent at `now_ns`."""
        if self._block_packets is not None:
            block, position = divmod(self._sent, self._block_packets)
            delay = position == self._block_packets // 2
        else:
            assert self._block_ns is not None  # the constructor takes exactly one of the two
            if self._start_ns is None:
                self._start_ns = now_ns
            block, elapsed = divmod(now_ns - self._start_ns, self._block_ns)
            delay = block != self._delay_marked_block and 2 * elapsed >= self._block_ns
        if delay:
            self._delay_marked_block = block
        self._sent += 1
        return block, AltMark(self.flow_mon_id, block % 2, delay)


def options_header(mark: AltMark) -> bytes:
    """A Hop-by-Hop or Destination Options header holding only the option: 8 octets, no padding.
    The kernel fills in its Next Header."""
    return ipv6_options_header(0, [encode_altmark(mark)])


@dataclass
class SendReport:
    sent: int = 0
    per_block: list[int] = field(default_factory=list)  # packets sent in each block, in order
    delay_marked: int = 0

    def add(self, block: int, mark: AltMark) -> None:
        while len(self.per_block) <= block:
            self.per_block.append(0)
        self.per_block[block] += 1
        self.sent += 1
        self.delay_marked += mark.delay_flag


class AltMarkSender:
    """Marked UDP datagrams to one destination from one socket (one flow, one FlowMonID)."""

    def __init__(
        self,
        destination: str,
        port: int,
        marker: Marker,
        *,
        header: str = "hop-by-hop",
        dscp: int = 0,
        source: str | None = None,
        payload_size: int = 64,
    ) -> None:
        if header not in HEADERS:
            raise ValueError(f"header must be one of {', '.join(HEADERS)}")
        self._destination = (destination, port)
        self._marker = marker
        self._level = HEADERS[header]
        self._padding = b"\x00" * max(payload_size - _PAYLOAD.size, 0)
        self._socket = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self._socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, dscp << 2)
        if source is not None:
            self._socket.bind((source, 0))

    def send(self, count: int, interval_s: float = 0.0) -> SendReport:
        """Send `count` datagrams, one every `interval_s` (paced against the clock, no drift)."""
        report = SendReport()
        start = time.monotonic()
        for sequence in range(count):
            if interval_s:
                delay = start + sequence * interval_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            block, mark = self._marker.next(time.monotonic_ns())
            payload = _PAYLOAD.pack(PAYLOAD_MAGIC, sequence) + self._padding
            self._socket.sendmsg(
                [payload], [(socket.IPPROTO_IPV6, self._level, options_header(mark))], 0, self._destination
            )
            report.add(block, mark)
        return report

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> AltMarkSender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m collector.capture.altmark_sender", description=__doc__.split("\n")[0]
    )
    parser.add_argument("destination", help="IPv6 address to send to")
    parser.add_argument("--port", type=int, default=9, help="UDP destination port (default 9, discard)")
    parser.add_argument("--flow-mon-id", type=int, required=True, help="FlowMonID, 0..1048575")
    blocks = parser.add_mutually_exclusive_group(required=True)
    blocks.add_argument("--block-packets", type=int, help="switch colour every N packets")
    blocks.add_argument("--block-ms", type=float, help="switch colour every T milliseconds")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--interval-ms", type=float, default=1.0)
    parser.add_argument("--header", choices=sorted(HEADERS), default="hop-by-hop")
    parser.add_argument("--dscp", type=int, default=0)
    parser.add_argument("--source", help="source address to bind")
    parser.add_argument("--size", type=int, default=64, help="UDP payload octets")
    args = parser.parse_args(argv)
    try:
        marker = Marker(args.flow_mon_id, block_packets=args.block_packets, block_ms=args.block_ms)
        with AltMarkSender(
            args.destination,
            args.port,
            marker,
            header=args.header,
            dscp=args.dscp,
            source=args.source,
            payload_size=args.size,
        ) as sender:
            report = sender.send(args.count, args.interval_ms / 1000)
    except (ValueError, OSError) as exc:
        print(f"altmark_sender: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"sent": report.sent, "per_block": report.per_block, "delay_marked": report.delay_marked}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
