"""Bringing a lab up, and keeping its links and routes in line with the active faults.

Speed comes from batching: one `ip -batch` or `tc -batch` per namespace, run for all
namespaces at once, rather than a process per address, route or class.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lab import faults, netns, qos, routing
from lab.errors import LabError
from lab.state import LabState

if TYPE_CHECKING:
    from lab.lab import Lab

ROUTE_PROTO = "77"  # marks the routes the lab installs, so it can replace exactly those
LINK_UP_TIMEOUT = 10.0

SITE_SYSCTLS: dict[str, str | int] = {
    "net.ipv6.conf.all.forwarding": 1,
    # No duplicate address detection: addresses are usable at once, and unique by plan.
    "net.ipv6.conf.all.accept_dad": 0,
    "net.ipv6.conf.default.accept_dad": 0,
    # Keep addresses when a link goes down, so a healed link needs only its routes back.
    "net.ipv6.conf.all.keep_addr_on_down": 1,
    "net.ipv6.conf.default.keep_addr_on_down": 1,
    "net.ipv6.conf.all.accept_ra": 0,
    "net.ipv6.conf.default.accept_ra": 0,
    # Hop-by-hop traces and fast probes need every ICMPv6 error, not one per second.
    "net.ipv6.icmp.ratelimit": 0,
    # ...nor a share of the global ICMP budget (burst 50, then 1,000/s): Destination
    # Unreachable (1) and Time Exceeded (3) are taken out of rate limiting altogether.
    "net.ipv6.icmp.ratemask": "0,2,4-127",
}


def create(lab: Lab) -> None:
    """Create namespaces, veths, addresses, queues and routes (the record exists already)."""
    topo = lab.topology
    sites = [s.name for s in topo.sites]
    netns.run(netns.ip_batch_argv(None), stdin="".join(f"netns add {lab.namespace(s)}\n" for s in sites))
    # sysctls before the links exist, so the `default` values apply to the new veths.
    netns.run_all((netns.sysctl_argv(lab.namespace(s), SITE_SYSCTLS), None) for s in sites)
    veths = "".join(
        f"link add {link.interface(link.a)} netns {lab.namespace(link.a)} type veth"
        f" peer name {link.interface(link.b)} netns {lab.namespace(link.b)}\n"
        for link in topo.links
    )
    netns.run(netns.ip_batch_argv(None), stdin=veths)
    addresses = {s: ["link set lo up", f"addr add {topo.loopback(s)}/128 dev lo"] for s in sites}
    for s in sites:
        host = topo.plan.host_prefix(topo.site(s).index)
        # No dummy devices in this kernel: the site's host network lives on lo.
        addresses[s].append(f"addr add {topo.host_address(s)}/{host.prefixlen} dev lo")
    for link in topo.links:
        for end in link.ends:
            device = link.interface(end)
            addresses[end].append(f"addr add {topo.link_address(link.name, end)}/64 dev {device} nodad")
            addresses[end].append(f"link set {device} up")
    netns.run_all((netns.ip_batch_argv(lab.namespace(s)), batch(lines)) for s, lines in addresses.items())
    shaping: dict[str, list[str]] = {s: [] for s in sites}
    for link in topo.links:
        for end in link.ends:
            shaping[end] += qos.setup_lines(topo, link, end)
    netns.run_all((netns.tc_batch_argv(lab.namespace(s)), batch(lines)) for s, lines in shaping.items())
    wait_links_up(lab, {(link.name, end) for link in topo.links for end in link.ends})
    install_routes(lab, frozenset(), frozenset())


def install_routes(lab: Lab, down_links: frozenset[str], down_sites: frozenset[str]) -> None:
    table = routing.routes(lab.topology, down_links, down_sites)
    commands = []
    for site, routes in table.items():
        lines = [f"route flush proto {ROUTE_PROTO}"]
        lines += [
            f"route add {r.prefix} via {r.next_hop} dev {r.interface} src {r.source} proto {ROUTE_PROTO}"
            for r in routes
        ]
        commands.append((["ip", "-6", "-n", lab.namespace(site), "-batch", "-"], batch(lines)))
    netns.run_all(commands)


def wait_links_up(lab: Lab, ends: set[tuple[str, str]]) -> None:
    """Wait until the kernel reports each (link, site) end operationally up.

    A veth passes no traffic until the kernel's link watcher has activated its queues,
    up to a second after `link set up`; returning earlier would make the first probes fail.
    """
    if not ends:
        return
    deadline = time.monotonic() + LINK_UP_TIMEOUT
    waiting = set(ends)
    while True:
        by_site: dict[str, set[str]] = {}
        for link, site in waiting:
            by_site.setdefault(site, set()).add(lab.interface(link, site))
        results = netns.run_all(((["ip", "-n", lab.namespace(s), "-br", "link"], None) for s in by_site), check=False)
        up = set()
        for site, result in zip(by_site, results):
            for line in result.stdout.splitlines():
                fields = line.split()
                if len(fields) >= 2 and fields[1] == "UP":
                    up.add((site, fields[0].split("@")[0]))
        waiting = {(link, site) for link, site in waiting if (site, lab.interface(link, site)) not in up}
        if not waiting:
            return
        if time.monotonic() > deadline:
            names = ", ".join(sorted(f"{lab.interface(link, s)}@{s}" for link, s in waiting))
            raise LabError(f"links not up after {LINK_UP_TIMEOUT:g} s: {names}")
        time.sleep(0.05)


def set_links(lab: Lab, state: LabState) -> None:
    """Links down where an active fault says so, up everywhere else."""
    dl, ds = faults.down_links(state), faults.down_sites(state)
    lines: dict[str, list[str]] = {s: [] for s in lab.sites}
    coming_up = set()
    for link in lab.topology.links:
        is_down = link.name in dl or link.a in ds or link.b in ds
        for end in link.ends:
            lines[end].append(f"link set {link.interface(end)} {'down' if is_down else 'up'}")
            if not is_down:
                coming_up.add((link.name, end))
    netns.run_all((netns.ip_batch_argv(lab.namespace(s)), batch(site_lines)) for s, site_lines in lines.items())
    wait_links_up(lab, coming_up)


def batch(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)
