"""The lab's fault kinds, one after another, each with the parts of the network it touches:
after its heal, no root-cause hint may name any of them for long."""

from __future__ import annotations

import random
from dataclasses import dataclass

from lab import routing
from lab.lab import LabError

KINDS = ("loss", "down", "congest", "slice-starve", "reroute", "delay", "kill")
SLICES = ("video", "egov", "data", "best-effort")


@dataclass(frozen=True, slots=True)
class Made:
    kind: str
    fault_id: str
    summary: str
    touched: frozenset[str]  # suspects a hint about this fault names


def _link_parts(lab, name: str) -> set[str]:
    link = lab.link(name)
    return {f"{link.a}>{link.b}", f"{link.b}>{link.a}", link.a, link.b, name}


def _route_parts(route) -> set[str]:
    if not route:
        return set()
    pairs = list(zip(route, route[1:]))
    return set(route) | {f"{a}>{b}" for a, b in pairs} | {f"{b}>{a}" for a, b in pairs}


def crossed_links(lab, sites) -> list[str]:
    routes = [lab.path(s, d) for s in sites for d in sites if s != d]
    return sorted({lab.topology.link_between(a, b).name for r in routes if r for a, b in zip(r, r[1:])})


def make(kind: str, lab, sites, rng: random.Random) -> Made:
    links = crossed_links(lab, sites)
    if kind == "loss":
        link = rng.choice(links)
        fault_id, touched = lab.fault_loss(link, 0.10), _link_parts(lab, link)
    elif kind == "down":
        # A link whose loss cuts a site off (else the lab reroutes at once: the reroute case).
        cutting = [
            name
            for name in links
            if any(routing.path(lab.topology, s, "core", frozenset({name})) is None for s in sites if s != "core")
        ]
        link = rng.choice(cutting or links)
        touched = _link_parts(lab, link)
        for site in sites:
            if site != "core" and routing.path(lab.topology, site, "core", frozenset({link})) is None:
                touched |= {site, f"host:{site}", f"service:{site}"}
        fault_id = lab.fault_down(link)
    elif kind == "congest":
        link = rng.choice(links)
        fault_id, touched = lab.fault_congest(link), _link_parts(lab, link)
    elif kind == "slice-starve":
        link = rng.choice(links)
        fault_id, touched = lab.fault_slice_starve(link, rng.choice(SLICES)), _link_parts(lab, link)
    elif kind == "reroute":
        pairs = [(s, d) for s in sites for d in sites if s < d]
        rng.shuffle(pairs)
        for source, destination in pairs:
            before = lab.path(source, destination)
            try:
                fault_id = lab.fault_reroute(source, destination)
            except LabError:  # no alternate route between these two
                continue
            touched = _route_parts(before) | _route_parts(lab.path(source, destination))
            break
        else:
            raise LabError("no pair of sites has an alternate route")
    elif kind == "delay":
        link = rng.choice(links)
        fault_id, touched = lab.fault_delay(link, 20), _link_parts(lab, link)
    elif kind == "kill":
        # A hung reflector (SIGSTOP; healing resumes it): agents and analyzer restarts are
        # the soak's own, by SIGTERM and SIGKILL.
        site = rng.choice(list(sites))
        fault_id, touched = lab.fault_kill(site, "xnetmon reflect", signal="STOP"), {f"service:{site}"}
    else:
        raise ValueError(f"unknown fault kind {kind!r} (kinds: {', '.join(KINDS)})")
    return Made(kind, fault_id, lab.state().fault(fault_id).summary, frozenset(touched))
