"""python -m bench.heap_growth: which allocation sites grow in a long run, per process.

    sudo PYTHONPATH=$PWD .venv/bin/python -m bench.heap_growth run --out /tmp/heap --every 300 -- \\
        .venv/bin/python -m bench.soak --minutes 30 --restart-targets cnty2b
    .venv/bin/python -m bench.heap_growth compare /tmp/heap --warmup 300

`run` starts COMMAND with a `sitecustomize` on PYTHONPATH that turns `tracemalloc` on in
every Python process of the run whose command line names one of `--roles` (the soak itself,
which holds the analyzer, and each agent it starts in a lab namespace: the environment goes
through `ip netns exec`) and writes a heap snapshot of it every `--every` seconds to
`--out/PID-SECONDS.snap`. Nothing of this is in the product: the hook lives here and only
a run of this command loads it.

`compare` takes, per process, the first snapshot at or after `--warmup` seconds and the
last one, and prints the allocation sites (tracebacks of `--frames` frames) whose memory
grew most between them, in MiB/hour, with the traced total's slope.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

OUT_ENV = "XNETMON_HEAP_SNAPSHOTS"
EVERY_ENV = "XNETMON_HEAP_EVERY_S"
FRAMES_ENV = "XNETMON_HEAP_FRAMES"
ROLES_ENV = "XNETMON_HEAP_ROLES"
DEFAULT_ROLES = "bench.soak,agent,allinone"
SNAPSHOT_NAME = re.compile(r"^(\d+)-(\d+)\.snap$")
SITECUSTOMIZE = "import bench.heap_growth\nbench.heap_growth.install_from_environment()\n"


# -- inside each traced process --------------------------------------------------------------


def install_from_environment() -> None:
    """Start tracing and the snapshot thread when the run asked for it and this process
    has one of the roles; any other Python process of the run stays untouched."""
    out = os.environ.get(OUT_ENV)
    if not out:
        return
    argv = " ".join(getattr(sys, "orig_argv", sys.argv))
    roles = os.environ.get(ROLES_ENV, DEFAULT_ROLES).split(",")
    if not any(role and role in argv for role in roles):
        return
    tracemalloc.start(int(os.environ.get(FRAMES_ENV, "6")))
    every = float(os.environ.get(EVERY_ENV, "300"))
    thread = threading.Thread(target=_snapshot_loop, args=(Path(out), every), name="heap-snapshots", daemon=True)
    thread.start()


def _snapshot_loop(out: Path, every: float) -> None:
    started = time.monotonic()
    pid = os.getpid()
    while True:
        elapsed = round(time.monotonic() - started)
        path = out / f"{pid}-{elapsed}.snap"
        tmp = path.with_suffix(".tmp")
        try:
            snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            snapshot.dump(str(tmp))
            os.replace(tmp, path)
        except OSError as exc:  # a full disk: the run goes on, this sample is lost
            print(f"heap_growth: snapshot {path} not written: {exc}", file=sys.stderr)
        time.sleep(max(0.0, every - (time.monotonic() - started - elapsed)))


# -- run -----------------------------------------------------------------------------------


def run(out: Path, every: float, frames: int, roles: str, command: list[str]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="heap-hook-") as hook:
        (Path(hook) / "sitecustomize.py").write_text(SITECUSTOMIZE)
        repo = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (hook, repo, os.environ.get("PYTHONPATH", "")) if p)
        env = {
            **os.environ,
            "PYTHONPATH": path,
            OUT_ENV: str(out.resolve()),
            EVERY_ENV: str(every),
            FRAMES_ENV: str(frames),
            ROLES_ENV: roles,
        }
        return subprocess.call(command, env=env)


# -- compare ---------------------------------------------------------------------------------


def snapshots_by_pid(directory: Path) -> dict[int, list[tuple[int, Path]]]:
    found: dict[int, list[tuple[int, Path]]] = {}
    for path in directory.iterdir():
        if match := SNAPSHOT_NAME.match(path.name):
            found.setdefault(int(match[1]), []).append((int(match[2]), path))
    return {pid: sorted(snaps) for pid, snaps in found.items()}


def growth(first: Path, last: Path, frames: int, top: int) -> tuple[int, int, list[tuple[int, int, str]]]:
    """(bytes traced first, bytes traced last, [(bytes grown, blocks grown, traceback)])."""
    old, new = tracemalloc.Snapshot.load(str(first)), tracemalloc.Snapshot.load(str(last))
    diffs = new.compare_to(old, "traceback")
    grown = []
    for stat in sorted(diffs, key=lambda s: s.size_diff, reverse=True)[:top]:
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in list(stat.traceback)[-frames:][::-1])
        grown.append((stat.size_diff, stat.count_diff, where))
    total = lambda snap: sum(s.size for s in snap.statistics("filename"))  # noqa: E731
    return total(old), total(new), grown


def compare(directory: Path, warmup: float, frames: int, top: int) -> dict[int, dict]:
    report: dict[int, dict] = {}
    for pid, snaps in sorted(snapshots_by_pid(directory).items()):
        after = [(t, p) for t, p in snaps if t >= warmup]
        if len(after) < 2:
            continue
        (t0, first), (t1, last) = after[0], after[-1]
        hours = (t1 - t0) / 3600
        old_total, new_total, grown = growth(first, last, frames, top)
        report[pid] = {
            "span_s": t1 - t0,
            "traced_mib": [old_total / 2**20, new_total / 2**20],
            "traced_mib_per_hour": (new_total - old_total) / 2**20 / hours,
            "sites": [
                {"mib_per_hour": size / 2**20 / hours, "blocks": count, "where": where} for size, count, where in grown
            ],
        }
    return report


def print_report(report: dict[int, dict]) -> None:
    for pid, entry in report.items():
        low, high = entry["traced_mib"]
        print(
            f"pid {pid}: traced {low:.1f} -> {high:.1f} MiB over {entry['span_s']} s, "
            f"{entry['traced_mib_per_hour']:+.1f} MiB/h"
        )
        for site in entry["sites"]:
            print(f"  {site['mib_per_hour']:+8.2f} MiB/h {site['blocks']:+8d} blocks  {site['where']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.heap_growth", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("run", help="run COMMAND with heap snapshots in its traced processes")
    r.add_argument("--out", required=True, type=Path, help="snapshot directory")
    r.add_argument("--every", type=float, default=300.0, metavar="S", help="seconds between snapshots (300)")
    r.add_argument("--frames", type=int, default=6, help="frames kept per allocation (6)")
    r.add_argument("--roles", default=DEFAULT_ROLES, help=f"traced command lines contain one of ({DEFAULT_ROLES})")
    r.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    c = sub.add_parser("compare", help="allocation sites that grew, per process")
    c.add_argument("directory", type=Path)
    c.add_argument("--warmup", type=float, default=300.0, metavar="S", help="first snapshot at or after S (300)")
    c.add_argument("--frames", type=int, default=4, help="frames printed per site (4)")
    c.add_argument("--top", type=int, default=15, help="sites printed per process (15)")
    args = p.parse_args(argv)
    if args.verb == "run":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command or args.every <= 0:
            p.error("run needs -- COMMAND and a positive --every")
        return run(args.out, args.every, args.frames, args.roles, command)
    report = compare(args.directory, args.warmup, args.frames, args.top)
    if not report:
        print(f"no process in {args.directory} has two snapshots after {args.warmup:.0f} s", file=sys.stderr)
        return 1
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
