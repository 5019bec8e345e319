"""Packets our alternate-marking sender puts on the wire, as tshark decodes them.

The sender runs in a namespace of its own and tshark captures its loopback, once the capture
is live (`tests.tshark_support`). tshark 4.0 has
no Alternate Marking dissector: it shows option 0x12 as an unknown option of the Hop-by-Hop
or Destination Options header, with its type, length and payload. The test reads
FlowMonID, L and D out of tshark's payload by the bit layout of RFC 9343 section 3, and
checks that they equal both what the sender meant to send and what `find_altmark` reads
from the same frames. The ingress marker's packets likewise, in either header and with the
slice ID option.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6
from scapy.utils import rdpcap, wrpcap

from collector.capture.altmark import AltMark, find_altmark
from collector.capture.altmark_ingress import FlowMonIds, IngressMarker
from collector.capture.altmark_sender import Marker
from tests.altmark_support import ADDR_B, PORT, marked_pair, send_udp
from tests.support import REPO, network_namespace
from tests.tshark_support import TsharkCapture

pytestmark = [pytest.mark.root, pytest.mark.tool("tshark")]

PER_HEADER = 10
BLOCK = 3
FLOWS = {"hop-by-hop": 0xABCDE, "destination": 0x00017}
FIELDS = ["ipv6.hopopts.nxt", "ipv6.dstopts.nxt", "ipv6.opt.type", "ipv6.opt.length", "ipv6.opt.unknown"]


def expected_marks(flow_mon_id: int) -> list[AltMark]:
    marker = Marker(flow_mon_id, block_packets=BLOCK)
    return [marker.next(0)[1] for _ in range(PER_HEADER)]


def rfc9343_fields(payload_hex: str) -> AltMark:
    bits = f"{int(payload_hex, 16):032b}"  # FlowMonID (20 bits), L, D, reserved (10 bits)
    assert bits[22:] == "0" * 10, "reserved bits must be sent as zero"
    return AltMark(int(bits[:20], 2), int(bits[20]), bits[21] == "1")


def test_tshark_reads_the_marks_we_send(tmp_path):
    pcap = tmp_path / "marked.pcap"
    # "ip6 and not icmp6": our packets (Next Header 0 or 60), not the port-unreachable replies
    with network_namespace() as namespace, TsharkCapture(namespace, "lo", "ip6 and not icmp6", pcap) as capture:
        capture.prime(namespace, "::1")
        for header, flow_mon_id in FLOWS.items():
            argv = [
                sys.executable,
                "-m",
                "collector.capture.altmark_sender",
                "::1",
                "--flow-mon-id",
                str(flow_mon_id),
                "--count",
                str(PER_HEADER),
                "--block-packets",
                str(BLOCK),
                "--interval-ms",
                "1",
                "--header",
                header,
            ]
            sent = subprocess.run(
                ["ip", "netns", "exec", namespace, *argv], capture_output=True, text=True, timeout=30, cwd=REPO
            )
            assert sent.returncode == 0, sent.stderr
        capture.wait_for(2 * PER_HEADER)

    fields = subprocess.run(
        [
            "tshark",
            "-r",
            str(pcap),
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "separator=\t",
            *[arg for field in FIELDS for arg in ("-e", field)],
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    frames = [bytes(frame) for frame in rdpcap(str(pcap))]
    assert len(fields) == len(frames) == 2 * PER_HEADER

    for index, (line, frame) in enumerate(zip(fields, frames)):
        header = "hop-by-hop" if index < PER_HEADER else "destination"
        hop_by_hop_next, destination_next, option_type, length, payload = line.split("\t")
        assert (hop_by_hop_next != "", destination_next != "") == (header == "hop-by-hop", header == "destination")
        assert (int(option_type, 16), int(length)) == (0x12, 4)
        theirs = rfc9343_fields(payload)
        assert theirs == expected_marks(FLOWS[header])[index % PER_HEADER]
        assert find_altmark(frame, 14) == theirs
    colours = [rfc9343_fields(line.split("\t")[4]).loss_flag for line in fields[:PER_HEADER]]
    assert colours == [0, 0, 0, 1, 1, 1, 0, 0, 0, 1]


INGRESS_FIELDS = ["ipv6.nxt", "ipv6.hopopts.nxt", "ipv6.opt.type", "ipv6.opt.length", "ipv6.opt.unknown",
                  "udp.dstport", "udp.checksum.status", "udp.length"]  # fmt: skip


@pytest.mark.tool("ip6tables")
def test_tshark_reads_packets_the_ingress_marker_rewrote_as_valid_ipv6(tmp_path):
    """Real datagrams marked by the NFQUEUE stage on their way out of a namespace: tshark sees
    IPv6 with a Hop-by-Hop header whose option is type 0x12 with 4 octets of data (6 in all),
    the FlowMonID of the marker's site in its raw bytes, and UDP behind it with its checksum
    verified good (the insertion changes nothing the pseudo-header covers)."""
    pcap = tmp_path / "ingress.pcap"
    count = 12
    only_ours = f"ip6 dst host {ADDR_B} and not icmp6"  # not an MLD report (Hop-by-Hop too)
    with marked_pair(dscp=34) as pair, TsharkCapture(pair.ns_b, pair.if_b, only_ours, pcap) as capture:
        capture.prime(pair.ns_a, ADDR_B)
        send_udp(pair.ns_a, ADDR_B, PORT, count=count, dscp=34)
        capture.wait_for(count)
    lines = subprocess.run(
        ["tshark", "-r", str(pcap), "-o", "udp.check_checksum:TRUE", "-T", "fields", "-E", "separator=\t",
         *[arg for field in INGRESS_FIELDS for arg in ("-e", field)]],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    frames = [bytes(frame) for frame in rdpcap(str(pcap))]
    assert len(lines) == len(frames) == count
    for line, frame in zip(lines, frames):
        nxt, hop_by_hop_next, option_type, length, payload, port, checksum, udp_length = line.split("\t")
        assert (nxt, hop_by_hop_next, int(option_type, 16), int(length)) == ("0", "17", 0x12, 4)
        assert (int(port), checksum, int(udp_length)) == (PORT, "1", 8 + 64)  # 1: Good
        option = frame[14 + 40 + 2 : 14 + 40 + 8]  # after Next Header and Hdr Ext Len
        assert option[:2] == b"\x12\x04" and option[2:].hex() == payload
        mark = rfc9343_fields(payload)
        assert mark.flow_mon_id >> 8 == pair.site_index  # the site's index leads its FlowMonIDs
        assert find_altmark(frame, 14) == mark


MARKED_FIELDS = [
    "ipv6.nxt", "ipv6.hopopts.nxt", "ipv6.dstopts.nxt", "ipv6.opt.type", "ipv6.opt.length", "ipv6.opt.unknown",
    "ipv6.opt.experimental", "udp.srcport", "udp.dstport", "udp.length", "udp.checksum.status",
]  # fmt: skip


@pytest.mark.parametrize(
    ("header", "slice_id", "expected"),
    [
        # IPv6 next header, HBH next, DstOpts next, option types (PadN 0x01), lengths
        ("hop-by-hop", None, ["0", "17", "", "0x12", "4"]),
        ("hop-by-hop", 0xC0FFEE01, ["0", "17", "", "0x12,0x1e,0x01", "4,4,0"]),
        ("destination", None, ["60", "", "17", "0x12", "4"]),
        ("destination", 0xC0FFEE01, ["0", "60", "17", "0x1e,0x12", "4,4"]),
    ],
)
def test_tshark_reads_the_ingress_markers_packets_as_valid_ipv6_with_the_options_as_set(
    tmp_path, header, slice_id, expected
):
    """The marker's own output (`IngressMarker.mark`, as the NFQUEUE stage reinjects it):
    the RFC 9343 option in the configured header, the slice ID option (tshark calls type
    0x1E "Experimental") with its 32 bits, and the UDP header and checksum still right."""
    marker = IngressMarker(FlowMonIds(3), header=header, slice_id=slice_id)
    plain = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2", tc=34 << 2) / UDP(sport=4000, dport=5004) / (b"x" * 20))
    marked = marker.mark(plain, 5 * 10**9)  # block 5: colour 1
    pcap = tmp_path / "ingress.pcap"
    wrpcap(str(pcap), [IPv6(marked)])
    argv = ["tshark", "-r", str(pcap), "-o", "udp.check_checksum:TRUE", "-T", "fields", "-E", "occurrence=a"]
    argv += ["-E", "separator=\t", *[arg for field in MARKED_FIELDS for arg in ("-e", field)]]
    (line,) = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines()
    fields = dict(zip(MARKED_FIELDS, line.split("\t")))
    assert [fields[name] for name in MARKED_FIELDS[:5]] == expected
    assert rfc9343_fields(fields["ipv6.opt.unknown"]) == AltMark(3 << 8, 1, False) == find_altmark(marked)
    assert fields["ipv6.opt.experimental"] == ("" if slice_id is None else f"{slice_id:08x}")
    assert [fields[name] for name in MARKED_FIELDS[7:]] == ["4000", "5004", "28", "1"]  # checksum status 1: good
