"""pcap and pcapng reading: files written by scapy, editcap and tshark read identically;
link types, byte orders, timestamp resolutions; damage is counted; the vectorised path
gives the same flow records as the per-packet one."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import HBHOptUnknown, ICMPv6EchoRequest, IPv6, IPv6ExtHdrHopByHop, IPv6ExtHdrSegmentRouting
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1Q, Ether
from scapy.utils import PcapNgWriter, wrpcap

from collector.capture import pcap
from collector.capture.aggregate import FlowAggregator
from collector.capture.pcap import CaptureFileError, index_capture, read_flows

# Explicit addresses: without them scapy resolves them on the network, slowly.
MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"

T0 = 1_700_000_000


def mixed_packets() -> list:
    """IPv6 TCP/UDP/ICMPv6 in every slice, a slice-ID option, an SRH, IPv4, VLAN and ARP."""
    packets = []
    for i in range(60):
        dscp = (34, 26, 18, 0, 46)[i % 5]
        ip6 = IPv6(src=f"fd00:1::{i % 4 + 1}", dst=f"fd00:2::{i % 3 + 1}", tc=dscp << 2, fl=i % 2)
        upper = (TCP(sport=40000 + i % 3, dport=443, flags="A"), UDP(sport=5000, dport=862), ICMPv6EchoRequest())[i % 3]
        packets.append(Ether(src=MAC_A, dst=MAC_B) / ip6 / upper / (b"p" * (i * 7 % 300)))
    packets.append(
        Ether(src=MAC_A, dst=MAC_B)
        / IPv6(src="fd00:1::9", dst="fd00:2::9")
        / IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=0x1E, optdata=b"\x00\x00\x00\x02")])
        / UDP(sport=1, dport=2)
    )
    packets.append(
        Ether(src=MAC_A, dst=MAC_B)
        / IPv6(src="fd00:1::9", dst="fd00:5::1")
        / IPv6ExtHdrSegmentRouting(addresses=["fd00:6::1", "fd00:5::1"], segleft=1)
        / TCP(sport=3, dport=4)
    )
    packets.append(
        Ether(src=MAC_A, dst=MAC_B)
        / IP(src="192.0.2.1", dst="192.0.2.2", tos=26 << 2)
        / UDP(sport=53, dport=53)
        / b"dns"
    )
    packets.append(
        Ether(src=MAC_A, dst=MAC_B)
        / Dot1Q(vlan=10)
        / IPv6(src="fd00:1::1", dst="fd00:2::1", tc=34 << 2)
        / UDP(sport=9, dport=9)
    )
    packets.append(Ether(src=MAC_A, dst=MAC_B) / ARP())
    for i, packet in enumerate(packets):
        packet.time = T0 + i * 0.25 + 0.000001 * i
    return packets


def _records(path: Path, **options) -> list:
    result = read_flows(path, FlowAggregator("capture:test"), **options)
    return sorted(result.records, key=repr)


def _index_fields(path: Path) -> tuple:
    index = index_capture(path)
    frames = [bytes(index.frame(i)) for i in range(len(index))]
    return index.ts_ns.tolist(), index.captured.tolist(), index.wire.tolist(), index.linktypes.tolist(), frames


@pytest.fixture(scope="module")
def scapy_pcap(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pcap") / "scapy.pcap"
    wrpcap(str(path), mixed_packets())
    return path


def test_scapy_pcap_reads_every_packet(scapy_pcap: Path) -> None:
    packets = mixed_packets()
    ts_ns, captured, wire, linktypes, frames = _index_fields(scapy_pcap)
    assert frames == [bytes(p) for p in packets]
    assert ts_ns == [round(float(p.time) * 1e6) * 1000 for p in packets]
    assert captured == wire == [len(bytes(p)) for p in packets]
    assert set(linktypes) == {1}
    result = read_flows(scapy_pcap, FlowAggregator("capture:test"))
    assert (result.packets, result.ip_packets, dict(result.skipped), dict(result.malformed)) == (
        65,
        64,
        {"not-ip": 1},
        {},
    )
    assert sum(r.packets for r in result.records) == 64


def test_scapy_pcapng_reads_like_the_pcap(scapy_pcap: Path, tmp_path: Path) -> None:
    path = tmp_path / "scapy.pcapng"
    with PcapNgWriter(str(path)) as writer:
        for packet in mixed_packets():
            writer.write(packet)
    assert _index_fields(path) == _index_fields(scapy_pcap)
    assert _records(path) == _records(scapy_pcap)


@pytest.mark.tool("editcap")
@pytest.mark.tool("tshark")
@pytest.mark.parametrize(
    "argv",
    [
        ["editcap", "-F", "pcapng"],
        ["editcap", "-F", "nsecpcap"],
        ["tshark", "-F", "pcapng", "-w"],
        ["tshark", "-F", "pcap", "-w"],
    ],
)
def test_files_written_by_wireshark_tools_read_identically(scapy_pcap: Path, tmp_path: Path, argv: list[str]) -> None:
    out = tmp_path / "converted"
    if argv[0] == "tshark":
        command = ["tshark", "-r", str(scapy_pcap), *argv[1:], str(out)]
    else:
        command = [*argv, str(scapy_pcap), str(out)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    assert _index_fields(out) == _index_fields(scapy_pcap)
    assert _records(out) == _records(scapy_pcap)


@pytest.mark.tool("editcap")
def test_nanosecond_timestamps_survive_in_pcap_and_pcapng(tmp_path: Path) -> None:
    nanosecond_pcap = tmp_path / "ns.pcap"
    _write_pcap(
        nanosecond_pcap, [(T0, 123456789, bytes(Ether(src=MAC_A, dst=MAC_B) / IPv6() / UDP()))], nanoseconds=True
    )
    converted = tmp_path / "ns.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(nanosecond_pcap), str(converted)], check=True, timeout=60)
    assert index_capture(nanosecond_pcap).ts_ns.tolist() == [T0 * 10**9 + 123456789]
    assert index_capture(converted).ts_ns.tolist() == [T0 * 10**9 + 123456789]


def _write_pcap(
    path: Path, records: list[tuple[int, int, bytes]], *, order: str = "<", nanoseconds: bool = False, linktype: int = 1
) -> None:
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    body = b"".join(struct.pack(order + "IIII", s, f, len(d), len(d)) + d for s, f, d in records)
    path.write_bytes(struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype) + body)


def test_big_endian_pcap(scapy_pcap: Path, tmp_path: Path) -> None:
    index = index_capture(scapy_pcap)
    records = [(int(t) // 10**9, int(t) % 10**9 // 1000, bytes(index.frame(i))) for i, t in enumerate(index.ts_ns)]
    swapped = tmp_path / "big.pcap"
    _write_pcap(swapped, records, order=">")
    assert _index_fields(swapped) == _index_fields(scapy_pcap)


def test_raw_ip_and_linux_cooked_link_types_give_the_same_flows(scapy_pcap: Path, tmp_path: Path) -> None:
    ip_packets = [p for p in mixed_packets() if p.haslayer(IPv6) or p.haslayer(IP)]
    layers = [p[IPv6] if p.haslayer(IPv6) else p[IP] for p in ip_packets]
    times = [(int(p.time), round((float(p.time) % 1) * 1e6)) for p in ip_packets]
    files = {}
    for name, linktype, wrap in (
        ("raw", 101, lambda ip: ip),
        ("sll", 113, lambda ip: CookedLinux(proto=0x86DD if ip.version == 6 else 0x0800) / ip),
        ("sll2", 276, lambda ip: CookedLinuxV2(proto=0x86DD if ip.version == 6 else 0x0800) / ip),
    ):
        files[name] = tmp_path / f"{name}.pcap"
        _write_pcap(files[name], [(s, u, bytes(wrap(ip))) for (s, u), ip in zip(times, layers)], linktype=linktype)
    expected = _records(scapy_pcap)
    for name, path in files.items():
        assert _records(path) == expected, name
        assert _records(path, per_packet=True) == expected, name


def test_damage_is_counted_and_what_came_before_is_read(scapy_pcap: Path, tmp_path: Path) -> None:
    data = scapy_pcap.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:-10])  # the last record loses its end
    result = read_flows(cut, FlowAggregator("x"))
    assert result.packets == 64 and result.malformed["truncated-record"] == 1

    huge = bytearray(data)
    struct.pack_into("<I", huge, 24 + 8, 10**9)  # first record claims a gigabyte
    (tmp_path / "huge.pcap").write_bytes(bytes(huge))
    result = read_flows(tmp_path / "huge.pcap", FlowAggregator("x"))
    assert (result.packets, result.malformed["bad-record-length"]) == (0, 1)

    short_ip = tmp_path / "short.pcap"
    _write_pcap(
        short_ip,
        [
            (T0, 0, bytes(Ether(src=MAC_A, dst=MAC_B) / IPv6() / TCP())[: 14 + 40 + 6]),
            (T0, 1, bytes(Ether(src=MAC_A, dst=MAC_B) / IPv6() / UDP())),
        ],
    )
    for per_packet in (False, True):
        result = read_flows(short_ip, FlowAggregator("x"), per_packet=per_packet)
        assert (result.ip_packets, dict(result.malformed)) == (1, {"truncated": 1})


def test_damaged_pcapng_blocks(tmp_path: Path) -> None:
    path = tmp_path / "in.pcapng"
    with PcapNgWriter(str(path)) as writer:
        for packet in mixed_packets()[:5]:
            writer.write(packet)
    data = bytearray(path.read_bytes())
    (tmp_path / "cut.pcapng").write_bytes(bytes(data[:-8]))
    result = read_flows(tmp_path / "cut.pcapng", FlowAggregator("x"))
    assert (result.packets, result.malformed["truncated-block"]) == (4, 1)


def test_not_a_capture_raises(tmp_path: Path) -> None:
    path = tmp_path / "text.pcap"
    path.write_text("certainly not a capture file\n")
    with pytest.raises(CaptureFileError, match="not a pcap or pcapng file"):
        index_capture(path)
    with pytest.raises(CaptureFileError, match="cannot read"):
        index_capture(tmp_path / "missing.pcap")


def test_vectorised_and_per_packet_paths_agree_across_chunks_and_timeouts(tmp_path: Path, monkeypatch) -> None:
    """A longer capture with idle gaps and long flows, read in small chunks so that flows
    carry across them: the same records as packet by packet."""
    rng = np.random.default_rng(7)
    templates = [bytes(p) for p in mixed_packets()]
    records, now = [], T0 * 10**6
    for _ in range(3000):
        now += int(rng.exponential(400_000))  # mean 0.4 s, so some gaps beyond the idle timeout
        frame = templates[int(rng.integers(len(templates)))]
        if rng.random() < 0.02:
            frame = frame[: int(rng.integers(14, len(frame)))]  # cut short: malformed or fewer octets
        records.append((now // 10**6, now % 10**6, frame))
    path = tmp_path / "long.pcap"
    _write_pcap(path, records)
    monkeypatch.setattr(pcap, "CHUNK_PACKETS", 257)
    options = dict(active_timeout_s=30, idle_timeout_s=2)
    batch = read_flows(path, FlowAggregator("x", **options))
    single = read_flows(path, FlowAggregator("x", **options), per_packet=True)
    assert sorted(batch.records, key=repr) == sorted(single.records, key=repr)
    assert batch.malformed == single.malformed and batch.ip_packets == single.ip_packets
    assert len(batch.records) > 2 * len(templates)  # the timeouts did cut flows
    assert all(r.end_ns - r.start_ns < 30 * 10**9 for r in batch.records)


def _block(order: str, kind: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(order + "II", kind, length) + body + struct.pack(order + "I", length)


def test_pcapng_sections_in_both_byte_orders_and_every_packet_block(tmp_path: Path) -> None:
    """Hand-built: a big-endian section (nanosecond interface, Enhanced and obsolete Packet
    blocks, an unknown block) and a little-endian one (2^-10 s ticks, a Simple block)."""
    frame = bytes(Ether(src=MAC_A, dst=MAC_B) / IPv6(src="fd00::1", dst="fd00::2", tc=34 << 2) / UDP(sport=1, dport=2))
    ticks = T0 * 10**9 + 5
    big = (
        _block(">", 0x0A0D0D0A, struct.pack(">IHHq", 0x1A2B3C4D, 1, 0, -1))
        + _block(">", 1, struct.pack(">HHI", 1, 0, 0) + struct.pack(">HHB3x", 9, 1, 9) + struct.pack(">HH", 0, 0))
        + _block(">", 6, struct.pack(">IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)) + frame)
        + _block(">", 0x0BAD, b"skip me")
        + _block(
            ">", 2, struct.pack(">HHIIII", 0, 0, ticks >> 32, (ticks & 0xFFFFFFFF) + 1, len(frame), len(frame)) + frame
        )
    )
    binary_ticks = T0 * 1024 + 512  # half a second in 2^-10 s ticks
    little = (
        _block("<", 0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
        + _block(
            "<", 1, struct.pack("<HHI", 101, 0, 20) + struct.pack("<HHB3x", 9, 1, 0x80 | 10) + struct.pack("<HH", 0, 0)
        )
        + _block("<", 6, struct.pack("<IIIII", 0, binary_ticks >> 32, binary_ticks & 0xFFFFFFFF, 48, 48) + frame[14:62])
        + _block("<", 3, struct.pack("<I", len(frame) - 14) + frame[14:34])  # Simple: cut at the snap length 20
    )
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(big + little)
    index = index_capture(path)
    assert index.ts_ns.tolist() == [ticks, ticks + 1, T0 * 10**9 + 500_000_000, 0]
    assert index.linktypes.tolist() == [1, 1, 101, 101]
    assert index.captured.tolist() == [len(frame), len(frame), 48, 20]
    assert index.wire.tolist() == [len(frame), len(frame), 48, len(frame) - 14]
    assert [bytes(index.frame(i)) for i in range(4)] == [frame, frame, frame[14:62], frame[14:34]]
    result = read_flows(path, FlowAggregator("x"))
    assert (result.ip_packets, dict(result.malformed)) == (3, {"truncated": 1})  # the Simple block lost its ports
    assert [(r.packets, r.slice) for r in result.records] == [(3, "video")]


@pytest.mark.parametrize("resolution", [19, 53, 0x80 | 63, 0xFF])
def test_a_timestamp_resolution_beyond_64_bits_is_a_bad_interface_block(tmp_path: Path, resolution: int) -> None:
    """Found by fuzzing (tests/fuzz/corpus/pcap/crash-pcapng-tsresol-10e53): 10^53 ticks per
    second overflowed the int64 arithmetic. Such an interface is counted as damaged, like any
    other, and its packets are skipped rather than timed wrongly."""
    frame = bytes(Ether(src=MAC_A, dst=MAC_B) / IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=1, dport=2))
    ticks = T0 * 10**6 + 7
    path = tmp_path / "fine.pcapng"
    path.write_bytes(
        _block("<", 0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
        + _block("<", 1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HHB3x", 9, 1, resolution) + bytes(4))
        + _block("<", 6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)) + frame)
    )
    index = index_capture(path)
    assert (index.ts_ns.tolist(), dict(+index.malformed)) == ([ticks * 1000], {"bad-interface-block": 1})
    result = read_flows(path, FlowAggregator("x"))
    assert (result.packets, result.ip_packets, dict(result.skipped)) == (1, 0, {"unsupported-linktype": 1})
