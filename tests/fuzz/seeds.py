"""The seed corpus of every fuzz target, built from real packets and files: the project's
own encoders, the tests' sample packets, scapy for packets we only read, and the example
files shipped in the repository.

    PYTHONPATH=$PWD .venv/bin/python -m tests.fuzz.seeds     # rewrites tests/fuzz/corpus/*/seed-*

Each seed is stored as `seed-<sha1 of its content>`; inputs that once crashed a target are
kept beside them as `crash-<what>` (never rewritten by this command) and replayed by the tests.
"""

from __future__ import annotations

import hashlib
import io
import struct
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from analyzer.partials import PartialsOutbox
from analyzer.sla.verdicts import default_policies
from analyzer.store.journal import IntakeJournal
from analyzer.store.memory import WindowStore
from analyzer.store.snapshot import save_snapshot
from collector.capture.altmark import AltMark
from collector.capture.altmark_sender import options_header
from collector.contract.codec import dumps, encode_body
from collector.outputs.spool import WindowSpool
from collector.wire import icmp6, trace6
from collector.wire.stamp import ErrorEstimate, ReflectorPacket, TimestampFormat, encode_reflector
from collector.wire.stamp_tlv import (
    ClassOfService,
    DirectMeasurement,
    ExtraPadding,
    Location,
    LocationSubTlvType,
    TimestampInformation,
)
from tests.analyzer_support import T0, batch, health, observation, settled, window
from tests.collector.wire.stamp_codec_support import KEY, reflect, sender_bytes
from tests.flow_export_support import (
    V6_FIELDS,
    data_set,
    ipfix_message,
    ipfix_template_set,
    record,
    sflow_counter_sample,
    sflow_datagram,
    sflow_flow_sample,
    v6_values,
    v9_options_template_flowset,
    v9_packet,
    v9_template_flowset,
    withdrawal_set,
)
from tests.fuzz.targets import CORPUS, TARGETS, TRACE_TARGET, framed

REPO = Path(__file__).resolve().parents[2]
SOURCE, OTHER = "2001:db8:1::10", TRACE_TARGET


def _scapy_packets() -> list:
    from scapy.all import (
        TCP,
        UDP,
        ICMPv6EchoRequest,
        ICMPv6TimeExceeded,
        IPv6,
        IPv6ExtHdrDestOpt,
        IPv6ExtHdrFragment,
        IPv6ExtHdrHopByHop,
        IPv6ExtHdrSegmentRouting,
        Raw,
    )
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import HBHOptUnknown

    base = IPv6(src=SOURCE, dst=OTHER, tc=34 << 2, fl=0x12345)
    slice_option = HBHOptUnknown(otype=0x1E, optdata=struct.pack("!I", 7))
    return [
        base / UDP(sport=1000, dport=2000) / Raw(b"x" * 20),
        base / TCP(sport=40000, dport=443, flags="S", seq=1000),
        base / IPv6ExtHdrHopByHop(options=[slice_option]) / TCP(sport=40000, dport=443, flags="A"),
        base / IPv6ExtHdrSegmentRouting(addresses=["2001:db8::a", "2001:db8::b"], segleft=1) / UDP() / b"srv6",
        base / IPv6ExtHdrFragment(offset=0, m=1, id=7) / UDP(sport=1, dport=2) / Raw(b"f" * 16),
        base / IPv6ExtHdrDestOpt() / ICMPv6EchoRequest(id=1, seq=2),
        base / ICMPv6TimeExceeded() / (IPv6(src=SOURCE, dst=OTHER) / UDP(sport=33434, dport=33434)),
        IP(src="192.0.2.1", dst="198.51.100.2", tos=26 << 2) / TCP(sport=5000, dport=80, flags="PA") / b"get",
    ]


def _ip_packets() -> list[bytes]:
    return [bytes(p) for p in _scapy_packets()]


def _ethernet_frames() -> list[bytes]:
    from scapy.all import Dot1Q, Ether

    frames = [bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p) for p in _scapy_packets()[:3]]
    frames.append(bytes(Ether() / Dot1Q(vlan=10) / _scapy_packets()[0]))
    return frames


def _altmark_packets() -> list[bytes]:
    """IPv6/UDP packets whose Hop-by-Hop (then Destination Options) header holds the option."""
    udp = struct.pack("!HHHH", 1000, 2000, 8, 0)
    packets = []
    for mark, header_type in ((AltMark(5, 0, False), 0), (AltMark(5, 1, True), 0), (AltMark(0xFFFFF, 1, False), 60)):
        options = bytes([17]) + options_header(mark)[1:]  # next header: UDP
        payload = options + udp
        fixed = struct.pack("!IHBB16s16s", 6 << 28, len(payload), header_type, 64, bytes(15) + b"\x01", bytes(16))
        packets.append(fixed + payload)
    return packets


def stamp_senders() -> list[bytes]:
    tlvs = (
        ExtraPadding(bytes(8)),
        ClassOfService(34),
        TimestampInformation(),
        DirectMeasurement(),
        Location.request(LocationSubTlvType.SOURCE_IP_REQUEST, LocationSubTlvType.DESTINATION_IP_REQUEST),
    )
    return [
        sender_bytes(),
        sender_bytes(fmt=TimestampFormat.PTP),
        sender_bytes(tlvs=tlvs),
        sender_bytes(tlvs=tlvs[:2], key=KEY),
        sender_bytes(key=KEY, authenticated=True),
        sender_bytes(tlvs=tlvs[1:3], key=KEY, authenticated=True),
        sender_bytes()[:14],  # TWAMP-Light
    ]


def stamp_replies() -> list[bytes]:
    err = ErrorEstimate(True, TimestampFormat.NTP, 4, 7)
    reply = ReflectorPacket(1, 2, err, 0x1234, 3, 4, 5, err, 61, (ClassOfService(34),))
    return [
        encode_reflector(reply),
        encode_reflector(reply, KEY),
        encode_reflector(reply, KEY, authenticated=True),
        *(reflect(request)[0] for request in stamp_senders()[:3]),
        reflect(stamp_senders()[5], authenticated=True, key=KEY)[0],
    ]


def icmp6_messages() -> list[bytes]:
    request = icmp6.encode_echo(icmp6.Echo(icmp6.ECHO_REQUEST, 7, 1, icmp6.make_payload(0xC0FFEE, 16)))
    reply = icmp6.encode_echo(icmp6.Echo(icmp6.ECHO_REPLY, 7, 1, icmp6.make_payload(0xC0FFEE, 16)))
    quoted = struct.pack("!IHBB16s16s", 6 << 28, len(request), 58, 1, bytes(16), bytes(16)) + request
    errors = [struct.pack("!BBHI", t, c, 0, 0) + quoted for t, c in ((3, 0), (1, 4), (1, 0))]
    return [reply, request, *errors]


def trace_answers() -> list[bytes]:
    from scapy.all import TCP, UDP, ICMPv6DestUnreach, ICMPv6EchoRequest, ICMPv6TimeExceeded, IPv6

    probe = IPv6(src=SOURCE, dst=OTHER, tc=34 << 2)
    quotes = [
        probe / UDP(sport=33434, dport=33434) / trace6.udp_payload(5),
        probe / TCP(sport=33435, dport=80, seq=1005, flags="S"),
        probe / ICMPv6EchoRequest(id=33434, seq=5) / trace6.echo_payload(5),
    ]
    answers = [bytes(ICMPv6TimeExceeded() / q) for q in quotes]
    answers.append(bytes(ICMPv6DestUnreach(code=4) / quotes[0]))
    answers.append(bytes(TCP(sport=80, dport=33435, flags="SA", ack=1006)))
    answers.append(trace6.udp_payload(5))
    return answers


_FIELDS_V4 = [(8, 4), (12, 4), (4, 1), (7, 2), (11, 2), (5, 1), (1, 4), (2, 4)]


def ipfix_inputs() -> list[bytes]:
    values = v6_values(SOURCE, OTHER)
    template = ipfix_template_set(256, V6_FIELDS)
    data = data_set(256, [record(V6_FIELDS, values), record(V6_FIELDS, values)])
    options = ipfix_template_set(257, [(149, 4), (305, 4), (306, 4)], scope_count=1)
    options_data = data_set(257, [struct.pack("!III", 1, 1, 100)])
    variable = ipfix_template_set(258, [(27, 16), (28, 16), (82, 0xFFFF)])
    variable_data = data_set(258, [bytes(32) + b"\x03eth"])
    return [
        framed(ipfix_message([template, data])),
        framed(ipfix_message([data]), ipfix_message([template])),  # data before its template
        framed(ipfix_message([options, options_data]), ipfix_message([template, data])),
        framed(ipfix_message([variable, variable_data])),
        framed(ipfix_message([template]), ipfix_message([withdrawal_set(256)]), ipfix_message([data])),
    ]


def netflow9_inputs() -> list[bytes]:
    values = {8: bytes([192, 0, 2, 1]), 12: bytes([198, 51, 100, 2]), 4: 6, 7: 5000, 11: 80, 5: 104, 1: 1500, 2: 3}
    template = v9_template_flowset(256, _FIELDS_V4)
    data = data_set(256, [record(_FIELDS_V4, values)])
    options = v9_options_template_flowset(257, [(1, 4)], [(34, 4), (35, 1)])
    options_data = data_set(257, [struct.pack("!IIB", 0, 100, 2) + bytes(3)])
    v6_template = v9_template_flowset(258, V6_FIELDS)
    v6_data = data_set(258, [record(V6_FIELDS, v6_values(SOURCE, OTHER))])
    return [
        framed(v9_packet([template, data])),
        framed(v9_packet([options, options_data]), v9_packet([template, data])),
        framed(v9_packet([v6_data]), v9_packet([v6_template])),
    ]


def sflow_inputs() -> list[bytes]:
    frames = _ethernet_frames()
    return [
        framed(sflow_datagram([sflow_flow_sample(frames[:2], 100)])),
        framed(sflow_datagram([sflow_flow_sample(frames[2:], 512, expanded=True), sflow_counter_sample()])),
    ]


def _pcap(packets: list[bytes], linktype: int, *, nanoseconds: bool = False) -> bytes:
    magic = 0xA1B23C4D if nanoseconds else 0xA1B2C3D4
    out = struct.pack("<IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for i, p in enumerate(packets):
        out += struct.pack("<IIII", 1_700_000_000 + i, 1000 * i, len(p), len(p)) + p
    return out


def _pcapng(packets: list[bytes], linktype: int) -> bytes:
    def block(block_type: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        return struct.pack("<II", block_type, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", linktype, 0, 65535) + struct.pack("<HHB3x", 9, 1, 9) + bytes(4))
    for i, p in enumerate(packets):
        ts = 1_700_000_000_000_000_000 + i * 1000
        out += block(6, struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(p), len(p)) + p)
    out += block(3, struct.pack("<I", len(packets[0])) + packets[0])
    return out


def capture_files() -> list[bytes]:
    ip = _ip_packets()
    return [
        _pcap(_ethernet_frames(), 1),
        _pcap(ip[:4], 101, nanoseconds=True),
        _pcapng(_ethernet_frames()[:2], 1),
        _pcapng(ip[2:5] + _altmark_packets()[:1], 101),
    ]


def shipments() -> list[bytes]:
    windows = [window(T0), window(T0 + 1, lost=3, target="edge")]
    return [
        encode_body(batch(*windows, observations=(observation(),), health=health())),
        encode_body(batch(window(T0, sent=0, lost=0))),
    ]


def spool_files() -> list[bytes]:
    with tempfile.TemporaryDirectory() as directory:
        with WindowSpool(directory, max_windows=100) as queue:
            for body in shipments():
                queue.append(body, 2)
        (segment,) = Path(directory).glob("*.jsonl")
        return [segment.read_bytes(), dumps({"next_id": 1, "skip_windows": 1}).encode()]


def snapshots() -> list[bytes]:
    store = WindowStore(default_policies(), catch_up_s=0)
    for seq in range(T0, T0 + 4):
        store.ingest(batch(window(seq, lost=seq % 3), observations=(observation(),), health=health()), settled(seq))
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "snapshot.json"
        save_snapshot(store, path)
        return [path.read_bytes()]


def partition_reports() -> list[bytes]:
    outbox = PartialsOutbox(1, 2)
    store = WindowStore(default_policies(), catch_up_s=0, slice_closed=outbox)
    for seq in range(T0, T0 + 3):
        store.ingest(batch(window(seq, lost=seq % 3), window(seq, target="edge")), settled(seq))
    return [outbox.report(store).encode(), PartialsOutbox(0, 1).report(WindowStore(default_policies())).encode()]


def partition_epochs() -> list[bytes]:
    """A partition's epochs of the small lab's agents, healthy and with a lossy link."""
    from analyzer.partial_evidence import PartitionEvidence
    from analyzer.rootcause.evidence import EvidenceBuilder
    from tests.analyzer.partition_support import AGENTS, LAB_NAMES, traced_batch

    store = WindowStore(default_policies(), catch_up_s=0)
    now = [settled(T0)]
    builder = EvidenceBuilder(store, LAB_NAMES, clock=lambda: now[0])
    epochs = []
    for seq in range(T0, T0 + 4):
        now[0] = settled(seq)
        for site in AGENTS:
            store.ingest(traced_batch(site, seq, faulty=seq > T0 + 1), settled(seq))
        epochs.append(PartitionEvidence.of(builder.build(), 1, 2, store.interval_ns).encode())
    return epochs[-2:]


def journals() -> list[bytes]:
    with tempfile.TemporaryDirectory() as directory:
        journal = IntakeJournal(directory)
        for body in shipments():
            journal.record(body)
        journal.close()
        (segment,) = Path(directory).glob("*.journal")
        return [segment.read_bytes()]


def _files(*names: str) -> Callable[[], list[bytes]]:
    return lambda: [(REPO / name).read_bytes() for name in names]


BUILDERS: dict[str, Callable[[], list[bytes]]] = {
    "stamp_sender": stamp_senders,
    "stamp_reply": stamp_replies,
    "stamp_reflect": stamp_senders,
    "icmp6": icmp6_messages,
    "trace": trace_answers,
    "ipfix": ipfix_inputs,
    "netflow9": netflow9_inputs,
    "sflow": sflow_inputs,
    "pcap": capture_files,
    "dissect": lambda: _ip_packets() + _ethernet_frames() + _altmark_packets(),
    "ipv6_ext": lambda: [p for p in _ip_packets() if p[0] >> 4 == 6] + _altmark_packets(),
    "altmark": _altmark_packets,
    "shipment": shipments,
    "spool": spool_files,
    "snapshot": snapshots,
    "partials": partition_reports,
    "evidence": partition_epochs,
    "journal": journals,
    "agent_config": _files(
        "collector/examples/agent-reference.yaml",
        "collector/examples/agent-loopback.yaml",
        "collector/examples/agent-lab-cnty1a.yaml",
    ),
    "policies": _files("analyzer/policies.yaml", "analyzer/examples/lab-policies.yaml"),
    "topology": _files("lab/topologies/tiny.yaml", "lab/topologies/small.yaml"),
}


def write_seeds(corpus: Path = CORPUS, out: io.TextIOBase | None = None) -> None:
    for name in TARGETS:
        directory = corpus / name
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("seed-*"):
            old.unlink()
        seeds = BUILDERS[name]()
        for seed in seeds:
            (directory / f"seed-{hashlib.sha1(seed).hexdigest()}").write_bytes(seed)
        print(f"{name}: {len(seeds)} seeds", file=out or sys.stdout)


if __name__ == "__main__":
    write_seeds()
