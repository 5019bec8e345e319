"""python -m bench.fault_times: how soon the all-in-one on the lab finds each kind of fault.

Brings up the `small` lab and the all-in-one deployment on it (`xnetmon.allinone.lab_deployment`:
1 s intervals, the lab policies, the root-cause runner), waits until every slice reads `ok`
and no hint is shown, then makes each lab fault in turn, exactly as the root-cause lab test
makes it (`tests/e2e/test_rootcause_lab.py`: `make_fault`, the same seeded choice of link or
site), and polls `/slices` and `/hints` every `--poll` seconds. Per fault:

- `hint s`: from making the fault until the right hint shows (the test's `is_right`: its kind,
  a suspect the fault touches, its slice scope);
- `hint intervals`: the hint's own `first_seen` after the end of the interval the fault was
  made in, in intervals (what the test bounds at 3, plus the intervals the machine kept the
  deployment from a CPU);
- `status s`: until the first slice reads neither `ok` nor `no-data` (at-risk or breached);
  `-` when no slice did within `--watch` seconds (a delay within every bound, a fault the
  probes route around).

Then heals it and waits for the hints to go quiet. `--rounds` repeats the kinds (a new seed
per round); medians per kind. The figures are wall-clock seconds on a shared machine: compare
runs made close together (before and after a change), not with a fixed bound.

Needs root (network namespaces).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from bench._common import environment, median, table, write_result

KINDS = ("loss", "delay", "congest", "slice-starve", "down", "reflector", "agent", "reroute")
QUIET_STATUSES = {"ok", "no-data"}


@dataclass
class FaultTime:
    kind: str
    round: int
    fault: str
    hint_s: float | None = None
    hint_intervals: float | None = None
    hint: str = ""
    status_s: float | None = None
    status: str = ""


def watch_fault(deployment, lab, kind: str, rng: random.Random, round_: int, watch_s: float, poll_s: float):
    from tests.e2e.test_rootcause_lab import make_fault
    from xnetmon.allinone import LAB_INTERVAL_S

    url = deployment.api_url
    interval_ns = int(LAB_INTERVAL_S * 1e9)
    made_ns = time.time_ns()
    started = time.monotonic()
    case = make_fault(kind, lab, rng)
    result = FaultTime(kind, round_, lab.state().fault(case.fault_id).summary)
    try:
        while time.monotonic() - started < watch_s and (result.hint_s is None or result.status_s is None):
            now = time.monotonic() - started
            try:
                poll_once(url, case, result, now, made_ns, interval_ns)
            except httpx.TimeoutException:
                pass  # the analyzer slow to answer on a loaded machine: the next poll sees it
            time.sleep(poll_s)
    finally:
        lab.heal(case.fault_id)
    return result


def poll_once(url: str, case, result: FaultTime, now: float, made_ns: int, interval_ns: int) -> None:
    """One look at /hints and /slices, noting the first right hint and the first slice at-risk or breached."""
    from tests.e2e.test_rootcause_lab import is_right

    if result.hint_s is None:
        right = next((h for h in httpx.get(f"{url}/hints", timeout=10).json() if is_right(case, h)), None)
        if right is not None:
            made_interval_end = (made_ns // interval_ns + 1) * interval_ns
            result.hint_s = round(now, 2)
            result.hint_intervals = round((right["first_seen_ns"] - made_interval_end) / interval_ns, 1)
            result.hint = f"{right['kind']} {','.join(right['suspects'])}"
    if result.status_s is None:
        statuses = {s["name"]: s["status"] for s in httpx.get(f"{url}/slices", timeout=10).json()}
        bad = sorted(f"{name} {status}" for name, status in statuses.items() if status not in QUIET_STATUSES)
        if bad:
            result.status_s, result.status = round(now, 2), ", ".join(bad)


def settle(deployment, wait_steady, attempts: int = 3) -> None:
    """The test's wait for a steady deployment (or for quiet after a heal), tried again when it
    runs out (a loaded machine starves the lab's agents and reflectors: real loss, or a lagging
    agent's probe-host hint, until it eases) or the analyzer is too slow to answer one of its
    polls; neither is a reason to give up the run."""
    for attempt in range(attempts):
        try:
            wait_steady(deployment)
            return
        except (httpx.TimeoutException, AssertionError) as error:
            if attempt == attempts - 1:
                raise
            print(f"not steady yet, waiting again: {str(error)[:200]}", file=sys.stderr, flush=True)


def summary_rows(results: list[FaultTime]) -> list[list[object]]:
    rows = []
    for kind in dict.fromkeys(r.kind for r in results):
        mine = [r for r in results if r.kind == kind]
        hinted = [r for r in mine if r.hint_s is not None]
        statused = [r for r in mine if r.status_s is not None]
        rows.append(
            [
                kind,
                len(mine),
                f"{median([r.hint_s for r in hinted]):.1f}" if hinted else "-",
                f"{median([r.hint_intervals for r in hinted]):.1f}" if hinted else "-",
                len(mine) - len(hinted),
                f"{median([r.status_s for r in statused]):.1f}" if statused else "-",
                len(statused),
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fault_times", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, from {','.join(KINDS)}")
    parser.add_argument("--rounds", type=int, default=3, help="times each kind is made (3)")
    parser.add_argument("--seed", type=int, default=20, help="seed of the choices of links and sites (20)")
    parser.add_argument("--watch", type=float, default=20.0, help="seconds a fault is watched at most (20)")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between polls (0.2)")
    parser.add_argument("--output", help="result file (default bench/results/fault_times-TIME.json)")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    if not set(kinds) <= set(KINDS):
        parser.error(f"unknown fault kind in {args.kinds!r} (kinds: {', '.join(KINDS)})")
    if os.geteuid() != 0:
        print("python -m bench.fault_times needs root (network namespaces)", file=sys.stderr)
        return 2
    from lab.testing import heal_everything, running_lab
    from tests.e2e.test_rootcause_lab import wait_quiet, wait_steady
    from xnetmon.allinone import lab_deployment

    results: list[FaultTime] = []
    workdir = Path(tempfile.mkdtemp(prefix="xnet-fault-times-"))
    load_before = os.getloadavg()
    try:
        with running_lab("small") as lab:
            heal_everything(lab)
            with lab_deployment(lab, workdir, api_port=0) as deployment:
                settle(deployment, wait_steady)
                for round_ in range(args.rounds):
                    for kind in kinds:
                        settle(deployment, wait_quiet)
                        rng = random.Random(f"{args.seed + round_}-{kind}")
                        result = watch_fault(deployment, lab, kind, rng, round_, args.watch, args.poll)
                        results.append(result)
                        print(
                            f"{kind} (round {round_ + 1}): {result.fault}: hint after {result.hint_s} s "
                            f"({result.hint_intervals} intervals) {result.hint or '-'}; status after "
                            f"{result.status_s} s {result.status or '-'}",
                            flush=True,
                        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    headers = ["fault", "rounds", "hint s (median)", "hint intervals", "no hint", "status s (median)", "with status"]
    rows = summary_rows(results)
    print(table(headers, rows))
    print(f"load average at start {load_before[0]:.1f}, at end {os.getloadavg()[0]:.1f}")
    path = write_result(
        "fault_times",
        {
            "environment": environment(),
            "parameters": vars(args),
            "load_average": {"start": load_before[0], "end": os.getloadavg()[0]},
            "summary": [dict(zip(headers, row)) for row in rows],
            "faults": [asdict(r) for r in results],
        },
        args.output,
    )
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
