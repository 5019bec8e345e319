"""Smoke test of `python -m bench.lab_bus_outage`: an 8-second outage of the lab's bus (past
the analyzer's stall wait) writes a result of the documented shape, its checks agree with
its exit status, and the run's lab is gone afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.tool("nats-server")]


def test_lab_bus_outage_bench_smoke(tmp_path: Path) -> None:
    output = tmp_path / "result.json"
    argv = [sys.executable, "-m", "bench.lab_bus_outage", "--outage", "8", "--before", "6", "--after", "2"]
    argv += ["--output", str(output), "--workdir", str(tmp_path / "work")]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=900)  # bounds a hang only
    assert output.exists(), out  # a run that failed before its result says why
    data = json.loads(output.read_text())
    assert proc.returncode == (0 if data["ok"] else 1), out
    assert data["ok"], data["checks"]
    leftover = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"xl{proc.pid}-" not in leftover  # the bench's lab is gone
    run = data["run"]
    assert run["windows_in_stream"] > 0 and run["deepest_spool_windows"] > 0
    assert set(run["verdicts"]) == {"video", "egov", "data", "best-effort"}
    assert all(v["intervals_compared"] > 0 for v in run["verdicts"].values())
    assert "verdicts equal the uninterrupted run's" in out
