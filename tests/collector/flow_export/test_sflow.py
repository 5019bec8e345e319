"""sFlow v5: flow samples and expanded flow samples with raw Ethernet headers, per-sample
sampling rates, counter samples skipped, bad datagrams counted. tshark decodes the same
datagrams as an independent check of the encoder the tests use."""

from __future__ import annotations

import subprocess

import pytest
from scapy.all import UDP, Ether, IPv6, Raw, wrpcap

from collector.flow_export.receiver import FlowReceiver, flow_records
from collector.traffic.classifier import SliceClassifier
from tests.flow_export_support import sflow_counter_sample, sflow_datagram, sflow_flow_sample


def frame(dscp: int, size: int, label: int = 0x1234) -> bytes:
    return bytes(
        Ether()
        / IPv6(src="2001:db8::1", dst="2001:db8::2", tc=dscp << 2, fl=label)
        / UDP(sport=1, dport=2)
        / Raw(bytes(size))
    )


def test_flow_samples_scaled_by_their_own_rate():
    receiver = FlowReceiver()
    got = []
    receiver.on_flows = got.append
    datagram = sflow_datagram(
        [
            sflow_flow_sample([frame(34, 100), frame(26, 52)], rate=256),
            sflow_counter_sample(),
            sflow_flow_sample([frame(34, 100)], rate=512, expanded=True),
        ]
    )
    assert receiver.handle_datagram(datagram, "2001:db8::99", 6343) == 3
    slices = receiver.counters.by_slice()
    ip_length = 40 + 8 + 100
    assert slices["video"].bytes == ip_length * 256 + ip_length * 512
    assert slices["video"].packets == 256 + 512
    assert slices["egov"].packets == 256
    records = flow_records(got[0], SliceClassifier.default())
    assert [r.sampling_rate for r in records] == [256, 256, 512]
    assert records[0].flow_label == 0x1234 and records[0].observation_domain == 3
    assert not receiver.malformed


def test_truncated_and_garbled_sflow_is_counted():
    receiver = FlowReceiver()
    good = sflow_datagram([sflow_flow_sample([frame(34, 100)], rate=10)])
    receiver.handle_datagram(good[:40], "2001:db8::99", 6343)
    receiver.handle_datagram(good[:4] + b"\x00\x00\x00\x07" + good[8:], "2001:db8::99", 6343)
    receiver.handle_datagram(good + b"\x00\x00\x00\x00", "2001:db8::99", 6343)
    assert receiver.malformed == {("sflow", "truncated"): 1, ("sflow", "agent-address"): 1, ("sflow", "length"): 1}


@pytest.mark.tool("tshark")
def test_tshark_reads_the_test_datagrams_as_we_do(tmp_path):
    datagram = sflow_datagram([sflow_flow_sample([frame(34, 100), frame(18, 10)], rate=128)])
    pcap = tmp_path / "sflow.pcap"
    wrpcap(
        str(pcap),
        [Ether() / IPv6(src="2001:db8::99", dst="2001:db8::fe") / UDP(sport=6343, dport=6343) / Raw(datagram)],
    )
    out = subprocess.run(
        [
            "tshark",
            "-r",
            str(pcap),
            "-d",
            "udp.port==6343,sflow",
            "-T",
            "fields",
            "-e",
            "sflow.flow_sample.sampling_rate",
            "-e",
            "ipv6.src",
            "-e",
            "ipv6.tclass.dscp",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    rate, addresses, dscps = out.split("\t")
    receiver = FlowReceiver()
    got = []
    receiver.on_flows = got.append
    receiver.handle_datagram(datagram, "2001:db8::99", 6343)
    records = flow_records(got[0], SliceClassifier.default())
    assert rate == "128" and {r.sampling_rate for r in records} == {128}
    # tshark lists the outer packet's fields first, then each sampled header's
    assert addresses.split(",")[1:] == [r.source for r in records]
    assert [int(d) for d in dscps.split(",")[1:]] == [r.dscp for r in records]
