"""STAMP end to end in a network namespace: real drops, real marking on the wire."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.support import in_netns, network_namespace, running_reflector, xnetmon
from tests.tshark_support import TsharkCapture

pytestmark = pytest.mark.root


def ip6tables(netns: str, *rule: str) -> None:
    subprocess.run(in_netns(netns, ["ip6tables", *rule]), check=True)


def probe_json(netns: str, *args: str) -> tuple[list[dict], dict]:
    done = xnetmon("probe", "stamp", "::1", "--json", *args, netns=netns)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines and "summary" in lines[-1], done.stderr
    return lines[:-1], lines[-1]["summary"]


@pytest.mark.tool("ip6tables")
def test_forward_and_reverse_loss_are_told_apart():
    with (
        network_namespace() as ns,
        running_reflector("--stateful", "--bind", "::1", "--port", "8620", "--rate-limit", "0", netns=ns),
    ):
        # Every 5th request and every 4th reply dropped by the kernel: 8 + 8 of 40.
        ip6tables(
            ns,
            "-A",
            "INPUT",
            "-p",
            "udp",
            "--dport",
            "8620",
            "-m",
            "statistic",
            "--mode",
            "nth",
            "--every",
            "5",
            "--packet",
            "0",
            "-j",
            "DROP",
        )
        ip6tables(
            ns,
            "-A",
            "INPUT",
            "-p",
            "udp",
            "--sport",
            "8620",
            "-m",
            "statistic",
            "--mode",
            "nth",
            "--every",
            "4",
            "--packet",
            "1",
            "-j",
            "DROP",
        )
        # -W: a reply the kernel let through must count as received however late a loaded machine makes it.
        _results, summary = probe_json(ns, "-p", "8620", "-c", "40", "-i", "0.01", "-W", "5")
    assert summary["sent"] == 40 and summary["received"] == 24
    lost = summary["lost_forward"] + summary["lost_reverse"] + summary["lost_unknown"]
    assert lost == 16
    # Only losses after the last reply can lack a direction; the counts must match the rules.
    assert summary["lost_unknown"] <= 1
    assert 7 <= summary["lost_forward"] <= 8 and 7 <= summary["lost_reverse"] <= 8


@pytest.mark.tool("tshark")
def test_slice_dscp_and_flow_label_are_on_the_wire_both_ways(tmp_path):
    with (
        network_namespace() as ns,
        running_reflector("--bind", "::1", "--port", "8621", netns=ns),
        TsharkCapture(ns, "lo", "udp port 8621", tmp_path / "stamp.pcap") as capture,
    ):
        capture.prime(ns, "::1")
        _results, summary = probe_json(
            ns, "-p", "8621", "-c", "2", "-i", "0.1", "--slice", "video", "--flow-label", "0x12345"
        )
        capture.wait_for(4)
    assert summary["received"] == 2
    rows = capture.fields("udp.dstport", "ipv6.tclass", "ipv6.flow")
    requests = [r for r in rows if r[0] == "8621"]
    replies = [r for r in rows if r[0] != "8621"]
    assert len(requests) == 2 and len(replies) == 2
    assert all(int(r[1], 16) == 34 << 2 for r in rows)  # video's AF41 both ways
    assert all(int(r[2], 16) == 0x12345 for r in requests)
