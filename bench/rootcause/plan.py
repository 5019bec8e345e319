"""The probe plan: who probes whom, in which slices, with which probe.

Every county probes both routers of its city and 2 counties under other cities; every city
router probes both routers of its province and 5 routers of other cities; every province
router probes the 4 cores and 10 routers of other provinces; the cores probe each other.
Each (source, target) pair is probed in all 4 slices, by STAMP to a stateful reflector (60%
of pairs: loss split into forward and reverse) or by ICMPv6 echo (40%), 100 probes per
path per epoch (10 s at 10/s). At scale 1 that is 16,700 pairs and 66,800 paths.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

from bench.rootcause.national_topology import NationalTopology

SLICES = ("video", "egov", "data", "best-effort")
PROBES_PER_EPOCH = 100
STAMP_SHARE = 0.6


@dataclass(frozen=True, slots=True)
class PlannedPath:
    source: str
    target: str
    slice: str
    stamp: bool

    @property
    def path_id(self) -> str:
        return f"{self.source}>{self.target}/{self.slice}/{'stamp' if self.stamp else 'echo'}"

    @property
    def flow(self) -> int:
        return zlib.crc32(self.path_id.encode())


def probe_plan(network: NationalTopology, seed: int, slices: tuple[str, ...] = SLICES) -> list[PlannedPath]:
    rng = random.Random(seed * 7919 + 1)
    by_level: dict[str, list[str]] = {}
    for name in network.nodes:
        by_level.setdefault(network.level[name], []).append(name)
    city_site = {r: network.parent_site[r] for r in by_level["city"]}
    province_of_city = {}
    for city in by_level["city"]:
        ups = sorted(n for n in network.adjacency[city] if network.level[n] == "province")
        province_of_city[city] = ups
    pairs: list[tuple[str, str]] = []
    for county in by_level["county"]:
        ups = sorted(n for n in network.adjacency[county] if network.level[n] == "city")
        city_pair = network.sites[city_site[ups[0]]]
        pairs += [(county, r) for r in city_pair]
        pairs += [
            (county, t)
            for t in _others(
                rng,
                by_level["county"],
                2,
                lambda t, city_pair=city_pair: (
                    t not in network.adjacency or set(network.adjacency[t]).isdisjoint(city_pair)
                ),
            )
        ]
    for city in by_level["city"]:
        pairs += [(city, p) for p in province_of_city[city]]
        pairs += [
            (city, t) for t in _others(rng, by_level["city"], 5, lambda t, city=city: city_site[t] != city_site[city])
        ]
    for province in by_level["province"]:
        pairs += [(province, c) for c in by_level["core"]]
        site = network.parent_site[province]
        pairs += [
            (province, t)
            for t in _others(rng, by_level["province"], 10, lambda t, site=site: network.parent_site[t] != site)
        ]
    for core in by_level["core"]:
        pairs += [(core, t) for t in by_level["core"] if t != core]
    plan = []
    for source, target in pairs:
        stamp = rng.random() < STAMP_SHARE
        plan += [PlannedPath(source, target, slice_, stamp) for slice_ in slices]
    return plan


def _others(rng: random.Random, pool: list[str], count: int, allowed) -> list[str]:
    chosen: list[str] = []
    for _ in range(50 * count):
        if len(chosen) == count:
            break
        candidate = rng.choice(pool)
        if candidate not in chosen and allowed(candidate):
            chosen.append(candidate)
    return chosen
