"""bench.heap_growth traces a process of the run that has one of the roles, writes its heap
snapshots as it goes, and names the line whose allocations grew between them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.heap_growth import compare, snapshots_by_pid
from tests.support import DEADLINE_S, REPO

# Keeps 50 kB more every turn until its third snapshot is written, then ends.
GROWER = """
import sys
from pathlib import Path

out, kept = Path(sys.argv[1]), []
while len(list(out.glob("*.snap"))) < 3:
    kept.append(bytearray(50_000))
    Path(sys.argv[1]).exists()  # a system call: the snapshot thread gets its turn
"""


def heap_growth_run(out: Path, every: float, roles: str, *argv: str) -> subprocess.CompletedProcess:
    """`python -m bench.heap_growth run` over a command."""
    command = ["run", "--out", str(out), "--every", str(every), "--roles", roles, "--", *argv]
    return subprocess.run(
        [sys.executable, "-m", "bench.heap_growth", *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )


def test_a_growing_line_is_named_with_its_slope(tmp_path):
    script, out = tmp_path / "grower.py", tmp_path / "heap"
    script.write_text(GROWER)
    run = heap_growth_run(out, 0.3, "grower", sys.executable, str(script), str(out))
    assert run.returncode == 0, run.stdout + run.stderr
    ((pid, snaps),) = snapshots_by_pid(out).items()
    assert len(snaps) >= 3 and snaps[0][0] == 0
    report = compare(out, warmup=0, frames=1, top=3)[pid]
    assert report["traced_mib"][1] > report["traced_mib"][0]
    top = report["sites"][0]
    assert top["where"] == "grower.py:7" and top["mib_per_hour"] > 0 and top["blocks"] > 0


def test_a_process_without_a_role_is_left_untraced(tmp_path):
    out = tmp_path / "heap"
    check = "import tracemalloc; assert not tracemalloc.is_tracing()"
    run = heap_growth_run(out, 0.1, "nothing", sys.executable, "-c", check)
    assert run.returncode == 0, run.stdout + run.stderr
    assert list(out.iterdir()) == []
