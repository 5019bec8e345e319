"""Smoke test of bench/soak: 90 seconds of the lab all-in-one with one fault (made, healed)
and one agent killed (SIGKILL) and started again, through `python -m bench.soak`. The
result file has the documented shape, and the invariants a short run can judge hold: no
window lost or counted twice, no background thread lost, the hint cleared after the heal.
Memory slopes need a longer run than this and are not judged here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.root, pytest.mark.lab]


def test_soak_bench_smoke(tmp_path: Path) -> None:
    output = tmp_path / "soak.json"
    argv = [
        sys.executable,
        "-m",
        "bench.soak",
        "--minutes", "1.5",
        "--fault-every", "60",
        "--fault-hold", "15",
        "--kinds", "loss",
        "--restart-every", "90",
        "--restart-targets", "cnty2a",
        "--restart-signals", "KILL",
        "--warmup", "20",
        "--sample-every", "5",
        "--settle", "10",
        "--output", str(output),
        "--workdir", str(tmp_path / "work"),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=900)  # bounds a hang only
    data = json.loads(output.read_text())
    assert proc.returncode == (0 if data["ok"] else 1), out
    assert "windows:" in out and "invariants:" in out
    leftover = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"xl{proc.pid}-" not in leftover  # the soak's lab is gone

    assert [f["kind"] for f in data["faults"]] == ["loss"]
    assert [(r["target"], r["signal"]) for r in data["restarts"]] == [("cnty2a", "KILL")]
    assert data["restarts"][0]["exit_status"] == -9
    roles = {m["role"] for m in data["memory"]}
    assert {
        "analyzer #1 (this process)",
        "analyzer process (every incarnation)",
        "agent:cnty2a",
        "reflector:core",
    } <= roles
    assert sum(1 for m in data["memory"] if m["role"] == "agent:cnty2a") == 2  # before and after the restart
    for m in data["memory"]:
        assert m["rss_max_mib"] > 0 and m["slope_judged"] is False
    windows = data["windows"]
    assert windows["paths"] == 80 and windows["distinct"] > 80  # 5 agents x 4 targets x 4 slices
    assert windows["agent_readings"] == 6 and windows["agents_unread"] == []  # at the restart and at the end

    invariants = data["invariants"]
    assert invariants["memory_flat"] is None
    assert invariants["no_window_doubled"], windows
    assert invariants["no_window_lost"], windows
    assert invariants["no_thread_lost"], (data["analyzer_threads_missing"], data["memory"])
    assert invariants["every_hint_cleared"], data["faults"]
    assert invariants["spools_drained"], data["agents_at_end"]
    assert data["clear_by_kind"]["loss"]["clear_s_median"] is not None
