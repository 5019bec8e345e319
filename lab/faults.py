"""Fault injection: each kind checks its input, changes the lab, and records how to undo it.

Two ways of undoing, chosen by what a fault touches:
- rules and processes (loss, delay, reroute, congest's load, kill) are recorded as the
  exact commands that remove them and the processes to stop;
- link state, routes and queue rates are shared between faults (a site down and a link
  down may cover the same link), so they are recomputed from the faults that remain.

Each builder checks its input, applies its own rules and records how to remove them;
`lab.lab.Lab` calls it under the state lock, does the shared parts, and rolls the whole
fault back if any step fails.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab import qos, routing
from lab.state import Fault, LabState
from lab.topology import LabTopology, Link, TopologyError

if TYPE_CHECKING:
    from lab.lab import Lab

RULE_TAG = "xnetmon:"  # ip6tables comment prefix, so our rules are recognisable
ND_TYPES = ("neighbour-solicitation", "neighbour-advertisement")  # spared by loss faults
TABLE_BASE = 1000  # policy-routing table and rule preference of reroute fault N: 1000 + N
QUEUE_BASE = 100  # NFQUEUE number of delay fault N: 100 + N
PORT_BASE = 5300  # iperf3 port of congest fault N: 5300 + N


class FaultError(ValueError):
    """A fault that cannot be applied as asked; nothing has been changed."""


@dataclass(frozen=True, slots=True)
class Direction:
    """One direction of a link: packets leave `sender` on `link` towards `receiver`."""

    link: Link
    sender: str
    receiver: str


def directions(topology: LabTopology, link_name: str, from_site: str | None) -> tuple[Direction, ...]:
    link = _link(topology, link_name)
    if from_site is None:
        return (Direction(link, link.a, link.b), Direction(link, link.b, link.a))
    if from_site not in link.ends:
        raise FaultError(f"--from {from_site!r} is not an end of link {link.name} (its ends are {link.a}, {link.b})")
    return (Direction(link, from_site, link.peer(from_site)),)


def _link(topology: LabTopology, name: str) -> Link:
    try:
        return topology.link(name)
    except TopologyError as exc:
        raise FaultError(str(exc)) from None


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise FaultError(message)


def _slice_dscp(topology: LabTopology, slice_name: str | None) -> int | None:
    if slice_name is None:
        return None
    try:
        return topology.slice(slice_name).dscp
    except TopologyError as exc:
        raise FaultError(str(exc)) from None


def _table_and_chain(verb: str, spec: list[str]) -> list[str]:
    # spec starts with "-t TABLE CHAIN": insert the verb before the chain.
    return [spec[0], spec[1], verb, *spec[2:]]


# ---------------------------------------------------------------------------------------
# State computed from the active faults (shared by several faults, so never "undone").


def down_links(state: LabState) -> frozenset[str]:
    return frozenset(f.params["link"] for f in state.faults if f.kind == "down" and "link" in f.params)


def down_sites(state: LabState) -> frozenset[str]:
    return frozenset(f.params["site"] for f in state.faults if f.kind == "down" and "site" in f.params)


def end_settings(topology: LabTopology, state: LabState, link: Link, sender: str) -> qos.EndSettings:
    settings = qos.base_settings(link)
    starved: dict[str, int] = {}
    for fault in state.faults:
        if fault.params.get("link") != link.name or sender not in fault.params.get("senders", ()):
            continue
        if fault.kind == "congest":
            settings = qos.EndSettings(int(fault.params["rate_mbit"] * 1000), fault.params["queue_ms"])
        elif fault.kind == "slice-starve":
            starved[fault.params["slice"]] = fault.params["rate_kbit"]
    return qos.EndSettings(settings.rate_kbit, settings.queue_ms, tuple(sorted(starved.items())))


def reroute_path(state: LabState, source: str, destination: str) -> tuple[str, ...] | None:
    """The path a reroute fault pins between two sites, if any (latest fault wins)."""
    for fault in reversed(state.faults):
        if fault.kind != "reroute":
            continue
        hops = tuple(fault.params["path"])
        if (hops[0], hops[-1]) == (source, destination):
            return hops
        if (hops[-1], hops[0]) == (source, destination):
            return tuple(reversed(hops))
    return None


# ---------------------------------------------------------------------------------------
# Builders. Each returns the Fault record; the caller has already allocated `fault_id`.


def loss(lab: Lab, fault: Fault, link: str, rate: float, from_site: str | None, slice_name: str | None) -> None:
    _check(0 < rate <= 1, f"loss rate must be in (0, 1], got {rate}")
    topology = lab.topology
    dscp = _slice_dscp(topology, slice_name)
    dirs = directions(topology, link, from_site)
    for d in dirs:
        # Neighbour Discovery passes first: the fault is loss of what the link carries, and
        # a lost Neighbor Advertisement would stall the receiver's own sends into the other
        # direction (queued, then dropped, while it resolves the sender again), so a one-way
        # fault would no longer be one way.
        for nd_type in ND_TYPES:
            spec = ["-t", "raw", "PREROUTING", "-i", d.link.interface(d.receiver), "-p", "ipv6-icmp"]
            spec += ["--icmpv6-type", nd_type, "-m", "comment", "--comment", RULE_TAG + fault.id, "-j", "ACCEPT"]
            lab.run(lab.exec_argv(d.receiver, ["ip6tables", "-w", *_table_and_chain("-A", spec)]))
            fault.undo.append(lab.exec_argv(d.receiver, ["ip6tables", "-w", *_table_and_chain("-D", spec)]))
        # Dropped on arrival (raw PREROUTING of the receiver), which catches both packets
        # for the receiver itself and packets it forwards, with a single rule.
        spec = ["-t", "raw", "PREROUTING", "-i", d.link.interface(d.receiver)]
        if dscp is not None:
            spec += ["-m", "dscp", "--dscp", str(dscp)]
        spec += ["-m", "statistic", "--mode", "random", "--probability", f"{rate:.6f}"]
        spec += ["-m", "comment", "--comment", RULE_TAG + fault.id, "-j", "DROP"]
        lab.run(lab.exec_argv(d.receiver, ["ip6tables", "-w", *_table_and_chain("-A", spec)]))
        fault.undo.append(lab.exec_argv(d.receiver, ["ip6tables", "-w", *_table_and_chain("-D", spec)]))
    fault.params.update(link=dirs[0].link.name, rate=rate, senders=[d.sender for d in dirs], slice=slice_name)
    what = f"{rate:.0%} loss" + (f" of slice {slice_name}" if slice_name else "")
    fault.summary = f"{what} on {_arrows(dirs)}"


def down(lab: Lab, fault: Fault, target: str) -> None:
    """A link ("a-b") or a site goes down; routing reconverges around it (see Lab.converge)."""
    topology = lab.topology
    if "-" in target:
        link = _link(topology, target)
        fault.params.update(link=link.name)
        fault.summary = f"link {link.name} down"
    else:
        try:
            site = topology.site(target)
        except TopologyError as exc:
            raise FaultError(str(exc)) from None
        fault.params.update(site=site.name)
        fault.summary = f"site {site.name} down (all its links)"


def congest(
    lab: Lab,
    fault: Fault,
    link: str,
    rate_mbit: float,
    queue_ms: float,
    load_factor: float,
    from_site: str | None,
    slice_name: str | None,
) -> None:
    topology = lab.topology
    dirs = directions(topology, link, from_site)
    found = dirs[0].link
    _check(
        0 < rate_mbit < found.bandwidth_mbit, f"congest rate must be below the link's {found.bandwidth_mbit:g} Mbit/s"
    )
    _check(0 < queue_ms <= 5000, f"queue must be in (0, 5000] ms, got {queue_ms}")
    _check(load_factor > 1, f"load factor must exceed 1 to fill the queue, got {load_factor}")
    dscp = _slice_dscp(topology, slice_name) or 0
    fault.params.update(
        link=found.name,
        rate_mbit=rate_mbit,
        queue_ms=queue_ms,
        load_factor=load_factor,
        senders=[d.sender for d in dirs],
        slice=slice_name or topology.default_slice.name,
    )
    fault.summary = (
        f"{_arrows(dirs)} cut to {rate_mbit:g} Mbit/s with a {queue_ms:g} ms queue,"
        f" loaded at {load_factor:g}x by iperf3 ({fault.params['slice']})"
    )
    # The queues first, then the load that fills them (Lab.start_load), so that the
    # load never runs at the full line rate.
    fault.params["load"] = {
        "port": PORT_BASE + int(fault.id.rsplit("-", 1)[1]),
        "tos": dscp << 2,
        "bitrate": f"{int(rate_mbit * load_factor * 1000)}K",
        "bidir": from_site is None,
        "client": dirs[0].sender,
        "server": dirs[0].receiver,
    }


def slice_starve(lab: Lab, fault: Fault, link: str, slice_name: str, rate_kbit: int, from_site: str | None) -> None:
    topology = lab.topology
    _slice_dscp(topology, slice_name)
    _check(1 <= rate_kbit <= 1000, f"starved rate must be 1..1000 kbit/s, got {rate_kbit}")
    dirs = directions(topology, link, from_site)
    fault.params.update(link=dirs[0].link.name, slice=slice_name, rate_kbit=rate_kbit, senders=[d.sender for d in dirs])
    fault.summary = f"slice {slice_name} cut to {rate_kbit} kbit/s on {_arrows(dirs)}, other slices unchanged"


def reroute(lab: Lab, fault: Fault, state: LabState, source: str, destination: str, via: str | None) -> None:
    topology = lab.topology
    for site in (source, destination) + ((via,) if via else ()):
        try:
            topology.site(site)
        except TopologyError as exc:
            raise FaultError(str(exc)) from None
    _check(source != destination, "reroute needs two different sites")
    dl, ds = down_links(state), down_sites(state)
    current = lab.path(source, destination)
    hops = routing.alternate_path(topology, source, destination, via, dl, ds)
    if hops is None or hops == current:
        how = f" through {via}" if via else ""
        raise FaultError(
            f"no alternate path from {source} to {destination}{how} (current path {'>'.join(current or ())})"
        )
    number = int(fault.id.rsplit("-", 1)[1])
    table, pref = str(TABLE_BASE + number), str(TABLE_BASE + number)
    for path in (hops, tuple(reversed(hops))):
        src, dst = path[0], path[-1]
        dst_prefixes = (topology.loopback(dst) + "/128", topology.host_prefix(dst))
        src_prefixes = (topology.loopback(src) + "/128", topology.host_prefix(src))
        for here, nxt in zip(path, path[1:]):
            batch = []
            for prefix in dst_prefixes:
                r = routing.next_hop_route(topology, here, prefix, nxt)
                batch.append(f"route add {prefix} via {r.next_hop} dev {r.interface} src {r.source} table {table}")
            # At the source, match what the site itself sends (its source address is not
            # chosen yet when the rule is looked up); further along, match by source prefix.
            selectors = [["iif", "lo"]] if here == src else [["from", p] for p in src_prefixes]
            for selector in selectors:
                for prefix in dst_prefixes:
                    rule = [*selector, "to", prefix, "lookup", table, "pref", pref]
                    batch.append(" ".join(["rule", "add", *rule]))
                    fault.undo.append(["ip", "-6", "-n", lab.namespace(here), "rule", "del", *rule])
            lab.run(["ip", "-6", "-n", lab.namespace(here), "-batch", "-"], stdin="\n".join(batch) + "\n")
            flush = ["ip", "-6", "-n", lab.namespace(here), "route", "flush", "table", table]
            if flush not in fault.undo:
                fault.undo.append(flush)
    fault.params.update(source=source, destination=destination, via=via, path=list(hops), previous=list(current or ()))
    fault.summary = f"{source}<->{destination} moved from {'>'.join(current or ())} to {'>'.join(hops)}"


def delay(lab: Lab, fault: Fault, link: str, delay_ms: float, from_site: str | None, slice_name: str | None) -> None:
    _check(0 < delay_ms <= 2000, f"delay must be in (0, 2000] ms, got {delay_ms}")
    topology = lab.topology
    dscp = _slice_dscp(topology, slice_name)
    dirs = directions(topology, link, from_site)
    queue = QUEUE_BASE + int(fault.id.rsplit("-", 1)[1])
    for d in dirs:
        # Held at the sender's egress (mangle/POSTROUTING: after routing, before the slice
        # queues), as netem would: the receiver's kernel timestamps then include the delay.
        # Held at the receiver's ingress instead, packets for the receiver itself would keep
        # the arrival timestamp taken before the hold, and SO_TIMESTAMP users (ping, STAMP)
        # would not see the delay. Cost: a TCP sender on the sending site itself is held
        # back by TCP small queues (see lab/README.md).
        lab.start_delay_line(fault, d.sender, queue, delay_ms)
        spec = ["-t", "mangle", "POSTROUTING", "-o", d.link.interface(d.sender)]
        if dscp is not None:
            spec += ["-m", "dscp", "--dscp", str(dscp)]
        spec += ["-m", "comment", "--comment", RULE_TAG + fault.id]
        # --queue-bypass: should the forwarder die, packets pass rather than vanish.
        spec += ["-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass"]
        lab.run(lab.exec_argv(d.sender, ["ip6tables", "-w", *_table_and_chain("-A", spec)]))
        fault.undo.append(lab.exec_argv(d.sender, ["ip6tables", "-w", *_table_and_chain("-D", spec)]))
    fault.params.update(link=dirs[0].link.name, delay_ms=delay_ms, senders=[d.sender for d in dirs], slice=slice_name)
    what = f"+{delay_ms:g} ms" + (f" for slice {slice_name}" if slice_name else "")
    fault.summary = f"{what} on {_arrows(dirs)}"


SIGNALS = {"TERM": signal.SIGTERM, "KILL": signal.SIGKILL, "STOP": signal.SIGSTOP, "INT": signal.SIGINT}


def kill(lab: Lab, fault: Fault, site: str, match: str, signame: str, restart: bool) -> None:
    topology = lab.topology
    try:
        topology.site(site)
    except TopologyError as exc:
        raise FaultError(str(exc)) from None
    _check(signame in SIGNALS, f"signal must be one of {', '.join(SIGNALS)}, got {signame!r}")
    victims = lab.processes_matching(site, match)
    _check(bool(victims), f"no process in site {site} has {match!r} in its command line")
    fault.params.update(
        site=site,
        match=match,
        signal=signame,
        restart=restart and signame != "STOP",
        killed=[{"pid": pid, "argv": argv, "cwd": cwd} for pid, argv, cwd in victims],
    )
    action = "stopped (SIGSTOP)" if signame == "STOP" else f"killed (SIG{signame})"
    fault.summary = f"{len(victims)} process(es) matching {match!r} on {site} {action}"


# The root-cause hint kind (docs/architecture.md, RootCauseHint) that each fault should produce:
# the ground truth the analyzer's tests compare against.
HINT_KINDS = {
    "loss": "link-loss",
    "congest": "congestion",
    "slice-starve": "slice-isolation",
    "reroute": "path-change",
    "delay": "latency-shift",
    "kill": "reflector-down",
}


def hint_kind(fault: Fault) -> str:
    if fault.kind == "down":
        return "node-down" if "site" in fault.params else "link-down"
    return HINT_KINDS[fault.kind]


def targets(fault: Fault) -> list[str]:
    """What the fault hit, as root-cause suspects are named: links "a-b" and site names."""
    if "link" in fault.params:
        return [fault.params["link"]]
    if fault.kind == "reroute":
        return [fault.params["source"], fault.params["destination"]]
    return [fault.params["site"]]


def _arrows(dirs: tuple[Direction, ...]) -> str:
    if len(dirs) == 2:
        return f"{dirs[0].link.name} (both directions)"
    d = dirs[0]
    return f"{d.link.name} ({d.sender}->{d.receiver})"
