"""Our per-flow totals from a pcap equal tshark's conversation statistics for the same pcap.

tshark's conversations are bidirectional and keyed by addresses (conv,ipv6) or addresses
and ports (conv,udp / conv,tcp), while our flow records are one-way and also keyed by
DSCP, flow label and slice; so our records are summed per conversation and direction.
The pcap is raw IP (link type 101), so tshark's frame bytes are IP packet bytes, as ours
are; an Ethernet copy checks the same with 14 octets of header per frame on top.
"""

from __future__ import annotations

import random
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from scapy.layers.inet6 import TCP, UDP, ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from collector.capture.aggregate import FlowAggregator
from collector.capture.pcap import read_flows

# Explicit addresses: without them scapy resolves them on the network, slowly.
MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"

LINE = re.compile(
    r"^(\S+)\s+<->\s+(\S+)\s+([\d,]+)\s+([\d,]+) bytes\s+([\d,]+)\s+([\d,]+) bytes\s+([\d,]+)\s+([\d,]+) bytes"
)


def _traffic() -> list:
    """Hosts in three prefixes talking UDP, TCP (both ways) and ICMPv6 in every slice DSCP."""
    rng = random.Random(5)
    hosts = [f"fd00:{site}::{host}" for site in (1, 2, 3) for host in (1, 2)]
    packets = []
    for i in range(400):
        a, b = rng.sample(hosts, 2)
        dscp = rng.choice((34, 26, 18, 0, 10))
        kind = rng.random()
        ip = IPv6(src=a, dst=b, tc=dscp << 2, fl=rng.choice((0, 0x12345)))
        if kind < 0.4:
            packet = ip / UDP(sport=rng.choice((5000, 5001)), dport=862) / (b"u" * rng.randrange(0, 120))
        elif kind < 0.8:
            sport = rng.choice((40000, 40001))
            packet = ip / TCP(sport=sport, dport=443, flags="A") / (b"t" * rng.randrange(0, 120))
            if rng.random() < 0.5:  # the answer, the other way round
                packet = IPv6(src=b, dst=a, tc=dscp << 2) / TCP(sport=443, dport=sport, flags="A") / b"ack"
        else:
            packet = ip / (ICMPv6EchoRequest() if rng.random() < 0.5 else ICMPv6EchoReply())
        packet.time = 1_700_000_000 + i * 0.01
        packets.append(packet)
    return packets


def _tshark_conversations(path: Path, kind: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(from, to) -> (frames, bytes) in that direction, from `tshark -q -z conv,KIND`."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-q", "-z", f"conv,{kind}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    directions: dict[tuple[str, str], tuple[int, int]] = {}
    for line in out.splitlines():
        match = LINE.match(line)
        if not match:
            assert "<->" not in line, f"unparsed conversation line (units other than bytes?): {line!r}"
            continue
        left, right, back_frames, back_bytes, forth_frames, forth_bytes = match.groups()[:6]
        number = lambda text: int(text.replace(",", ""))  # noqa: E731
        for key, frames, octets in (
            ((left, right), forth_frames, forth_bytes),
            ((right, left), back_frames, back_bytes),
        ):
            if number(frames):
                directions[key] = (number(frames), number(octets))
    return directions


def _ours(path: Path, kind: str, header_octets: int) -> dict[tuple[str, str], tuple[int, int]]:
    protocol = {"ipv6": None, "udp": 17, "tcp": 6}[kind]
    totals: Counter = Counter()
    frames: Counter = Counter()
    for record in read_flows(path, FlowAggregator("capture:test", idle_timeout_s=3600)).records:
        if protocol is not None and record.protocol != protocol:
            continue
        if protocol is None:
            key = (record.source, record.destination)
        else:
            key = (f"{record.source}:{record.source_port}", f"{record.destination}:{record.destination_port}")
        frames[key] += record.packets
        totals[key] += record.bytes + header_octets * record.packets
    return {key: (frames[key], totals[key]) for key in frames}


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("conv")
    packets = _traffic()
    raw, ethernet = directory / "raw.pcap", directory / "ethernet.pcap"
    wrpcap(str(raw), packets, linktype=101)
    framed = [Ether(src=MAC_A, dst=MAC_B) / p for p in packets]
    for original, frame in zip(packets, framed):
        frame.time = original.time
    wrpcap(str(ethernet), framed)
    return {"raw": raw, "ethernet": ethernet}


@pytest.mark.tool("tshark")
@pytest.mark.parametrize("kind", ["ipv6", "udp", "tcp"])
@pytest.mark.parametrize("link", ["raw", "ethernet"])
def test_flow_totals_equal_tshark_conversations(captures: dict[str, Path], kind: str, link: str) -> None:
    path = captures[link]
    expected = _tshark_conversations(path, kind)
    assert len(expected) >= 6  # the test compares something
    assert _ours(path, kind, header_octets=14 if link == "ethernet" else 0) == expected
