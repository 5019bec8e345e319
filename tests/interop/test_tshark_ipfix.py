"""tshark's NetFlow/IPFIX dissector (cflow) as an independent decoder: the datagrams
softflowd sent, and datagrams with a flow label and DSCP made by the test encoder, decode to
the same addresses, ports, octets, packets and flow labels in tshark and in our receiver."""

from __future__ import annotations

import socket
import subprocess

import pytest
from scapy.all import UDP, IPv6, Raw, wrpcap

from collector.flow_export.receiver import FlowReceiver, flow_records
from collector.traffic.classifier import SliceClassifier
from tests.flow_export_support import (
    V6_FIELDS,
    data_set,
    exported_datagrams,
    ipfix_message,
    ipfix_template_set,
    record,
    softflowd_from_pcap,
    v6_values,
    write_slice_pcap,
)
from tests.support import DEADLINE_S

pytestmark = pytest.mark.tool("tshark")
PORT = 4739
FIELDS = [
    "cflow.srcaddrv6",
    "cflow.dstaddrv6",
    "cflow.srcport",
    "cflow.dstport",
    "cflow.octets",
    "cflow.packets",
    "cflow.ipv6flowlabel",
]


def tshark_records(datagrams: list[bytes], tmp_path) -> list[tuple]:
    pcap = tmp_path / "export.pcap"
    wrpcap(str(pcap), [IPv6(src="::1", dst="::1") / UDP(sport=40000, dport=PORT) / Raw(d) for d in datagrams])
    out = subprocess.run(
        [
            "tshark",
            "-r",
            str(pcap),
            "-d",
            f"udp.port=={PORT},cflow",
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            *[arg for f in FIELDS for arg in ("-e", f)],
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        columns = [c.split(",") if c else [] for c in line.split("\t")]
        count = len(columns[0])
        labels = columns[6] or ["0"] * count
        for i in range(count):
            rows.append(
                (
                    socket.inet_pton(socket.AF_INET6, columns[0][i]),
                    socket.inet_pton(socket.AF_INET6, columns[1][i]),
                    int(columns[2][i]),
                    int(columns[3][i]),
                    int(columns[4][i]),
                    int(columns[5][i]),
                    int(labels[i], 0),
                )
            )
    return sorted(rows)


def our_records(datagrams: list[bytes]) -> list[tuple]:
    receiver = FlowReceiver()
    got = []
    receiver.on_flows = got.append
    for datagram in datagrams:
        receiver.handle_datagram(datagram, "::1", 40000)
    assert not receiver.malformed
    records = [r for flows in got for r in flow_records(flows, SliceClassifier.default())]
    return sorted(
        (
            socket.inet_pton(socket.AF_INET6, r.source),
            socket.inet_pton(socket.AF_INET6, r.destination),
            r.source_port,
            r.destination_port,
            r.bytes,
            r.packets,
            r.flow_label,
        )
        for r in records
    )


@pytest.mark.tool("softflowd")
def test_softflowd_datagrams_decode_alike(tmp_path):
    pcap = tmp_path / "slices.pcap"
    write_slice_pcap(pcap)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sink:
        sink.bind(("::1", 0))
        sink.settimeout(DEADLINE_S)  # bounds a missing datagram only
        output = softflowd_from_pcap(pcap, sink.getsockname()[:2], "10", tmp_path)
        datagrams = [sink.recv(65535) for _ in range(exported_datagrams(output))]  # as many as softflowd sent
    ours = our_records(datagrams)
    assert len(ours) == 12  # 3 flows in each of 4 slices
    assert ours == tshark_records(datagrams, tmp_path)


def test_flow_labels_and_counters_decode_alike(tmp_path):
    rows = [
        record(
            V6_FIELDS,
            v6_values(
                f"2001:db8::{i + 1}",
                "2001:db8:2::1",
                flow_label=0x10000 + i * 4099,
                octets=1000 * i + 1,
                packets=i + 1,
                sport=1024 + i,
                dport=443,
            ),
        )
        for i in range(20)
    ]
    datagrams = [
        ipfix_message([ipfix_template_set(256, V6_FIELDS), data_set(256, rows[:10])]),
        ipfix_message([data_set(256, rows[10:])], sequence=10),
    ]
    ours = our_records(datagrams)
    assert len(ours) == 20 and {r[6] for r in ours} == {0x10000 + i * 4099 for i in range(20)}
    assert ours == tshark_records(datagrams, tmp_path)
