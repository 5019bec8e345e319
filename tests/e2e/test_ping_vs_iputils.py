"""Our ICMPv6 echo against iputils `ping -6` in the same run: on loopback and across a veth
pair between two namespaces; marking on the wire; loss on paths without a route or with drops."""

from __future__ import annotations

import contextlib
import json
import re
import statistics
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support import in_netns, network_namespace, wait_until, xnetmon
from tests.tshark_support import TsharkCapture

pytestmark = [pytest.mark.root, pytest.mark.tool("ping")]

NEAR, FAR = "fd00:e0::1", "fd00:e0::2"
UNROUTED = "fd00:99::1"  # routed from NEAR towards FAR, where no route goes on
MEDIAN_BOUND_NS = 200_000  # generous: both tools time on one host, but the CPUs are shared
_PING_TIME = re.compile(r"icmp_seq=(\d+) .*time=([0-9.]+) ms")


@dataclass(frozen=True)
class Veth:
    near: str  # namespace holding NEAR, where the pings start
    far: str  # namespace holding FAR, a router with no onward route


@contextlib.contextmanager
def veth_pair() -> Iterator[Veth]:
    with network_namespace() as near, network_namespace() as far:
        ifname = f"xe{near[3:9]}"
        subprocess.run(
            ["ip", "link", "add", ifname, "netns", near, "type", "veth", "peer", "name", "far0", "netns", far],
            check=True,
        )
        subprocess.run(["ip", "-n", near, "link", "set", ifname, "name", "near0"], check=True)
        for ns, dev, address in ((near, "near0", NEAR), (far, "far0", FAR)):
            subprocess.run(["ip", "-n", ns, "address", "add", f"{address}/64", "dev", dev, "nodad"], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
        subprocess.run(["ip", "-n", near, "route", "add", "fd00:99::/64", "via", FAR], check=True)
        for setting in ("net.ipv6.conf.all.forwarding=1", "net.ipv6.icmp.ratelimit=0"):
            subprocess.run(in_netns(far, ["sysctl", "-qw", setting]), check=True)
        _wait_until_reachable(near, FAR)
        yield Veth(near, far)


def _wait_until_reachable(netns: str, address: str) -> None:
    wait_until(
        lambda: (
            subprocess.run(
                in_netns(netns, ["ping", "-6", "-n", "-c", "1", "-W", "1", address]), capture_output=True
            ).returncode
            == 0
        ),
        what=f"{address} reachable from {netns}",
    )


def ours(netns: str, target: str, *args: str) -> tuple[list[dict], dict]:
    done = xnetmon("probe", "ping", target, "--json", *args, netns=netns)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines and "summary" in lines[-1], done.stderr
    return lines[:-1], lines[-1]["summary"]


def iputils(netns: str, target: str, count: int, interval: float) -> dict[int, int]:
    """icmp_seq -> RTT in ns, from `ping -6`."""
    done = subprocess.run(
        in_netns(netns, ["ping", "-6", "-n", "-c", str(count), "-i", str(interval), target]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return {int(m.group(1)): int(float(m.group(2)) * 1e6) for m in _PING_TIME.finditer(done.stdout)}


def compare_with_iputils(netns: str, target: str, count: int = 20, interval: float = 0.05) -> None:
    results, summary = ours(netns, target, "-c", str(count), "-i", str(interval))
    theirs = iputils(netns, target, count, interval)
    assert summary["sent"] == count and summary["received"] == count
    assert sorted(r["seq"] for r in results) == sorted(theirs) == list(range(1, count + 1))
    our_median = statistics.median(r["rtt_ns"] for r in results)
    their_median = statistics.median(theirs.values())
    assert our_median > 0
    assert abs(our_median - their_median) < MEDIAN_BOUND_NS, (our_median, their_median)


def test_loopback_rtt_agrees_with_iputils():
    with network_namespace() as ns:
        compare_with_iputils(ns, "::1")


def test_veth_rtt_agrees_with_iputils():
    with veth_pair() as veth:
        compare_with_iputils(veth.near, FAR)


@pytest.mark.tool("tshark")
@pytest.mark.parametrize("socket_kind", ["raw", "ping"])
def test_slice_dscp_and_flow_label_are_on_the_wire(socket_kind, tmp_path):
    echoes = "icmp6 and (ip6[40] == 128 or ip6[40] == 129)"
    with veth_pair() as veth:
        if socket_kind == "ping":
            subprocess.run(in_netns(veth.near, ["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"]), check=True)
        with TsharkCapture(veth.far, "far0", echoes, tmp_path / "echo.pcap") as capture:
            capture.prime(veth.near, FAR)
            results, summary = ours(
                veth.near, FAR, "-c", "3", "-i", "0.1", "--slice", "video", "--flow-label", "0x12345"
            )
            capture.wait_for(6)
    assert summary["socket"] == socket_kind and summary["received"] == 3
    assert all(r["reply_dscp"] == 34 for r in results)  # the kernel answers in the request's class
    rows = capture.fields("icmpv6.type", "ipv6.tclass", "ipv6.flow", "icmpv6.echo.sequence_number")
    requests = [r for r in rows if r[0] == "128"]
    assert [int(r[3]) for r in requests] == [1, 2, 3]
    assert all(int(r[1], 16) == 34 << 2 for r in requests)  # video's AF41
    assert all(int(r[2], 16) == 0x12345 for r in requests)


def test_a_target_without_route_shows_total_loss_and_exit_status_1():
    with network_namespace() as ns:
        done = xnetmon("probe", "ping", "fd00:dead::1", "-c", "2", "-i", "0.05", "-W", "0.5", netns=ns)
    assert done.returncode == 1
    assert done.stdout.count("send failed: Network is unreachable") == 2
    assert "2 packets transmitted, 0 received, +2 errors, 100% packet loss" in done.stdout


@pytest.mark.parametrize("socket_kind", ["raw", "ping"])
def test_a_router_without_onward_route_is_named_in_the_loss(socket_kind):
    with veth_pair() as veth:
        if socket_kind == "ping":
            subprocess.run(in_netns(veth.near, ["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"]), check=True)
        results, summary = ours(veth.near, UNROUTED, "-c", "3", "-i", "0.1", "-W", "1")
    assert summary["socket"] == socket_kind
    assert summary["received"] == 0 and summary["errors"] == 3
    assert {r["icmp_error"] for r in results} == {f"no route to destination from {FAR}"}


@pytest.mark.tool("ip6tables")
def test_dropped_requests_are_lost_for_both_tools():
    with veth_pair() as veth:
        # Every second echo request dropped on arrival at FAR: exactly half of each run is lost.
        subprocess.run(
            in_netns(
                veth.far,
                [
                    "ip6tables",
                    "-A",
                    "INPUT",
                    "-p",
                    "icmpv6",
                    "--icmpv6-type",
                    "echo-request",
                    "-m",
                    "statistic",
                    "--mode",
                    "nth",
                    "--every",
                    "2",
                    "--packet",
                    "0",
                    "-j",
                    "DROP",
                ],
            ),
            check=True,
        )
        results, summary = ours(veth.near, FAR, "-c", "10", "-i", "0.05", "-W", "5")  # late is not lost
        theirs = iputils(veth.near, FAR, 10, 0.05)
    assert summary["sent"] == 10 and summary["received"] == 5 and summary["lost_unknown"] == 5
    assert all(r["icmp_error"] is None for r in results if r["loss"] == "unknown")
    assert len(theirs) == 5
