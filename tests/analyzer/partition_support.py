"""Sites, windows and the way they split over partitions, for the tests of partitioned analysis:
the same windows go to one analyzer and to the partitions, and the slice verdicts must agree."""

from __future__ import annotations

from dataclasses import replace

from collector.contract.records import RTT_BUCKETS_NS
from collector.contract.shipment import ShipmentBatch
from lab.routing import shortest_paths
from lab.topology import load
from tests.analyzer_support import T0, W, observation, window
from xnetmon.lab_sites import sites_by_address

SITES = tuple(f"cnty{i}" for i in range(6))
TARGETS = ("core", "prov1")
SLICES = ("video", "egov")
INTERVALS = 14
NOW_NS = (T0 + INTERVALS + 5) * 10_000_000_000  # after every window; the stores never close by time


def lost_in(site: str, slice_: str, seq: int) -> int:
    """A story the verdicts must follow: egov loses heavily on two sites for a while, video a
    little on one site later on."""
    step = seq - T0
    if slice_ == "egov" and site in ("cnty1", "cnty2") and 3 <= step <= 8:
        return 40
    if slice_ == "video" and site == "cnty3" and step >= 6:
        return 3
    return 0


def site_batch(site: str, seq: int) -> ShipmentBatch:
    windows = []
    for slice_ in SLICES:
        for target in TARGETS:
            lost = lost_in(site, slice_, seq)
            w = window(seq, source=site, target=target, slice_=slice_, sent=200, lost=lost, rtt_bucket=3 + lost % 3)
            windows.append(replace(w, clock_error_ns=10_000 * (1 + SITES.index(site))))
    return ShipmentBatch(site, tuple(windows), created_ns=windows[-1].end_ns)


# Root-cause inference over partitions: three agents of the small lab that the bus puts in two
# partitions (core in 0; prov1 and cnty1a in 1), probing each other with STAMP in two slices,
# and loss on the link prov1>core from interval FAULT_FROM on. Only the union localises it:
# core's paths lose their replies on prov1>core, a reverse route only partition 1's traces
# know; partition 1's paths alone cannot tell prov1>core from core and its reflector.
LAB = load("small")
LAB_NAMES = sites_by_address(LAB)
AGENTS = ("core", "prov1", "cnty1a")
AGENT_PARTITIONS = ({"core"}, {"prov1", "cnty1a"})
FAULTY_LINK = ("prov1", "core")
FAULT_FROM = 4
RC_INTERVALS = 8
RC_LOST = 30


def crosses(route: tuple[str, ...], link: tuple[str, str]) -> bool:
    return link in zip(route, route[1:])


def traced_batch(site: str, seq: int, faulty: bool) -> ShipmentBatch:
    """`site`'s windows towards every other agent in each slice, with the traces of their
    routes; `faulty`: the probes crossing FAULTY_LINK lose RC_LOST of 200, on the way out or
    on the way back."""
    forward_routes = shortest_paths(LAB, site)
    windows, traces = [], []
    for target in AGENTS:
        if target == site:
            continue
        forward, back = forward_routes[target], shortest_paths(LAB, target)[site]
        lost_forward = RC_LOST if faulty and crosses(forward, FAULTY_LINK) else 0
        lost_reverse = RC_LOST if faulty and crosses(back, FAULTY_LINK) else 0
        received = 200 - lost_forward - lost_reverse
        buckets = [0] * (len(RTT_BUCKETS_NS) + 1)
        buckets[3] = received
        for slice_ in SLICES:
            w = window(seq, source=site, target=target, slice_=slice_, sent=200)
            windows.append(
                replace(
                    w,
                    target_address=LAB.loopback(target),
                    received=received,
                    lost_forward=lost_forward,
                    lost_reverse=lost_reverse,
                    rtt_buckets=tuple(buckets),
                    rtt_sum_ns=4_000_000 * received,
                )
            )
            hops = tuple(LAB.loopback(node) for node in forward[1:])
            trace = observation(source=site, target=target, slice_=slice_, hops=hops, observed_ns=seq * W)
            traces.append(replace(trace, source=LAB.loopback(site)))
    return ShipmentBatch(site, tuple(windows), created_ns=windows[-1].end_ns, observations=tuple(traces))
