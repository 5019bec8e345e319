#!/usr/bin/env python3
"""pcap classification and aggregation: packets per second on one core, ours against tshark
and a plain dpkt loop, on the same generated capture in the same run.

Workload: a pcap (Ethernet, microsecond timestamps, snap length 128) of PACKETS IPv6
packets over FLOWS flows in all four slices (DSCP 34, 26, 18, 0, and a few other DSCPs
that fall to best effort), TCP, UDP and ICMPv6; about 1% of the flows carry a Hop-by-Hop
slice-ID option, 0.5% an SRH, and 1% are IPv4, so the per-packet path is exercised too.
Every tool does the same job: read every packet, classify it into a slice by DSCP and
aggregate packets and IP bytes per flow (5-tuple, DSCP, flow label).

- ours:             `collector.capture.pcap.read_flows` in this process (the vectorised path)
- ours per-packet:  the same with `per_packet=True` (dissect_ip + FlowAggregator.add), the reference
- xnetmon command:  `xnetmon capture read FILE --json`, the whole command including start-up
- dpkt loop:        dpkt.pcap.Reader + dpkt.ethernet.Ethernet per packet, a DSCP table and a dict
- tshark fields:    `tshark -n -r FILE -T fields -e ...` (addresses, protocol, ports, DSCP, flow
                    label, length) with the same classification and dict over its lines
- tshark conv:      `tshark -n -r FILE -q -z conv,ipv6` (tshark's own per-address-pair totals)

Rates are packets per CPU second of the process doing the work (this process, or the
children for the commands: getrusage), medians over repetitions, and the ratio ours/peer.
Wall-clock rates are recorded too. The machine is shared: compare ratios, not absolutes.

    .venv/bin/python bench/pcap_classify.py                      # 1,000,000 packets, 4,000 flows, 3 repetitions
    .venv/bin/python bench/pcap_classify.py --packets 20000 --flows 200 --reps 1

No root needed. The target (issue 8) is 400,000 packets/s on one core for ours.
"""

from __future__ import annotations

import argparse
import random
import resource
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import _common as c

from collector.capture.aggregate import FlowAggregator
from collector.capture.pcap import read_flows
from collector.traffic.classifier import SliceClassifier

TARGET = 400_000
SNAPLEN = 128
SLICE_DSCPS = (34, 26, 18, 0, 46, 10)  # the last two: best effort by the default rules
SLICE_OPTION = 0x1E


# -- the capture ------------------------------------------------------------------------------


def _flow_headers(rng: random.Random, index: int) -> tuple[bytes, int]:
    """(Ethernet + IP + transport headers with a zero length field, offset of that field)."""
    ethernet = bytes.fromhex("020000000002020000000001")
    dscp = rng.choice(SLICE_DSCPS)
    kind = rng.random()
    protocol = rng.choices((6, 17, 58), (60, 35, 5))[0]
    sport, dport = rng.randrange(1024, 65535), rng.choice((443, 80, 862, 5060, 8080, 22))
    if protocol == 6:
        transport = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x18, 65535, 0, 0)
    elif protocol == 17:
        transport = struct.pack("!HHHH", sport, dport, 0, 0)
    else:
        transport = struct.pack("!BBHHH", 128, 0, 0, index & 0xFFFF, 1)
    if kind < 0.01:  # IPv4
        if protocol == 58:
            protocol, transport = 1, struct.pack("!BBHHH", 8, 0, 0, index & 0xFFFF, 1)
        header = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            dscp << 2,
            0,
            index & 0xFFFF,
            0,
            64,
            protocol,
            0,
            bytes([10, 1, index >> 8 & 0xFF, index & 0xFF]),
            bytes([10, 2, 0, rng.randrange(1, 250)]),
        )
        return ethernet + b"\x08\x00" + header + transport, 14 + 2
    extension = b""
    next_header = protocol
    if kind < 0.02:  # Hop-by-Hop slice-ID option: type, length 4, ID, PadN to 8 octets
        extension = bytes([protocol, 0, SLICE_OPTION, 4]) + struct.pack("!I", 1 + index % 4)
        next_header = 0
    elif kind < 0.025:  # SRH with two segments, the active one in the destination
        extension = (
            bytes([protocol, 4, 4, 1, 1, 0, 0, 0])
            + _address(0xFD00_0005_0000_0002, 1)
            + _address(0xFD00_0005_0000_0001, 1)
        )
        next_header = 43
    source = _address(0xFD00_0000_0000_0000 | (dscp << 16) | (index >> 8), index & 0xFF)
    destination = _address(0xFD00_0010_0000_0000 | rng.randrange(1, 64), rng.randrange(1, 1 << 16))
    first_word = 6 << 28 | dscp << 22 | rng.randrange(1 << 20)
    header = struct.pack("!IHBB", first_word, 0, next_header, 64) + source + destination
    return ethernet + b"\x86\xdd" + header + extension + transport, 14 + 4


def _address(high: int, low: int) -> bytes:
    return struct.pack("!QQ", high, low)


def write_capture(path: Path, packets: int, flows: int, seed: int = 1) -> None:
    """A little-endian microsecond pcap of `packets` frames over `flows` flows."""
    rng = random.Random(seed)
    templates = [_flow_headers(rng, i) for i in range(flows)]
    weights = [1 / (i + 1) ** 0.8 for i in range(flows)]  # a few heavy flows, many light ones
    chosen = rng.choices(range(flows), weights, k=packets)
    record = struct.Struct("<IIII")
    second, microsecond = 1_700_000_000, 0
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, 1))
        parts = []
        for flow in chosen:
            headers, length_at = templates[flow]
            payload = rng.randrange(0, 1200)
            ip_len = len(headers) - 14 + payload
            length = ip_len - 40 if headers[12:14] == b"\x86\xdd" else ip_len  # IPv6 counts the payload only
            frame = headers[:length_at] + struct.pack("!H", length) + headers[length_at + 2 :]
            wire = len(frame) + payload
            captured = (frame + bytes(max(0, SNAPLEN - len(frame))))[: min(SNAPLEN, wire)]
            microsecond += rng.randrange(1, 20)
            if microsecond >= 1_000_000:
                second, microsecond = second + 1, microsecond - 1_000_000
            parts.append(record.pack(second, microsecond, len(captured), wire) + captured)
            if len(parts) >= 65536:
                out.write(b"".join(parts))
                parts.clear()
        out.write(b"".join(parts))


# -- the tools --------------------------------------------------------------------------------


def ours(path: Path, per_packet: bool = False) -> int:
    result = read_flows(path, FlowAggregator(f"capture:{path}", SliceClassifier.default()), per_packet=per_packet)
    return result.ip_packets


def _count(flows: dict[tuple, list[int]], key: tuple, length: int) -> None:
    """The peers' aggregation: packets and bytes per flow key in a dict."""
    totals = flows.get(key)
    if totals is None:
        flows[key] = [1, length]
    else:
        totals[0] += 1
        totals[1] += length


def dpkt_loop(path: Path) -> int:
    import dpkt

    table = SliceClassifier.default()
    slice_of = [table.classify(b"", b"", dscp) for dscp in range(64)]
    flows: dict[tuple, list[int]] = {}
    seen = 0
    with open(path, "rb") as handle:
        for _, frame in dpkt.pcap.Reader(handle):
            try:
                ip = dpkt.ethernet.Ethernet(frame).data
            except (dpkt.UnpackError, IndexError, struct.error):
                continue
            if isinstance(ip, dpkt.ip6.IP6):
                dscp, label, length, protocol = ip.fc >> 2, ip.flow, ip.plen + 40, ip.p
            elif isinstance(ip, dpkt.ip.IP):
                dscp, label, length, protocol = ip.tos >> 2, 0, ip.len, ip.p
            else:
                continue
            upper = ip.data
            sport = getattr(upper, "sport", 0)
            dport = getattr(upper, "dport", 0)
            _count(flows, (ip.src, ip.dst, protocol, sport, dport, dscp, label, slice_of[dscp]), length)
            seen += 1
    return seen


TSHARK_FIELDS = (
    "ipv6.src",
    "ipv6.dst",
    "ip.src",
    "ip.dst",
    "ipv6.nxt",
    "ip.proto",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "ipv6.tclass.dscp",
    "ip.dsfield.dscp",
    "ipv6.flow",
    "ipv6.plen",
    "ip.len",
)


def tshark_fields(path: Path) -> int:
    argv = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=/t"]
    for name in TSHARK_FIELDS:
        argv += ["-e", name]
    table = SliceClassifier.default()
    slice_of = [table.classify(b"", b"", dscp) for dscp in range(64)]
    flows: dict[tuple, list[int]] = {}
    seen = 0
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        for line in proc.stdout:
            (src6, dst6, src4, dst4, nxt, proto, tsport, tdport, usport, udport, dscp6, dscp4, label, plen, ip_len) = (
                line.rstrip("\n").split("\t")
            )
            dscp = int(dscp6 or dscp4 or 0)
            length = int(plen) + 40 if plen else int(ip_len or 0)
            key = (
                src6 or src4,
                dst6 or dst4,
                nxt or proto,
                tsport or usport,
                tdport or udport,
                dscp,
                label,
                slice_of[dscp],
            )
            _count(flows, key, length)
            seen += 1
        errors = proc.stderr.read()
    if proc.returncode:
        raise RuntimeError(f"tshark exited {proc.returncode}: {errors[-2000:]}")
    return seen


def tshark_conv(path: Path) -> int:
    c.run(["tshark", "-n", "-r", str(path), "-q", "-z", "conv,ipv6"], timeout=3600)
    return 0


def xnetmon_command(path: Path) -> int:
    c.run([c.XNETMON, "capture", "read", str(path), "--json"], timeout=3600)
    return 0


# -- measuring --------------------------------------------------------------------------------


def measure(run: Callable[[Path], int], path: Path) -> tuple[float, float, int]:
    """(CPU seconds of this process and its children, wall seconds, packets the tool reported)."""
    before, children_before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    seen = run(path)
    wall = time.perf_counter() - wall
    after, children_after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(
        b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime
        for a, b in ((before, after), (children_before, children_after))
    )
    return cpu, wall, seen


TOOLS: dict[str, Callable[[Path], int]] = {
    "ours": ours,
    "ours per-packet": lambda path: ours(path, per_packet=True),
    "xnetmon command": xnetmon_command,
    "dpkt loop": dpkt_loop,
    "tshark fields": tshark_fields,
    "tshark conv": tshark_conv,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--flows", type=int, default=4000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of: " + ", ".join(TOOLS))
    parser.add_argument("--pcap", help="use this capture instead of generating one")
    parser.add_argument("--output")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        parser.error(f"unknown tools: {', '.join(unknown)}")

    with tempfile.TemporaryDirectory(prefix="xb-pcap-") as scratch:
        path = Path(args.pcap) if args.pcap else Path(scratch) / "capture.pcap"
        if not args.pcap:
            write_capture(path, args.packets, args.flows)
        packets = _count_packets(path)
        runs: dict[str, list[dict]] = {tool: [] for tool in tools}
        for rep in range(args.reps):
            # Rotate the order each repetition so no tool always runs on a warm (or cold) machine.
            for tool in tools[rep % len(tools) :] + tools[: rep % len(tools)]:
                cpu, wall, seen = measure(TOOLS[tool], path)
                runs[tool].append({"cpu_s": cpu, "wall_s": wall, "packets_reported": seen})
        file_size = path.stat().st_size

    rates = {tool: c.median([packets / r["cpu_s"] for r in rs]) for tool, rs in runs.items()}
    wall_rates = {tool: c.median([packets / r["wall_s"] for r in rs]) for tool, rs in runs.items()}
    ours_rate = rates.get("ours")
    rows = [
        [tool, rates[tool], wall_rates[tool], c.ratio(ours_rate, rates[tool]) if ours_rate else None] for tool in tools
    ]
    payload = {
        "benchmark": "pcap_classify",
        "environment": c.environment(),
        "parameters": {
            "packets": packets,
            "flows": args.flows,
            "reps": args.reps,
            "snaplen": SNAPLEN,
            "file_octets": file_size,
            "pcap": args.pcap,
        },
        "packets_per_cpu_second": rates,
        "packets_per_wall_second": wall_rates,
        "ratio_ours_to": {tool: c.ratio(ours_rate, rate) for tool, rate in rates.items()} if ours_rate else {},
        "target": {"packets_per_second": TARGET, "met": bool(ours_rate and ours_rate >= TARGET)},
        "runs": runs,
    }
    written = c.write_result("pcap_classify", payload, args.output)
    if not args.quiet:
        print(f"{packets:,} packets, {args.flows:,} flows, {args.reps} repetitions, medians")
        print(c.table(["tool", "packets/CPU s", "packets/wall s", "ours/tool"], rows))
        if ours_rate:
            print(f"target {TARGET:,} packets/s: {'met' if ours_rate >= TARGET else 'not met'} ({ours_rate:,.0f})")
        print(f"result: {written}")
    return 0


def _count_packets(path: Path) -> int:
    from collector.capture.pcap import index_capture

    return len(index_capture(path))


if __name__ == "__main__":
    sys.exit(main())
