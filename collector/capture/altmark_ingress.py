"""Alternate marking at the ingress, as a PE router does it: real packets marked on their way out.

    python -m collector.capture.altmark_ingress --queue 7 --site-index 3 --slice video \\
        --dscp 34 --destination 2001:db8:100::/48 --max-flows 8 --block-s 1 --install-rule

An ip6tables rule in the ingress site's network namespace (mangle POSTROUTING: what the site
sends and what it forwards) selects the monitored traffic by DSCP, destination prefixes,
protocol and ports and hands it to NFQUEUE (`collector.capture.nfqueue`); `IngressMarker`
gives each new flow (5-tuple) a FlowMonID, inserts the RFC 9343 option in a new Hop-by-Hop
header right after the IPv6 header (or, with `--header destination`, a Destination Options
header: read by the destination only, counted by the counting points alike), with the
slice ID option (`--slice-id`, `collector.wire.slice_option`) beside it in the Hop-by-Hop
header when configured, and the packet is reinjected.

Choices:
- FlowMonIDs are unique across the extranet without coordination: the 20 bits are the
  site's index (`site_bits`, 12 by default: 4,096 sites) followed by a local number (8 bits:
  256 flows at once per site). A flow idle for `idle_s` gives its number back, to the end
  of the free list, so a number is reused as late as possible.
- The colour follows the wall clock: block = time // period, colour = block % 2, so every
  flow of every site flips together and the analyzer lines up blocks by period.
- `delay_marks` packets per block carry the D flag: the first packet after each of the
  instants i/(delay_marks+1) of the period, away from the flips where reordering blurs
  the colours.
- Only what can be marked exactly is marked: a packet that already has extension headers,
  or that would exceed `mtu` with the 8 octets added, or of a flow beyond `max_flows`,
  passes unchanged and is counted by reason. Upper-layer checksums need no change: the
  pseudo-header's addresses and upper-layer length stay the same.
- The marker never drops: every packet gets an accept verdict (and the queue fails open),
  so marking can cost delay but not loss.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from collector.capture.altmark import AltMark, encode_altmark
from collector.capture.nfqueue import NfQueue, kernel_counters
from collector.wire.ipv6_ext import DESTINATION_OPTIONS, EXTENSION_HEADERS, HOP_BY_HOP, IPV6_HEADER_LEN, options_header
from collector.wire.slice_option import DEFAULT_SLICE_OPTION, encode_slice_option

FLOW_MON_ID_BITS = 20
HEADERS = {"hop-by-hop": HOP_BY_HOP, "destination": DESTINATION_OPTIONS}  # where the RFC 9343 option goes
PORT_PROTOCOLS = {6: "tcp", 17: "udp"}
SKIP_REASONS = ("extension-headers", "too-big", "flow-limit", "not-ipv6")


class FlowMonIds:
    """FlowMonIDs of one site: its index in the high bits, a local number in the low."""

    def __init__(self, site_index: int, *, site_bits: int = 12) -> None:
        if not 1 <= site_bits < FLOW_MON_ID_BITS or not 0 <= site_index < 1 << site_bits:
            raise ValueError(f"site index must be 0..{(1 << site_bits) - 1} with {site_bits} site bits")
        local_bits = FLOW_MON_ID_BITS - site_bits
        self._base = site_index << local_bits
        self._local_mask = (1 << local_bits) - 1
        self._free = deque(range(1 << local_bits))

    def take(self) -> int | None:
        """A free FlowMonID, None when all are in use."""
        return self._base | self._free.popleft() if self._free else None

    def give_back(self, flow_mon_id: int) -> None:
        self._free.append(flow_mon_id & self._local_mask)


def marking_headers(upper: int, mark: AltMark, header: str = "hop-by-hop", slice_option: bytes = b"") -> bytes:
    """The extension headers a marked packet gains, in order, the last followed by `upper`:
    the RFC 9343 option in a Hop-by-Hop header (8 octets) or a Destination Options header
    (8 octets); the slice ID option (`collector.wire.slice_option`), when given, in the
    Hop-by-Hop header (beside the mark: 16 octets, padded) or one of its own before the
    Destination Options header (RFC 8200 order)."""
    altmark = encode_altmark(mark)
    if header == "hop-by-hop":
        return options_header(upper, [altmark, slice_option] if slice_option else [altmark])
    destination = options_header(upper, [altmark])
    return options_header(DESTINATION_OPTIONS, [slice_option]) + destination if slice_option else destination


def insert_altmark(packet: bytes, mark: AltMark, header: str = "hop-by-hop", slice_option: bytes = b"") -> bytes:
    """The IPv6 packet with its `marking_headers` right after the fixed header and its payload
    length grown by theirs. The packet must have no extension headers."""
    added = marking_headers(packet[6], mark, header, slice_option)
    payload_length = int.from_bytes(packet[4:6], "big") + len(added)
    first = HOP_BY_HOP if header == "hop-by-hop" or slice_option else DESTINATION_OPTIONS
    return b"".join(
        (
            packet[:4],
            payload_length.to_bytes(2, "big"),
            bytes((first,)),
            packet[7:IPV6_HEADER_LEN],
            added,
            packet[IPV6_HEADER_LEN:],
        )
    )


def flow_key(packet: bytes) -> bytes:
    """Addresses, protocol and (for TCP and UDP) ports of a packet without extension headers."""
    protocol = packet[6]
    ports = packet[IPV6_HEADER_LEN : IPV6_HEADER_LEN + 4] if protocol in PORT_PROTOCOLS else b""
    return packet[8:40] + bytes((protocol,)) + ports


class _Flow:
    __slots__ = ("flow_mon_id", "block", "next_delay", "last_ns")

    def __init__(self, flow_mon_id: int) -> None:
        self.flow_mon_id = flow_mon_id
        self.block = -1
        self.next_delay = 0
        self.last_ns = 0


@dataclass
class MarkerCounters:
    marked: int = 0
    delay_marked: int = 0
    skipped: dict[str, int] | None = None
    flows_started: int = 0
    flows_ended: int = 0

    def __post_init__(self) -> None:
        if self.skipped is None:
            self.skipped = dict.fromkeys(SKIP_REASONS, 0)


class IngressMarker:
    """Marks the packets of up to `max_flows` flows at once; `mark` decides each packet."""

    def __init__(
        self,
        flow_mon_ids: FlowMonIds,
        *,
        block_s: float = 1.0,
        delay_marks: int = 2,
        max_flows: int = 16,
        idle_s: float = 10.0,
        mtu: int = 1500,
        header: str = "hop-by-hop",
        slice_id: int | None = None,
        slice_option_type: int = DEFAULT_SLICE_OPTION,
    ) -> None:
        if block_s <= 0 or delay_marks < 0 or max_flows < 1 or idle_s <= 0 or mtu < 1280:
            raise ValueError("block_s and idle_s must be > 0, delay_marks >= 0, max_flows >= 1, mtu >= 1280")
        if header not in HEADERS:
            raise ValueError(f"header must be one of {', '.join(HEADERS)}")
        self._header = header
        self._slice_option = b"" if slice_id is None else encode_slice_option(slice_id, slice_option_type)
        self._added = len(marking_headers(0, AltMark(0, 0, False), header, self._slice_option))
        self._ids = flow_mon_ids
        self.block_ns = int(block_s * 1e9)
        self._delay_at_ns = [self.block_ns * (i + 1) // (delay_marks + 1) for i in range(delay_marks)]
        self._max_flows = max_flows
        self._idle_ns = int(idle_s * 1e9)
        self._mtu = mtu
        self._flows: dict[bytes, _Flow] = {}
        self._next_expiry_ns = 0
        self.counters = MarkerCounters()

    def flows(self) -> dict[bytes, int]:
        """Flow key -> FlowMonID of the flows being marked."""
        return {key: flow.flow_mon_id for key, flow in self._flows.items()}

    def mark(self, packet: bytes, now_ns: int) -> bytes | None:
        """The packet with its mark, or None to let it pass unchanged (counted by reason)."""
        skipped = self.counters.skipped
        assert skipped is not None
        if len(packet) < IPV6_HEADER_LEN or packet[0] >> 4 != 6:
            skipped["not-ipv6"] += 1
            return None
        if packet[6] in EXTENSION_HEADERS:
            skipped["extension-headers"] += 1
            return None
        if len(packet) + self._added > self._mtu:
            skipped["too-big"] += 1
            return None
        if now_ns >= self._next_expiry_ns:
            self._expire(now_ns)
        key = flow_key(packet)
        flow = self._flows.get(key)
        if flow is None:
            flow_mon_id = self._ids.take() if len(self._flows) < self._max_flows else None
            if flow_mon_id is None:
                skipped["flow-limit"] += 1
                return None
            flow = self._flows[key] = _Flow(flow_mon_id)
            self.counters.flows_started += 1
        flow.last_ns = now_ns
        block, into_block = divmod(now_ns, self.block_ns)
        if block != flow.block:
            flow.block, flow.next_delay = block, 0
        delay = flow.next_delay < len(self._delay_at_ns) and into_block >= self._delay_at_ns[flow.next_delay]
        if delay:
            # one D packet per instant passed, even if several passed since the last packet
            flow.next_delay = sum(1 for at in self._delay_at_ns if into_block >= at)
            self.counters.delay_marked += 1
        self.counters.marked += 1
        return insert_altmark(packet, AltMark(flow.flow_mon_id, block & 1, delay), self._header, self._slice_option)

    def _expire(self, now_ns: int) -> None:
        for key in [key for key, flow in self._flows.items() if now_ns - flow.last_ns > self._idle_ns]:
            self._ids.give_back(self._flows.pop(key).flow_mon_id)
            self.counters.flows_ended += 1
        self._next_expiry_ns = now_ns + self._idle_ns // 2


@dataclass(frozen=True, slots=True)
class Selector:
    """Which traffic an ingress rule queues: a slice's DSCP, destination prefixes, protocol, ports."""

    dscp: int | None = None
    destinations: tuple[str, ...] = ()
    protocol: str | None = None  # "udp" or "tcp"
    ports: tuple[int, ...] = ()  # destination ports; needs protocol

    def __post_init__(self) -> None:
        if self.dscp is not None and not 0 <= self.dscp <= 63:
            raise ValueError(f"DSCP must be 0..63, got {self.dscp}")
        for prefix in self.destinations:
            if ipaddress.ip_network(prefix, strict=False).version != 6:
                raise ValueError(f"{prefix} is not an IPv6 prefix")
        if self.protocol not in (None, *PORT_PROTOCOLS.values()):
            raise ValueError(f"protocol must be udp or tcp, got {self.protocol}")
        if (self.ports and self.protocol is None) or not all(0 < port < 65536 for port in self.ports):
            raise ValueError("ports need a protocol and must be 1..65535")
        if len(self.ports) > 15:
            raise ValueError("at most 15 ports (ip6tables multiport)")

    def rule(self, queue: int, comment: str) -> list[str]:
        """The ip6tables rule body (after `-A CHAIN`), one destination per rule: the first given."""
        args: list[str] = []
        if self.destinations:
            args += ["-d", ",".join(self.destinations)]
        if self.protocol:
            args += ["-p", self.protocol]
        if self.ports:
            args += ["-m", "multiport", "--dports", ",".join(map(str, self.ports))]
        if self.dscp is not None:
            args += ["-m", "dscp", "--dscp", str(self.dscp)]
        return args + ["-m", "comment", "--comment", comment, "-j", "NFQUEUE", "--queue-num", str(queue)]


RULE_TABLE, RULE_CHAIN = "mangle", "POSTROUTING"


def rule_command(action: str, selector: Selector, queue: int) -> list[str]:
    """`ip6tables -A|-D` of the stage's rule (its comment names the queue, for operators)."""
    return ["ip6tables", "-w", "-t", RULE_TABLE, action, RULE_CHAIN, *selector.rule(queue, f"xnetmon:altmark:{queue}")]


class IngressStage:
    """The marker over a bound queue, in a thread until `stop()`."""

    def __init__(self, queue: NfQueue, marker: IngressMarker) -> None:
        self.queue = queue
        self.marker = marker
        self.errors = 0  # packets whose verdict could not be sent (the kernel drops them at unbind)
        self._stopping = threading.Event()

    def run(self) -> None:
        queue, marker = self.queue, self.marker
        queue.settimeout(0.2)
        clock = time.time_ns
        while not self._stopping.is_set():
            try:
                queued = queue.receive()
            except TimeoutError:
                continue
            if queued is None:
                continue
            try:
                queue.verdict(queued.packet_id, payload=marker.mark(queued.payload, clock()))
            except OSError:
                self.errors += 1

    def stop(self) -> None:
        self._stopping.set()

    def report(self) -> dict:
        counters = self.marker.counters
        kernel = kernel_counters(self.queue.number)
        return {
            "marked": counters.marked,
            "delay_marked": counters.delay_marked,
            "skipped": counters.skipped,
            "flows_started": counters.flows_started,
            "flows_ended": counters.flows_ended,
            "flows": {key.hex(): flow_mon_id for key, flow_mon_id in self.marker.flows().items()},
            "verdict_errors": self.errors,
            "socket_overruns": self.queue.overruns,
            "kernel_queue_dropped": kernel.dropped if kernel else None,
            "kernel_user_dropped": kernel.user_dropped if kernel else None,
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m collector.capture.altmark_ingress", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--queue", type=int, required=True, help="NFQUEUE number")
    parser.add_argument("--site-index", type=int, required=True, help="the site's index, high bits of its FlowMonIDs")
    parser.add_argument("--site-bits", type=int, default=12)
    parser.add_argument("--slice", default="", help="the slice marked (reported only)")
    parser.add_argument("--dscp", type=int)
    parser.add_argument("--destination", action="append", default=[], help="IPv6 prefix (repeatable)")
    parser.add_argument("--protocol", choices=sorted(PORT_PROTOCOLS.values()))
    parser.add_argument("--port", type=int, action="append", default=[], help="destination port (repeatable)")
    parser.add_argument("--max-flows", type=int, default=16)
    parser.add_argument("--block-s", type=float, default=1.0)
    parser.add_argument("--delay-marks", type=int, default=2)
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--mtu", type=int, default=1500)
    parser.add_argument("--header", choices=sorted(HEADERS), default="hop-by-hop", help="where the option goes")
    parser.add_argument("--slice-id", type=int, help="32-bit slice/NRP ID, in the Hop-by-Hop header too")
    parser.add_argument("--slice-option-type", type=lambda v: int(v, 0), default=DEFAULT_SLICE_OPTION)
    parser.add_argument("--install-rule", action="store_true", help="add the ip6tables rule now, remove it at exit")
    args = parser.parse_args(argv)
    try:
        selector = Selector(args.dscp, tuple(args.destination), args.protocol, tuple(args.port))
        marker = IngressMarker(
            FlowMonIds(args.site_index, site_bits=args.site_bits),
            block_s=args.block_s,
            delay_marks=args.delay_marks,
            max_flows=args.max_flows,
            idle_s=args.idle_s,
            mtu=args.mtu,
            header=args.header,
            slice_id=args.slice_id,
            slice_option_type=args.slice_option_type,
        )
        queue = NfQueue(args.queue)
    except (ValueError, OSError) as exc:
        print(f"altmark_ingress: {exc}", file=sys.stderr)
        return 2
    stage = IngressStage(queue, marker)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stage.stop())
    rule_added = False
    try:
        if args.install_rule:
            done = subprocess.run(rule_command("-A", selector, args.queue), capture_output=True, text=True)
            if done.returncode:
                print(f"altmark_ingress: ip6tables: {done.stderr.strip()}", file=sys.stderr)
                return 2
            rule_added = True
        print(json.dumps({"ready": True, "queue": args.queue, "slice": args.slice}), flush=True)
        stage.run()
    finally:
        if rule_added:
            subprocess.run(rule_command("-D", selector, args.queue), capture_output=True)
        print(json.dumps({"slice": args.slice, **stage.report()}), flush=True)
        queue.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
