"""softflowd as a real exporter: NetFlow v9 and IPFIX from a capture file into our receiver
over real UDP sockets, and IPFIX from a live interface of a namespace pair into `xnetmon
flows collect`. Per-slice byte and
packet totals must equal the ground truth read from the capture with dpkt: exactly when
unsampled, within the sampling error bound with softflowd's 1-in-N sampling (-s N).

softflowd exports no IPv6 traffic class or flow label, so slices are told apart here by
destination prefix (each slice's traffic goes to its own /48, SLICE_PREFIX)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from collector.flow_export.receiver import FlowReceiver, ReceiverSettings
from collector.traffic.classifier import SliceClassifier
from tests.flow_export_support import (
    PREFIX_RULES,
    SLICE_DSCP,
    exported_datagrams,
    pcap_truth,
    softflowd_from_pcap,
    write_slice_pcap,
)
from tests.support import DEADLINE_S, REPO, XNETMON, LineReader, in_netns, network_namespace, stop_process, wait_until

pytestmark = pytest.mark.tool("softflowd")


def prefix_classifier() -> SliceClassifier:
    return SliceClassifier.from_rules(PREFIX_RULES, default="best-effort", source="tests")


def receive(settings: ReceiverSettings | None = None) -> FlowReceiver:
    settings = settings or ReceiverSettings()
    settings.listen = [("::1", 0)]
    return FlowReceiver(settings, prefix_classifier()).start()


def per_slice(receiver: FlowReceiver) -> dict[str, tuple[int, int]]:
    with receiver.reading():
        return {name: (t.bytes, t.packets) for name, t in receiver.counters.by_slice().items()}


def settle(receiver: FlowReceiver, softflowd_output: str) -> dict[str, tuple[int, int]]:
    """The totals once the receiver has handled every datagram softflowd says it exported."""
    exported = exported_datagrams(softflowd_output)

    def handled() -> int:
        with receiver.reading():  # held while a datagram is decoded and counted
            return sum(receiver.datagrams.values())

    wait_until(lambda: handled() >= exported, what=f"the receiver handling softflowd's {exported} datagram(s)")
    return per_slice(receiver)


@pytest.mark.parametrize("version, protocol", [("9", "netflow9"), ("10", "ipfix")])
def test_totals_from_a_capture_equal_the_ground_truth(tmp_path, version, protocol):
    pcap = tmp_path / "slices.pcap"
    write_slice_pcap(pcap)
    truth = pcap_truth(pcap)
    with receive() as receiver:
        got = settle(receiver, softflowd_from_pcap(pcap, receiver.addresses[0], version, tmp_path))
        assert got == truth
        assert set(got) == set(SLICE_DSCP)
        with receiver.reading():
            assert not receiver.malformed
            assert {p for _, p in receiver.datagrams} == {protocol}


@pytest.mark.parametrize("version", ["9", "10"])
def test_sampled_totals_within_the_sampling_error_bound(tmp_path, version):
    rate = 5
    pcap = tmp_path / "slices.pcap"
    write_slice_pcap(pcap, flows_per_slice=3, packets_per_flow=100)
    truth = pcap_truth(pcap)
    largest_packet = 40 + 8 + 20 + 40 + 13 * 49 + 20  # IPv6 + TCP header + the largest payload, rounded up
    with receive() as receiver:
        got = settle(
            receiver, softflowd_from_pcap(pcap, receiver.addresses[0], version, tmp_path, extra=("-s", str(rate)))
        )
        with receiver.reading():
            assert receiver.state.sampling.in_use == {"::1": rate}  # announced in softflowd's options
    for name, (octets, packets) in truth.items():
        # Systematic 1-in-N sampling of a slice's packets misses or adds at most one sampled
        # packet per flow: N packets and N largest packets per flow.
        flows = 3
        assert abs(got[name][1] - packets) <= rate * flows, (name, got[name], truth[name])
        assert abs(got[name][0] - octets) <= rate * flows * largest_packet, (name, got[name], truth[name])


# -- live: softflowd on one end of a veth pair between two namespaces ---------------------

LIVE_PORT = 9100
FILLER_PREFIX = "2001:db8:ff00::/48"
LIVE_SENDER = (
    """
import json, socket, sys
dscps = json.loads(sys.argv[1])
sent = {}
for index, (name, dscp) in enumerate(dscps.items(), start=1):
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, dscp << 2)
    octets = 0
    for n in range(40):
        payload = bytes(50 + 23 * n)
        sock.sendto(payload, (f"2001:db8:{index}::1", %d))
        octets += 40 + 8 + len(payload)
    sent[name] = [octets, 40]
print(json.dumps(sent))
"""
    % LIVE_PORT
)


def _softflowd_statistics(control) -> str:
    return subprocess.run(
        ["softflowctl", "-c", str(control), "statistics"], capture_output=True, text=True, timeout=DEADLINE_S
    ).stdout


def _softflowd_processed(control) -> int:
    out = _softflowd_statistics(control)
    return next((int(line.split()[-1]) for line in out.splitlines() if line.startswith("Packets processed")), 0)


def _collected_datagrams(line: str) -> int:
    """The datagrams count of one of `xnetmon flows collect --json`'s tables (0 for other lines)."""
    return json.loads(line)["datagrams"] if line.startswith("{") else 0


@pytest.mark.root
@pytest.mark.tool("softflowctl")
def test_live_interface_of_a_namespace_pair(tmp_path):
    """softflowd captures on a's end of a veth pair; we send each slice's traffic from a to
    b's addresses; `xnetmon flows collect` in a receives the IPFIX export.

    softflowd 1.1.0 reads its capture ring only in whole blocks, so after the measured
    traffic we send filler (to FILLER_PREFIX, its own slice here) until softflowd has
    processed more packets than we measured: the ring is in order, so ours were all seen.
    Then `softflowctl expire-all` exports every flow, which leaves at softflowd's next wake-up;
    the test waits until the collector has every datagram softflowd counts as exported."""
    rules = tmp_path / "slices.yaml"
    rules.write_text(
        yaml.safe_dump(
            {"rules": [*PREFIX_RULES, {"slice": "filler", "destination": FILLER_PREFIX}], "default": "best-effort"}
        )
    )
    control = tmp_path / "softflowd.ctl"
    with network_namespace() as a, network_namespace() as b:
        subprocess.run(
            ["ip", "link", "add", "xf-a", "netns", a, "type", "veth", "peer", "name", "xf-b", "netns", b], check=True
        )
        for ns, dev, address in ((a, "xf-a", "fd00:f10::1"), (b, "xf-b", "fd00:f10::2")):
            subprocess.run(["ip", "-n", ns, "addr", "add", f"{address}/64", "dev", dev, "nodad"], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        for prefix in [*(p for p in (r["destination"] for r in PREFIX_RULES)), FILLER_PREFIX]:
            subprocess.run(
                ["ip", "-n", b, "addr", "add", prefix.replace("::/48", "::1/48"), "dev", "lo", "nodad"], check=True
            )
            subprocess.run(["ip", "-n", a, "route", "add", prefix, "via", "fd00:f10::2"], check=True)
        collector = subprocess.Popen(
            in_netns(
                a,
                [
                    *XNETMON,
                    "flows",
                    "collect",
                    "--listen",
                    "[::1]:4739",
                    "--slices",
                    str(rules),
                    "--interval",
                    "1",
                    "--json",
                ],
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        collected = LineReader(collector.stdout)
        softflowd = None
        try:
            collected.wait_for(lambda line: "receiving" in line)
            softflowd = subprocess.Popen(
                in_netns(
                    a,
                    [
                        "softflowd",
                        "-d",
                        "-i",
                        "xf-a",
                        "-n",
                        "[::1]:4739",
                        "-v",
                        "10",
                        "-c",
                        str(control),
                        "-p",
                        str(tmp_path / "softflowd.pid"),
                        f"ip6 and udp and dst port {LIVE_PORT}",
                    ],
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            wait_until(control.exists, what="softflowd's control socket")
            filler = filler_command(a)

            def capturing() -> bool:
                # The control socket may come before the capture: filler until softflowd counts packets.
                if _softflowd_processed(control) > 0:
                    return True
                subprocess.run(filler, check=True, timeout=DEADLINE_S)
                return False

            wait_until(capturing, what="softflowd capturing on xf-a")
            already = _softflowd_processed(control)
            sent = json.loads(
                subprocess.run(
                    in_netns(a, [sys.executable, "-c", LIVE_SENDER, json.dumps(SLICE_DSCP)]),
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=DEADLINE_S,
                ).stdout
            )
            measured = sum(p for _, p in sent.values())

            def read_past_ours() -> bool:
                if _softflowd_processed(control) > already + measured:
                    return True
                subprocess.run(filler, check=True, timeout=DEADLINE_S)
                return False

            wait_until(read_past_ours, what="softflowd reading its capture past our packets")
            exported_before = _exported_so_far(_softflowd_statistics(control))
            subprocess.run(
                ["softflowctl", "-c", str(control), "expire-all"], check=True, timeout=DEADLINE_S, capture_output=True
            )

            def all_exported() -> str | None:
                # No flow left, and the expired ones have left: a loaded machine may show the
                # first before softflowd's next wake-up sends them.
                statistics = _softflowd_statistics(control)
                done = "Number of active flows: 0" in statistics and _exported_so_far(statistics) > exported_before
                return statistics if done else None

            exported = exported_datagrams(wait_until(all_exported, what="softflowd exporting every flow"))
            collected.wait_for(lambda line: _collected_datagrams(line) >= exported)
        finally:
            if softflowd is not None:
                stop_process(softflowd)
            stop_process(collector)
        final = json.loads(collected.text().strip().splitlines()[-1])
    got = {name: [t["bytes"], t["packets"]] for name, t in final["slices"].items() if name in SLICE_DSCP}
    assert got == sent
    assert final["malformed"] == 0


def _exported_so_far(statistics: str) -> int:
    """Export datagrams softflowd has sent so far (none before its statistics name any)."""
    return exported_datagrams(statistics) if "Flows exported:" in statistics else 0


def filler_command(ns: str) -> list[str]:
    """A command that sends 200 filler datagrams of 1,400 octets from namespace `ns`."""
    code = (
        "import socket\ns = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
        f"for _ in range(200): s.sendto(bytes(1400), ('{FILLER_PREFIX.replace('::/48', '::1')}', {LIVE_PORT}))\n"
    )
    return in_netns(ns, [sys.executable, "-c", code])
