"""python -m bench.fuzz: a fuzzing campaign over every decoder of network and disk input.

Each target of tests/fuzz/targets.py runs under atheris for `--minutes`, coverage-guided,
from its committed corpus. A crash is kept (its input and traceback) and the target starts
again from the corpus it has grown, until its time is up, so one campaign finds more than
the first crash. Per target it reports executions, coverage (libFuzzer's `cov`: edges of
the instrumented code, `ft`: features, edges with hit counts), the corpus it grew, and the
crashes, grouped by where they were raised.

    PYTHONPATH=$PWD .venv/bin/python -m bench.fuzz --minutes 10                  # every target
    PYTHONPATH=$PWD .venv/bin/python -m bench.fuzz --minutes 2 --targets ipfix,pcap --jobs 2

The result goes to bench/results/fuzz-TIMESTAMP.json (`--output FILE` elsewhere), written
again as each target finishes (`"complete": false` until the last), so a campaign cut short
keeps what it did; crashing inputs to `--workdir` (default bench/results/fuzz-work/), to be
added to the target's corpus as `crash-<what>` with a regression test once fixed. An input
that runs longer than `--input-timeout` seconds (a hang: a decoder a hostile sender can stall)
is a crash too, its signature `Timeout at` where it was running.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench._common import PYTHON, REPO, RESULTS_DIR, environment, table, write_result
from tests.fuzz.targets import TARGETS

MAX_RESTARTS = 50  # a target that crashes this often in one campaign has one bug to fix first
INPUT_TIMEOUT_S = 25  # libFuzzer's own default, 1200 s, would outlast a target's whole run
_STATUS = re.compile(r"cov: (\d+) ft: (\d+) corp: (\d+)/")
_EXECUTED = re.compile(r"stat::number_of_executed_units: (\d+)")
_FRAME = re.compile(r'File "([^"]+)", line (\d+),? in (\S+)')  # a traceback's, or faulthandler's
_UNCAUGHT = "=== Uncaught Python exception: ==="
_TIMEOUT = "=== Timeout:"
_ARTIFACTS = ("crash-*", "timeout-*", "oom-*")


@dataclass
class Crash:
    signature: str  # the exception and the project frame that raised it
    input: str  # path of the crashing input
    count: int = 1


@dataclass
class TargetResult:
    target: str
    seconds: float = 0.0
    runs: int = 0  # fuzzer processes started (1 + restarts after crashes)
    executions: int = 0
    coverage: int = 0  # libFuzzer `cov`
    features: int = 0  # libFuzzer `ft`
    corpus: int = 0
    crashes: list[Crash] = field(default_factory=list)

    @property
    def crash_count(self) -> int:
        return sum(c.count for c in self.crashes)


def crash_signature(stderr: str) -> str:
    """`ExceptionType at module.py:line in function`: the deepest frame of the project (for
    a hang, `Timeout at` the frame it was running; for memory, `OutOfMemory`)."""
    if "libFuzzer: out-of-memory" in stderr:
        return "OutOfMemory"
    if "libFuzzer: timeout" in stderr:
        frames = _project_frames(stderr[stderr.rfind(_TIMEOUT) :])
        return _at("Timeout", frames[0] if frames else None)  # faulthandler lists the newest first
    tail = stderr[stderr.rfind(_UNCAUGHT) :]
    lines = [line for line in tail.splitlines() if line and not line.startswith((" ", "Traceback", "==="))]
    exception = lines[0].split(":")[0] if lines else "crash"
    frames = _project_frames(tail)
    return _at(exception, frames[-1] if frames else None)


def _project_frames(text: str) -> list[re.Match]:
    return [m for m in _FRAME.finditer(text) if str(REPO) in m.group(1) and "/tests/fuzz/" not in m.group(1)]


def _at(what: str, frame: re.Match | None) -> str:
    if frame is None:
        return what
    path, line, function = frame.groups()
    return f"{what} at {Path(path).relative_to(REPO)}:{line} in {function}"


def fuzz_target(name: str, seconds: float, workdir: Path, input_timeout_s: int = INPUT_TIMEOUT_S) -> TargetResult:
    result = TargetResult(name)
    target_dir = workdir / name
    target_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    while result.runs <= MAX_RESTARTS:
        left = seconds - (time.monotonic() - started)
        if left < 1:
            break
        command = [PYTHON, "-m", "tests.fuzz.run_target", name, str(target_dir)]
        flags = [f"-max_total_time={int(left)}", f"-timeout={input_timeout_s}", "-print_final_stats=1"]
        try:
            run = subprocess.run(
                command + flags, cwd=REPO, capture_output=True, text=True, timeout=left + 2 * input_timeout_s + 120
            )
        except subprocess.TimeoutExpired:  # past libFuzzer's own timeout: the target is done for this campaign
            result.runs += 1
            result.crashes.append(Crash("hung past its time, libFuzzer's timeout did not fire", ""))
            break
        result.runs += 1
        executed = _EXECUTED.findall(run.stderr)
        result.executions += int(executed[-1]) if executed else _last_execution_count(run.stderr)
        for cov, ft, corpus in _STATUS.findall(run.stderr):
            result.coverage = max(result.coverage, int(cov))
            result.features = max(result.features, int(ft))
            result.corpus = max(result.corpus, int(corpus))
        if run.returncode != 0:
            _note_crash(result, run.stderr, target_dir)
    result.seconds = round(time.monotonic() - started, 1)
    return result


def _last_execution_count(stderr: str) -> int:
    """Executions up to a crash (libFuzzer prints no final stats then): the last `#N` line."""
    counts = re.findall(r"^#(\d+)\s", stderr, re.MULTILINE)
    return int(counts[-1]) if counts else 0


def _note_crash(result: TargetResult, stderr: str, target_dir: Path) -> None:
    signature = crash_signature(stderr)
    inputs = sorted((p for pattern in _ARTIFACTS for p in target_dir.glob(pattern)), key=lambda p: p.stat().st_mtime)
    inputs = [p for p in inputs if p.suffix != ".txt"]
    kept = str(inputs[-1]) if inputs else ""
    if kept:
        start = max(stderr.rfind(_UNCAUGHT), stderr.rfind(_TIMEOUT), 0)
        Path(kept + ".txt").write_text(stderr[start:])
    for crash in result.crashes:
        if crash.signature == signature:
            crash.count += 1
            return
    result.crashes.append(Crash(signature, kept))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="per target (default 10)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated (default: every target)")
    parser.add_argument("--jobs", type=int, default=1, help="targets fuzzed at once (default 1: shared machines)")
    parser.add_argument("--workdir", type=Path, default=RESULTS_DIR / "fuzz-work")
    parser.add_argument("--fresh", action="store_true", help="forget what earlier campaigns grew in --workdir")
    parser.add_argument("--output")
    parser.add_argument(
        "--input-timeout",
        type=int,
        default=INPUT_TIMEOUT_S,
        help=f"seconds one input may take (default {INPUT_TIMEOUT_S})",
    )
    args = parser.parse_args(argv)
    names = [n for n in args.targets.split(",") if n]
    unknown = [n for n in names if n not in TARGETS]
    if unknown or not names or args.minutes <= 0 or args.jobs < 1 or args.input_timeout < 1:
        parser.error(
            f"unknown targets {unknown}" if unknown else "give targets, --minutes > 0, --jobs and --input-timeout >= 1"
        )
    if args.fresh:
        shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results: list[TargetResult] = []
    output = args.output
    with ThreadPoolExecutor(args.jobs) as pool:
        for result in pool.map(lambda n: fuzz_target(n, args.minutes * 60, args.workdir, args.input_timeout), names):
            results.append(result)
            payload = _payload(args, results, started, complete=len(results) == len(names))
            output = str(write_result("fuzz", payload, output))  # each target as it ends: a cut keeps them
    rows = [[r.target, r.seconds, r.executions, r.coverage, r.features, r.corpus, r.crash_count] for r in results]
    print(table(["target", "seconds", "executions", "cov", "ft", "corpus", "crashes"], rows))
    for r in results:
        for crash in r.crashes:
            print(f"{r.target}: {crash.count} x {crash.signature}  ({crash.input})")
    print(f"result: {output}")
    return 1 if payload["totals"]["crashes"] else 0


def _payload(args: argparse.Namespace, results: list[TargetResult], started: float, complete: bool) -> dict:
    return {
        "benchmark": "fuzz",
        "environment": environment(),
        "minutes_per_target": args.minutes,
        "input_timeout_s": args.input_timeout,
        "jobs": args.jobs,
        "complete": complete,
        "wall_seconds": round(time.time() - started, 1),
        "targets": [asdict(r) | {"crash_count": r.crash_count} for r in results],
        "totals": {
            "executions": sum(r.executions for r in results),
            "crashes": sum(r.crash_count for r in results),
        },
    }


if __name__ == "__main__":
    sys.exit(main())
