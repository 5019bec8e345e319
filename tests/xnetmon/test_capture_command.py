"""`xnetmon capture read` and `xnetmon capture live`, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet6 import TCP, UDP, HBHOptUnknown, IPv6, IPv6ExtHdrHopByHop
from scapy.utils import wrpcap

from tests.capture_support import wait_until_drained
from tests.support import DEADLINE_S, XNETMON, network_namespace, stop_process, xnetmon

A, B = "fd00:1::1", "fd00:2::2"

TCP_EXCHANGE = """
import socket, threading, time
server = socket.socket(socket.AF_INET6)
server.bind(("::1", 0))
server.listen()
def echo():
    connection, _ = server.accept()
    while data := connection.recv(100):
        connection.sendall(data)
threading.Thread(target=echo, daemon=True).start()
client = socket.create_connection(("::1", server.getsockname()[1]))
for _ in range(5):
    client.sendall(b"ping")
    client.recv(100)
    time.sleep(0.02)
client.close()
"""


@pytest.fixture(scope="module")
def capture_file(tmp_path_factory) -> Path:
    """UDP in two slices, a TCP exchange with timestamps (one RTT sample) and packets carrying
    the alternate-marking option (FlowMonID 7, colour 1)."""
    packets = []
    for _ in range(10):
        packets.append(IPv6(src=A, dst=B, tc=34 << 2) / UDP(sport=5000, dport=862) / (b"v" * 60))
        packets.append(IPv6(src=A, dst=B, tc=26 << 2) / UDP(sport=5001, dport=862) / (b"e" * 160))
    packets.append(IPv6(src=A, dst=B) / TCP(sport=40000, dport=443, flags="S", options=[("Timestamp", (100, 0))]))
    answer = TCP(sport=443, dport=40000, flags="SA", ack=1, options=[("Timestamp", (900, 100))])  # acknowledges the SYN
    packets.append(IPv6(src=B, dst=A) / answer)
    mark = (7 << 12 | 1 << 11).to_bytes(4, "big")
    for _ in range(3):
        packets.append(
            IPv6(src=A, dst=B)
            / IPv6ExtHdrHopByHop(options=[HBHOptUnknown(otype=0x12, optdata=mark)])
            / UDP(sport=6000, dport=6000)
        )
    for i, packet in enumerate(packets):
        packet.time = 1_700_000_000 + i * 0.001
    path = tmp_path_factory.mktemp("capture") / "traffic.pcap"
    wrpcap(str(path), packets, linktype=101)
    return path


def test_read_prints_slice_totals_and_top_flows(capture_file: Path) -> None:
    result = xnetmon("capture", "read", str(capture_file), "--top", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{capture_file}: packets 25, ip packets 25, sampling 1:1"
    rows = [line.split() for line in lines]
    assert ["video", "1", "10", "1,080"] in rows  # slice, flows, packets, bytes: 10 x (40 + 8 + 60)
    assert ["egov", "1", "10", "2,080"] in rows
    assert "top 2 flows by bytes" in result.stdout
    assert any(line.startswith("fd00:1::1") and "egov" in line for line in lines)


def test_read_json_has_every_flow_and_the_observers(capture_file: Path) -> None:
    result = xnetmon("capture", "read", str(capture_file), "--json", "--tcp-rtt", "--altmark-point", "here")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["slices"]["video"] == {"bytes": 1080, "packets": 10, "flows": 1}
    assert sum(f["packets"] for f in document["flows"]) == 25
    assert {f["source_port"] for f in document["flows"] if f["slice"] == "egov"} == {5001}
    assert document["tcp_rtt"]["slices"]["best-effort"]["samples"] == 1
    assert document["tcp_rtt"]["slices"]["best-effort"]["min_s"] == pytest.approx(0.001, abs=1e-6)
    assert document["altmark"]["packets"] == [{"flow_mon_id": 7, "colour": 1, "packets": 3}]


def test_per_packet_path_prints_the_same(capture_file: Path) -> None:
    fast = xnetmon("capture", "read", str(capture_file), "--json")
    slow = xnetmon("capture", "read", str(capture_file), "--json", "--per-packet")
    assert fast.returncode == slow.returncode == 0
    assert json.loads(fast.stdout) == json.loads(slow.stdout)


def test_slice_rules_file_and_its_errors(capture_file: Path, tmp_path: Path) -> None:
    rules = tmp_path / "slices.yaml"
    rules.write_text("default: data\nrules:\n  - {slice: egov, destination: 'fd00:2::/32', dscp: 26}\n")
    result = xnetmon("capture", "read", str(capture_file), "--slices", str(rules), "--json")
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)["slices"]) == {"egov", "data"}
    rules.write_text("rules:\n  - {slice: egov, dscp: 99}\n")
    result = xnetmon("capture", "read", str(capture_file), "--slices", str(rules))
    assert result.returncode == 2
    assert f"{rules}: rules[0].dscp: expected 0..63, got 99" in result.stderr


def test_unreadable_files_are_usage_errors(tmp_path: Path) -> None:
    result = xnetmon("capture", "read", str(tmp_path / "missing.pcap"))
    assert (result.returncode, "cannot read" in result.stderr) == (2, True)
    (tmp_path / "notes.txt").write_text("not a capture at all")
    result = xnetmon("capture", "read", str(tmp_path / "notes.txt"))
    assert (result.returncode, "not a pcap or pcapng file" in result.stderr) == (2, True)


@pytest.mark.root
def test_live_capture_inside_a_namespace() -> None:
    with network_namespace() as ns:
        proc = subprocess.Popen(
            [
                *XNETMON,
                "capture",
                "live",
                "lo",
                "--netns",
                ns,
                "--json",
                "--duration",
                str(DEADLINE_S),
                "--tcp-rtt",
            ],  # stopped once drained; the duration bounds a failure
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert "capturing on lo, sampling 1:1" in proc.stderr.readline()
            subprocess.run(
                ["ip", "netns", "exec", ns, "ping", "-6", "-n", "-c", "5", "-i", "0.2", "-Q", "0x88", "::1"],
                check=True,
                capture_output=True,
                timeout=30,
            )
            subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", TCP_EXCHANGE], check=True, timeout=30)
            wait_until_drained(proc.pid)  # every packet of the exchange counted
        finally:
            stop_process(proc)  # SIGTERM: the command ends its records and prints them
        document = json.loads(proc.stdout.read())
    requests = [f for f in document["flows"] if f["protocol"] == 58 and f["destination_port"] == 128 << 8]
    assert [(f["slice"], f["dscp"], f["packets"], f["bytes"]) for f in requests] == [("video", 34, 5, 5 * 104)]
    assert document["packets"] >= 10 and document["sampling_rate"] == 1
    # the TCP exchange (Linux sends the timestamp option) gave passive RTT samples
    assert document["tcp_rtt"]["slices"]["best-effort"]["samples"] >= 1
