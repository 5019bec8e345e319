"""Paris traceroute over real ECMP: a diamond of namespaces whose splitter balances per flow.

    s -- r ==(b1 | b2)== d        r has two equal-cost next hops towards d

The lab routes along single paths, so this builds its own five namespaces (removed
afterwards). The splitter hashes either on addresses and flow label (Linux multipath
policy 0) or on the 5-tuple (policy 1), like the routers of the extranet do.
"""

from __future__ import annotations

import contextlib
import json
import subprocess

import pytest

from tests.support import in_netns, network_namespace, wait_until, xnetmon

pytestmark = pytest.mark.root

NODES = ("s", "r", "b1", "b2", "d")
LOOPBACK = {node: f"2001:db8:ff::{i}" for i, node in enumerate(NODES, 1)}
# link name -> (a, b, /64 prefix); the a end is ::1, the b end ::2
LINKS = {
    "sr": ("s", "r", "2001:db8:1::"),
    "rb1": ("r", "b1", "2001:db8:2::"),
    "rb2": ("r", "b2", "2001:db8:3::"),
    "b1d": ("b1", "d", "2001:db8:4::"),
    "b2d": ("b2", "d", "2001:db8:5::"),
}


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


def prefix_route_present(ns: str, device: str, prefix: str) -> bool:
    shown = subprocess.run(
        ["ip", "-n", ns, "-6", "route", "show", "dev", device], check=True, capture_output=True, text=True
    ).stdout
    return f"{prefix}/64" in shown


def end(link: str, node: str) -> str:
    a, _b, prefix = LINKS[link]
    return prefix + ("1" if node == a else "2")


def peer(link: str, node: str) -> str:
    a, b, _prefix = LINKS[link]
    return end(link, b if node == a else a)


@contextlib.contextmanager
def diamond(hash_policy: int):
    with contextlib.ExitStack() as stack:
        ns = {node: stack.enter_context(network_namespace()) for node in NODES}
        for node, name in ns.items():
            subprocess.run(
                in_netns(
                    name,
                    [
                        "sysctl",
                        "-q",
                        "-w",
                        "net.ipv6.conf.all.forwarding=1",
                        "net.ipv6.conf.all.accept_dad=0",
                        "net.ipv6.conf.default.accept_dad=0",
                        "net.ipv6.icmp.ratelimit=0",
                        f"net.ipv6.fib_multipath_hash_policy={hash_policy}",
                        # Time Exceeded and Destination Unreachable (types 3 and 1) out of the
                        # mask: no per-host limit, and no global one (50 burst, 1,000/s) either.
                        "net.ipv6.icmp.ratemask=0,2,4-127",
                    ],
                ),
                check=True,
                capture_output=True,
            )
            ip(name, "addr", "add", f"{LOOPBACK[node]}/128", "dev", "lo")
        for link, (a, b, _prefix) in LINKS.items():
            subprocess.run(
                [
                    "ip",
                    "link",
                    "add",
                    f"{link}-{a}",
                    "netns",
                    ns[a],
                    "type",
                    "veth",
                    "peer",
                    "name",
                    f"{link}-{b}",
                    "netns",
                    ns[b],
                ],
                check=True,
            )
            for node in (a, b):
                ip(ns[node], "addr", "add", f"{end(link, node)}/64", "dev", f"{link}-{node}", "nodad")
                ip(ns[node], "link", "set", f"{link}-{node}", "up")
        # The kernel installs a link's prefix route only once it sees carrier, which it
        # propagates asynchronously: a route via a neighbour added before then is refused.
        for link, (a, b, prefix) in LINKS.items():
            for node in (a, b):
                wait_until(
                    lambda node=node, link=link, prefix=prefix: prefix_route_present(
                        ns[node], f"{link}-{node}", prefix
                    ),
                    what=f"the prefix route of {link}-{node}",
                )
        everyone = "2001:db8:ff::/64"
        ip(ns["s"], "route", "add", everyone, "via", peer("sr", "s"), "src", LOOPBACK["s"])
        ip(ns["r"], "route", "add", LOOPBACK["s"], "via", peer("sr", "r"), "src", LOOPBACK["r"])
        ip(ns["r"], "route", "add", LOOPBACK["b1"], "via", peer("rb1", "r"), "src", LOOPBACK["r"])
        ip(ns["r"], "route", "add", LOOPBACK["b2"], "via", peer("rb2", "r"), "src", LOOPBACK["r"])
        ip(
            ns["r"],
            "route",
            "add",
            LOOPBACK["d"],
            "src",
            LOOPBACK["r"],
            "nexthop",
            "via",
            peer("rb1", "r"),
            "dev",
            "rb1-r",
            "nexthop",
            "via",
            peer("rb2", "r"),
            "dev",
            "rb2-r",
        )
        for branch in ("b1", "b2"):
            ip(ns[branch], "route", "add", LOOPBACK["d"], "via", peer(f"{branch}d", branch), "src", LOOPBACK[branch])
            ip(ns[branch], "route", "add", everyone, "via", peer(f"r{branch}", branch), "src", LOOPBACK[branch])
        ip(ns["d"], "route", "add", everyone, "via", peer("b1d", "d"), "src", LOOPBACK["d"])
        _wait_reachable(ns["s"], LOOPBACK["d"])
        yield ns


def _wait_reachable(ns: str, address: str) -> None:
    """veths pass traffic only once the kernel has brought them up, a moment after `link set up`."""
    wait_until(
        lambda: (
            subprocess.run(
                in_netns(ns, ["ping", "-6", "-n", "-c", "1", "-W", "0.2", address]), capture_output=True
            ).returncode
            == 0
        ),
        interval=0.1,
        what=f"{address} reachable from {ns}",
    )


def trace(ns: str, *args: str) -> dict:
    # Every probe here is answered: the timeout only bounds a lost one, and a loaded machine
    # must not turn a late answer into a star (another path fingerprint).
    done = xnetmon("probe", "trace", LOOPBACK["d"], "--json", "-W", "5", *args, netns=ns)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


BRANCHES = {LOOPBACK["b1"], LOOPBACK["b2"]}


@pytest.mark.parametrize("protocol", ["udp", "icmp", "tcp"])
def test_multipath_finds_both_branches_by_varying_the_flow_label(protocol):
    with diamond(hash_policy=0) as ns:  # addresses + flow label: only the label can move a flow
        document = trace(ns["s"], "--multipath", "--flows", "16", "-q", "3", "--proto", protocol)
        next_hops = [set(hop["responders"]) for hop in document["next_hops"]]
        assert next_hops == [{LOOPBACK["r"]}, BRANCHES, {LOOPBACK["d"]}]
        fingerprints = {f["path"]["fingerprint"] for f in document["flows"]}
        assert len(fingerprints) == 2
        for flow in document["flows"]:  # Paris: within a flow, every probe took one branch
            assert all(len({p["responder"] for p in hop["probes"]}) == 1 for hop in flow["hops"])


def test_one_flow_label_is_one_path_every_time():
    with diamond(hash_policy=0) as ns:
        runs = [trace(ns["s"], "--flow-label", "0x4d2", "-q", "5")["flows"][0] for _ in range(3)]
    assert len({r["path"]["fingerprint"] for r in runs}) == 1
    assert all(len({p["responder"] for p in r["hops"][1]["probes"]}) == 1 for r in runs)


@pytest.mark.tool("traceroute")
def test_with_a_five_tuple_hash_classic_traceroute_wanders_and_paris_does_not():
    """Classic traceroute changes the UDP port per probe, so a 5-tuple balancer sends its
    probes down both branches; ours keeps the ports, so its hop 2 is one router."""
    with diamond(hash_policy=1) as ns:
        classic_lines = []
        for _ in range(3):
            done = subprocess.run(
                in_netns(ns["s"], ["traceroute", "-6", "-n", "-q", "8", "-w", "0.5", LOOPBACK["d"]]),
                capture_output=True,
                text=True,
                check=True,
            )
            classic_lines.append(done.stdout.splitlines()[2])  # hop 2
        ours = [trace(ns["s"], "-q", "8")["flows"][0]["hops"][1] for _ in range(3)]
        multipath = trace(ns["s"], "--multipath", "--flows", "16")
    assert any(all(branch in line for branch in BRANCHES) for line in classic_lines), classic_lines
    assert all(len({p["responder"] for p in hop["probes"]}) == 1 for hop in ours)
    assert set(multipath["next_hops"][1]["responders"]) == BRANCHES  # other ports: the other branch
