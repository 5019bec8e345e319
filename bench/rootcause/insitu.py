"""python -m bench.rootcause.insitu: root-cause F1 with and without in-situ evidence, over the
same simulated trials.

The world, faults and probe epochs are `python -m bench.rootcause`'s, trial for trial (same
seeds). Beside the probes, a share of the plan's paths (`--share`, drawn from the seed)
carries a marked business flow of the path's slice along its forward route, with a counting
point at every hop: where it leaves each router and where it arrives at the next. Each epoch
the flow sends `--packets` marked packets (one block); each directed link and router on the
way drops them binomially at its impairment's ratio of that slice (and every link at the
background 1e-4, as the probes see). The counts become the blocks agents would ship
(`MarkedBlock`), go through the analyzer's own `SegmentStore` and `segment_diagnoses`, and
are put before the engine's diagnoses as the analyzer does each epoch (`analyzer.service`).

Reported per class (gray loss; gray loss on a county link: the link's lower end is a
county router; healthy, for false alarms): the scores of `bench.rootcause.score` for the
engine alone ("probes") and with in-situ segments ("probes+insitu").
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import numpy as np

from analyzer.insitu.diagnosis import segment_diagnoses
from analyzer.insitu.segments import SegmentStore
from analyzer.rootcause.engine import diagnose
from analyzer.rootcause.model import Diagnosis, link_name
from bench._common import environment, table, write_result
from bench.rootcause.__main__ import COUNTY_GRAY, build_world, on_county_link
from bench.rootcause.faults import CLASSES, FaultDrawer
from bench.rootcause.score import Tally
from bench.rootcause.simulate import BACKGROUND_LOSS, Impairments, World
from collector.contract.marked_blocks import MarkedBlock

NOW_NS = 1_800_000_000 * 10**9  # the epoch's end on the analyzer's clock
BLOCK_NS = 10 * 10**9  # one block per epoch
HOP_NS = 1_000_000
RUNS = ("probes", "probes+insitu")
CLASSES_HERE = ("gray-loss", COUNTY_GRAY, "healthy")


def marked_paths(world: World, share: float, seed: int) -> list[int]:
    """The plan's paths that carry a marked flow, `share` of them, drawn from the seed."""
    count = round(share * len(world.plan))
    return sorted(random.Random(f"{seed}/insitu").sample(range(len(world.plan)), count))


def _kept(impairments: Impairments, component: str, slice_name: str) -> float:
    return (1.0 - impairments.loss.get((component, None), 0.0)) * (
        1.0 - impairments.loss.get((component, slice_name), 0.0)
    )


def flow_blocks(
    world: World, i: int, impairments: Impairments, rng: np.random.Generator, packets: int
) -> list[MarkedBlock]:
    """One block of path i's marked flow at each of its counting points."""
    nodes = world.forward_nodes[i]
    slice_name = world.plan[i].slice
    blocks = []
    alive = int(rng.binomial(packets, _kept(impairments, nodes[0], slice_name)))  # lost before any point
    for hop, (a, b) in enumerate(zip(nodes, nodes[1:])):
        link = "-".join(sorted((a, b)))  # one name at both ends
        start = NOW_NS - BLOCK_NS + 2 * hop * HOP_NS
        blocks.append(MarkedBlock(a, link, "out", slice_name, i, 0, 0, alive, start, start + BLOCK_NS // 2, ()))
        keep = _kept(impairments, link_name(a, b), slice_name) * (1.0 - BACKGROUND_LOSS)
        alive = int(rng.binomial(alive, keep))
        start += HOP_NS
        blocks.append(MarkedBlock(b, link, "in", slice_name, i, 0, 0, alive, start, start + BLOCK_NS // 2, ()))
        if hop < len(nodes) - 2:
            alive = int(rng.binomial(alive, _kept(impairments, b, slice_name)))
    return blocks


def insitu_diagnoses(
    world: World, marked: list[int], impairments: Impairments, rng: np.random.Generator, packets: int
) -> list[Diagnosis]:
    store = SegmentStore(max_recent=len(marked) * 64)
    store.add([b for i in marked for b in flow_blocks(world, i, impairments, rng, packets)], NOW_NS)
    return segment_diagnoses(store, NOW_NS, BLOCK_NS)


def run(trials: int, seed: int, scale: float, share: float, packets: int) -> dict:
    started = time.perf_counter()
    world = build_world(seed, scale)
    drawer = FaultDrawer(world)
    marked = marked_paths(world, share, seed)
    tallies = {c: {r: Tally() for r in RUNS} for c in CLASSES_HERE}
    for t in range(trials):
        for fault_class in ("gray-loss", "healthy"):
            impairments = Impairments()
            truths = drawer.draw(fault_class, random.Random(f"{seed}/{fault_class}/{t}"), impairments)
            epoch = world.epoch(impairments, np.random.default_rng((seed, CLASSES.index(fault_class), t)))
            clock = time.process_time()
            probes = diagnose(epoch)
            probes_s = time.process_time() - clock
            insitu_rng = np.random.default_rng((seed, CLASSES.index(fault_class), t, 1))
            clock = time.process_time()
            both = [*insitu_diagnoses(world, marked, impairments, insitu_rng, packets), *probes]
            both_s = probes_s + time.process_time() - clock
            classes = [fault_class] + ([COUNTY_GRAY] if truths and on_county_link(world, truths) else [])
            for name in classes:
                tallies[name]["probes"].add(truths, probes, probes_s)
                tallies[name]["probes+insitu"].add(truths, both, both_s)
        print(f"  {t + 1}/{trials} trials", file=sys.stderr, flush=True)
    network = world.network
    return {
        "benchmark": "rootcause-insitu",
        "parameters": {"trials": trials, "seed": seed, "scale": scale, "share": share, "packets": packets},
        "network": {"nodes": len(network.nodes), "paths": len(world.plan), "marked_paths": len(marked)},
        "per_class": {c: {r: tally.summary() for r, tally in runs.items()} for c, runs in tallies.items()},
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def render(result: dict) -> str:
    headers = ["class", "evidence", "trials", "F1 strict", "F1 lenient", "P lenient", "R lenient", "top-1", "FA/1000"]
    rows = []
    for fault_class, runs in result["per_class"].items():
        for run_name, s in runs.items():
            rows.append(
                [
                    fault_class,
                    run_name,
                    s["trials"],
                    s["strict"]["f1"],
                    s["lenient"]["f1"],
                    s["lenient"]["precision"],
                    s["lenient"]["recall"],
                    s["top1"],
                    s["false_alarms_per_1000_healthy"],
                ]
            )
    return table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rootcause.insitu", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200, help="trials of gray loss and of healthy (200)")
    parser.add_argument("--seed", type=int, default=1001, help="test seeds start at 1001, as bench.rootcause")
    parser.add_argument("--scale", type=float, default=1.0, help="network size (1.0: the national extranet)")
    parser.add_argument("--share", type=float, default=0.2, help="share of the plan's paths with a marked flow")
    parser.add_argument("--packets", type=int, default=10_000, help="marked packets per flow and epoch")
    parser.add_argument("--json", help="result file (default bench/results/rootcause-insitu-TIMESTAMP.json)")
    args = parser.parse_args(argv)
    if not 0 < args.share <= 1 or args.packets < 1 or args.trials < 1:
        parser.error("--share must be in (0, 1], --packets and --trials at least 1")
    result = run(args.trials, args.seed, args.scale, args.share, args.packets)
    result["environment"] = environment()
    path = write_result("rootcause-insitu", result, args.json)
    net = result["network"]
    print(f"network: {net['nodes']} nodes, {net['paths']} paths, {net['marked_paths']} with a marked flow")
    print(render(result))
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
