"""python -m bench.healthy_starts: false alarms of the all-in-one on a healthy lab, with and
without a CPU hog beside it.

Each start brings up the all-in-one deployment (`xnetmon.allinone.lab_deployment`: reflectors
and agents on the `small` lab's sites, the analyzer with the lab policies and root-cause
inference) on a lab with no fault, and polls its API (`/slices`, `/hints`) every `--poll`
seconds for `--seconds`. Starts alternate between a quiet machine and one where
`stress-ng --cpu N` (N = the machine's cores) runs beside the deployment, so both
conditions meet the same drift of the machine.

Counted per start, after the start (a healthy lab should show none of them):
- `bad`: polls at which a slice read anything but `no-data` or `ok` (`at-risk`, `breached`);
- `dropped`: polls at which a slice read `no-data` after it had read `ok` (a stall turning
  slices no-data);
- `hints`: distinct root-cause hints (kind and suspects) shown at any poll;
- `unanswered`: polls the API did not answer within 10 s (counted, not fatal: a loaded machine).
Also the time from the start until every slice read `ok` (median per condition, and its
ratio hog/quiet), and inference's worst time per interval.

Needs root (network namespaces). The lab is brought up once and torn down at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from bench._common import environment, median, ratio, table, unwind_on_termination, write_result

OK_STATUSES = {"no-data", "ok"}


@dataclass
class StartResult:
    condition: str  # "quiet" | "hog"
    polls: int = 0
    bad: int = 0
    dropped: int = 0
    unanswered: int = 0  # polls the API did not answer within 10 s
    hints: list[str] = field(default_factory=list)
    hint_evidence: dict[str, str] = field(default_factory=dict)  # hint -> its first evidence line when first seen
    seen: dict[str, list[str]] = field(default_factory=dict)  # slice -> statuses in order, repeats folded
    all_ok_s: float | None = None
    worst_inference_ms: float = 0.0


def poll_start(url: str, seconds: float, poll_s: float, result: StartResult) -> None:
    started = time.monotonic()
    was_ok: set[str] = set()
    while time.monotonic() - started < seconds:
        try:
            slices = {s["name"]: s["status"] for s in httpx.get(f"{url}/slices", timeout=10).json()}
            for hint in httpx.get(f"{url}/hints", timeout=10).json():
                # which rule fired, not only that one did: the first evidence line says it
                evidence = hint["evidence"][0] if hint["evidence"] else ""
                result.hint_evidence.setdefault(f"{hint['kind']} {','.join(hint['suspects'])}", evidence)
        except httpx.TimeoutException:  # a machine so loaded the API did not answer in 10 s
            result.unanswered += 1
            continue
        result.polls += 1
        for name, status in slices.items():
            statuses = result.seen.setdefault(name, [])
            if not statuses or statuses[-1] != status:
                statuses.append(status)
            if status not in OK_STATUSES:
                result.bad += 1
            if status == "ok":
                was_ok.add(name)
            elif status == "no-data" and name in was_ok:
                result.dropped += 1
        if result.all_ok_s is None and slices and set(slices.values()) == {"ok"}:
            result.all_ok_s = time.monotonic() - started
        time.sleep(poll_s)
    result.hints = sorted(result.hint_evidence)


def one_start(lab, condition: str, seconds: float, poll_s: float) -> StartResult:
    from xnetmon.allinone import lab_deployment

    result = StartResult(condition)
    hog = None
    if condition == "hog":
        hog = subprocess.Popen(
            ["stress-ng", "--cpu", str(os.cpu_count() or 1), "--timeout", f"{int(seconds) + 60}s"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    workdir = Path(tempfile.mkdtemp(prefix="xnet-healthy-"))
    try:
        with lab_deployment(lab, workdir, api_port=0) as deployment:
            poll_start(deployment.api_url, seconds, poll_s, result)
            if deployment.inference is not None:
                result.worst_inference_ms = deployment.inference.worst_seconds * 1000
    finally:
        if hog is not None:
            hog.terminate()
            hog.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def summary_rows(results: list[StartResult]) -> list[list[object]]:
    rows = []
    for condition in ("quiet", "hog"):
        mine = [r for r in results if r.condition == condition]
        if not mine:
            continue
        to_ok = [r.all_ok_s for r in mine if r.all_ok_s is not None]
        rows.append(
            [
                condition,
                len(mine),
                sum(r.bad > 0 for r in mine),
                sum(r.bad for r in mine),
                sum(r.dropped for r in mine),
                sum(len(r.hints) for r in mine),
                f"{median(to_ok):.1f}" if to_ok else "-",
                f"{max(r.worst_inference_ms for r in mine):.0f}",
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.healthy_starts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=4, help="starts per condition (4)")
    parser.add_argument("--seconds", type=float, default=45.0, help="seconds watched per start (45)")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between polls (0.5)")
    parser.add_argument("--conditions", default="quiet,hog", help="quiet, hog or both (quiet,hog)")
    parser.add_argument("--output", help="result file (default bench/results/healthy_starts-TIME.json)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("python -m bench.healthy_starts needs root (network namespaces)", file=sys.stderr)
        return 2
    conditions = [c for c in args.conditions.split(",") if c]
    if not set(conditions) <= {"quiet", "hog"}:
        parser.error(f"--conditions takes quiet and hog, got {args.conditions!r}")
    if "hog" in conditions and shutil.which("stress-ng") is None:
        parser.error("the hog condition needs stress-ng on PATH")
    from lab.testing import running_lab

    unwind_on_termination()  # a stopped run removes its lab, deployment and hog as a finished one does
    results: list[StartResult] = []
    with running_lab("small") as lab:
        for index in range(args.starts):
            for condition in conditions if index % 2 == 0 else reversed(conditions):
                result = one_start(lab, condition, args.seconds, args.poll)
                results.append(result)
                print(
                    f"start {len(results)} ({condition}): {result.bad} bad polls, {result.dropped} dropped, "
                    f"{result.unanswered} unanswered, load {os.getloadavg()[0]:.1f}, "
                    f"hints {result.hints or '-'}, all ok after {result.all_ok_s}"
                    + "".join(f"\n  {hint}: {evidence}" for hint, evidence in sorted(result.hint_evidence.items())),
                    flush=True,
                )
    headers = ["condition", "starts", "starts with a bad status", "bad polls", "no-data after ok", "hints",
               "median s to all ok", "worst inference ms"]  # fmt: skip
    rows = summary_rows(results)
    print(table(headers, rows))
    to_ok = {c: [r.all_ok_s for r in results if r.condition == c and r.all_ok_s is not None] for c in conditions}
    hog_ratio = ratio(median(to_ok["hog"]), median(to_ok["quiet"])) if to_ok.get("hog") and to_ok.get("quiet") else None
    if hog_ratio is not None:
        print(f"time to all ok, hog / quiet: {hog_ratio:.2f}")
    path = write_result(
        "healthy_starts",
        {
            "environment": environment(),
            "parameters": vars(args),
            "summary": [dict(zip(headers, row)) for row in rows],
            "all_ok_ratio_hog_quiet": hog_ratio,
            "starts": [asdict(r) for r in results],
        },
        args.output,
    )
    print(f"result: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
