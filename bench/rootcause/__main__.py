"""python -m bench.rootcause: our engine and the baselines over the same simulated trials.

Seeds: topology, plan and trials all derive from `--seed`. Seeds 1-99 are for tuning (the
thresholds of the engine and the baselines were set on seed 1); the reported figures use
test seeds from 1001 up (default 1001), which nothing was tuned on. Trial t of class c
draws its fault from random.Random(f"{seed}/{c}/{t}") and its probe losses from
numpy's default_rng((seed, class index, t)), so every method sees the same epochs and a
run is reproducible.

Epochs per trial (`--epochs`, 1): a trial's fault lasts that many epochs in a row, each drawn
afresh from the trial's generator. Methods that keep state between epochs (ours: the pooled
gray-loss test, analyzer.rootcause.pooling) are fed every epoch of the trial in order, a fresh
instance per trial; the stateless ones only the last; every method is scored on the last epoch.

Times are CPU seconds of one call per epoch (the last) in one process, BLAS limited to one thread.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # one core per method, as the target says

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from analyzer.rootcause.engine import diagnose  # noqa: E402
from analyzer.rootcause.pooling import PooledDiagnoser  # noqa: E402
from bench._common import environment, table, write_result  # noqa: E402
from bench.rootcause.baselines import BASELINES  # noqa: E402
from bench.rootcause.faults import CLASSES, SINGLE_CLASSES, FaultDrawer, Truth  # noqa: E402
from bench.rootcause.national_topology import generate  # noqa: E402
from bench.rootcause.plan import probe_plan  # noqa: E402
from bench.rootcause.score import Tally  # noqa: E402
from bench.rootcause.simulate import Impairments, World  # noqa: E402

# name -> a factory of the method for one trial (a fresh instance: stateful methods keep nothing across trials)
METHODS = {
    "ours": PooledDiagnoser,
    "ours-unpooled": lambda: diagnose,
    **{name: (lambda method=method: method) for name, method in BASELINES.items()},
}
STATEFUL = {"ours"}  # fed every epoch of a trial; the others only the last
COUNTY_GRAY = "gray-loss county"  # the gray-loss trials again, those whose link has a county end
DEFAULT_METHODS = ("ours", *BASELINES)
TARGETS = {
    "f1_single": 0.95,
    "f1_multi": 0.90,
    "kind_accuracy": 0.9,
    "false_alarms_per_1000": 1.0,
    "seconds_per_epoch": 1.0,
}

_WORLD: World | None = None
_DRAWER: FaultDrawer | None = None


def build_world(seed: int, scale: float) -> World:
    network = generate(seed, scale)
    return World(network, probe_plan(network, seed), seed)


def on_county_link(world: World, truths: list[Truth]) -> bool:
    level = world.network.level
    return any(level[n] == "county" for t in truths for c in t.components for n in c.split(">"))


def run_trial(job: tuple[int, str, int, tuple[str, ...], int]) -> tuple[list[str], dict[str, Tally]]:
    seed, fault_class, trial, methods, epochs = job
    assert _WORLD is not None and _DRAWER is not None
    impairments = Impairments()
    truths = _DRAWER.draw(fault_class, random.Random(f"{seed}/{fault_class}/{trial}"), impairments)
    rng = np.random.default_rng((seed, CLASSES.index(fault_class), trial))
    instances = {name: METHODS[name]() for name in methods}
    for _ in range(epochs - 1):
        earlier = _WORLD.epoch(impairments, rng)
        for name in STATEFUL.intersection(methods):
            instances[name](earlier)
    epoch = _WORLD.epoch(impairments, rng)
    tallies = {}
    for name in methods:
        started = time.process_time()
        diagnoses = instances[name](epoch)
        seconds = time.process_time() - started
        tally = Tally()
        tally.add(truths, diagnoses, seconds)
        tallies[name] = tally
    county = fault_class == "gray-loss" and on_county_link(_WORLD, truths)
    return [fault_class] + ([COUNTY_GRAY] if county else []), tallies


def run(
    trials: int,
    seed: int,
    classes: list[str],
    methods: list[str],
    scale: float,
    workers: int,
    progress=None,
    budget_s: float | None = None,
    first_trial: int = 0,
    epochs: int = 1,
) -> dict:
    global _WORLD, _DRAWER
    started = time.perf_counter()
    _WORLD = build_world(seed, scale)
    _DRAWER = FaultDrawer(_WORLD)
    build_seconds = time.perf_counter() - started
    diagnose(_WORLD.epoch(Impairments(), np.random.default_rng(0)))  # warm the route cache, untimed
    # trial-major order: a run stopped by its time budget has (nearly) as many trials of every class
    jobs = [(seed, c, t, tuple(methods), epochs) for t in range(first_trial, first_trial + trials) for c in classes]
    reported = [name for c in classes for name in ([c, COUNTY_GRAY] if c == "gray-loss" else [c])]
    per_class = {c: {m: Tally() for m in methods} for c in reported}
    deadline = None if budget_s is None else time.monotonic() + budget_s
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            outcomes = pool.imap_unordered(run_trial, jobs, chunksize=1)  # a slow trial holds up nothing
            _collect(outcomes, per_class, len(jobs), progress, deadline)
            pool.terminate()
    else:
        _collect(map(run_trial, jobs), per_class, len(jobs), progress, deadline)
    network = _WORLD.network
    summary = {c: {m: t.summary() for m, t in per_method.items()} for c, per_method in per_class.items()}
    pooled = {}
    for label, members in (("single faults", [c for c in classes if c in SINGLE_CLASSES]), ("all classes", classes)):
        if members:
            pooled[label] = {}
            for m in methods:
                total = Tally()
                for c in members:
                    total.merge(per_class[c][m])
                pooled[label][m] = total.summary()
    return {
        "benchmark": "rootcause",
        "parameters": {
            "trials_per_class": trials,
            "first_trial": first_trial,
            "epochs_per_trial": epochs,
            "seed": seed,
            "scale": scale,
            "classes": classes,
            "methods": methods,
            "workers": workers,
            "budget_s": budget_s,
        },
        "network": {
            "nodes": len(network.nodes),
            "physical_links": len(network.physical_links()),
            "directed_links": 2 * len(network.physical_links()),
            "paths": len(_WORLD.plan),
            "build_seconds": round(build_seconds, 1),
        },
        "per_class": summary,
        "pooled": pooled,
        "targets": _targets(summary, pooled),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def _collect(outcomes, per_class, total, progress, deadline) -> None:
    for done, (fault_classes, tallies) in enumerate(outcomes, 1):
        for fault_class in fault_classes:
            for name, tally in tallies.items():
                per_class[fault_class][name].merge(tally)
        if progress and (done % 50 == 0 or done == total):
            progress(done, total)
        if deadline is not None and time.monotonic() > deadline:
            if progress:
                progress(done, total)
            return


def _targets(summary: dict, pooled: dict) -> dict:
    ours_single = pooled.get("single faults", {}).get("ours")
    ours_multi = summary.get("multi", {}).get("ours")
    ours_healthy = summary.get("healthy", {}).get("ours")
    all_ours = pooled.get("all classes", {}).get("ours")
    out = {}
    if ours_single:
        out["f1_single_lenient"] = _target(ours_single["lenient"]["f1"], TARGETS["f1_single"], above=True)
        out["kind_accuracy"] = _target(ours_single["kind_accuracy"], TARGETS["kind_accuracy"], above=True)
    if ours_multi:
        out["f1_multi_lenient"] = _target(ours_multi["lenient"]["f1"], TARGETS["f1_multi"], above=True)
    if ours_healthy:
        out["false_alarms_per_1000"] = _target(
            ours_healthy["false_alarms_per_1000_healthy"], TARGETS["false_alarms_per_1000"], above=False
        )
    if all_ours:
        out["seconds_per_epoch_p95"] = _target(all_ours["seconds_p95"], TARGETS["seconds_per_epoch"], above=False)
        beaten = {}
        for name, figures in pooled["all classes"].items():
            if name in BASELINES:
                beaten[name] = (all_ours["lenient"]["f1"] or 0) > (figures["lenient"]["f1"] or 0)
        out["beats_every_baseline_lenient_f1"] = {"met": all(beaten.values()), "per_baseline": beaten}
    return out


def _target(value, bound, above: bool) -> dict:
    met = None if value is None else (value >= bound if above else value < bound)
    return {"value": value, "bound": bound, "met": met}


def render(result: dict) -> str:
    headers = [
        "class",
        "method",
        "F1 strict",
        "F1 lenient",
        "P lenient",
        "R lenient",
        "top-1",
        "top-3",
        "kind",
        "slices",
        "FA/1000",
        "ms p50",
        "ms p95",
    ]
    rows = []
    sections = list(result["per_class"].items())
    sections += [(label, figures) for label, figures in result["pooled"].items()]
    for label, per_method in sections:
        for method, s in per_method.items():
            rows.append(
                [
                    label,
                    method,
                    s["strict"]["f1"],
                    s["lenient"]["f1"],
                    s["lenient"]["precision"],
                    s["lenient"]["recall"],
                    s["top1"],
                    s["top3"],
                    s["kind_accuracy"] if method.startswith("ours") else None,
                    s["slice_accuracy"] if method.startswith("ours") else None,
                    s["false_alarms_per_1000_healthy"],
                    None if s["seconds_median"] is None else s["seconds_median"] * 1e3,
                    None if s["seconds_p95"] is None else s["seconds_p95"] * 1e3,
                ]
            )
    return table(headers, [[_cell(v) for v in row] for row in rows])


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if value >= 10 else f"{value:.3f}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rootcause", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="trials per fault class (1000)")
    parser.add_argument("--seed", type=int, default=1001, help="test seeds start at 1001; 1-99 are for tuning")
    parser.add_argument("--classes", default=",".join(CLASSES), help=f"comma-separated, from {','.join(CLASSES)}")
    parser.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated, from {','.join(METHODS)} ({','.join(DEFAULT_METHODS)})",
    )
    parser.add_argument(
        "--epochs", type=int, default=1, help="epochs per trial, the fault present in each; scored on the last (1)"
    )
    parser.add_argument("--scale", type=float, default=1.0, help="network size (1.0: the national extranet)")
    parser.add_argument(
        "--first-trial", type=int, default=0, help="index of the first trial: a run continues another's (0)"
    )
    parser.add_argument("--workers", type=int, default=1, help="processes (each runs whole trials, one core each)")
    parser.add_argument("--budget-minutes", type=float, help="stop after this long and report the trials done")
    parser.add_argument("--json", help="result file (default bench/results/rootcause-TIMESTAMP.json)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    classes = [c for c in args.classes.split(",") if c]
    methods = [m for m in args.methods.split(",") if m]
    unknown = [c for c in classes if c not in CLASSES] + [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown class or method: {', '.join(unknown)}")
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"  {done}/{total} trials", file=sys.stderr, flush=True)

    budget = None if args.budget_minutes is None else args.budget_minutes * 60.0
    result = run(
        args.trials,
        args.seed,
        classes,
        methods,
        args.scale,
        args.workers,
        progress,
        budget,
        args.first_trial,
        args.epochs,
    )
    result["environment"] = environment()
    path = write_result("rootcause", result, args.json)
    if not args.quiet:
        net = result["network"]
        done = {c: per_method[methods[0]]["trials"] for c, per_method in result["per_class"].items()}
        print(
            f"network: {net['nodes']} nodes, {net['physical_links']} links ({net['directed_links']} directed), "
            f"{net['paths']} paths; seed {args.seed}; {args.epochs} epochs per trial; trials per class: "
            + ", ".join(f"{c} {n}" for c, n in done.items())
        )
        print(render(result))
        print(
            "targets: "
            + "; ".join(f"{k}: {'met' if v.get('met') else 'NOT met'}" for k, v in result["targets"].items())
        )
        print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
