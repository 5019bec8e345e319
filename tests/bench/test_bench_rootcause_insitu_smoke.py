"""Smoke test of bench/rootcause/insitu.py: a tiny network and a few trials with and without
in-situ segments write a result of the documented shape with scores in [0, 1]. Structure and
sanity only; the figures come from a full run (bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_rootcause_insitu_bench_smoke(tmp_path: Path) -> None:
    output = tmp_path / "result.json"
    argv = ["--trials", "3", "--scale", "0.05", "--seed", "3", "--share", "0.5", "--json", str(output)]
    result = subprocess.run(
        [sys.executable, "-m", "bench.rootcause.insitu", *argv], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert "probes+insitu" in result.stdout
    data = json.loads(output.read_text())
    assert data["network"]["marked_paths"] == round(0.5 * data["network"]["paths"])
    assert set(data["per_class"]) == {"gray-loss", "gray-loss county", "healthy"}
    for per_run in data["per_class"].values():
        assert set(per_run) == {"probes", "probes+insitu"}
        for figures in per_run.values():
            for scoring in ("strict", "lenient"):
                f1 = figures[scoring]["f1"]
                assert f1 is None or 0.0 <= f1 <= 1.0
    gray = data["per_class"]["gray-loss"]
    assert gray["probes"]["trials"] == gray["probes+insitu"]["trials"] == 3  # the same trials
    assert data["per_class"]["healthy"]["probes+insitu"]["false_alarms_per_1000_healthy"] is not None


def test_rootcause_insitu_bench_refuses_a_share_out_of_range() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.rootcause.insitu", "--share", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 2 and "--share" in result.stderr
