"""Smoke test of bench/combined_inference.py: a tiny national network, one repetition, a
result of the documented shape in which the combined epoch and hints equal the single
analyzer's. Structure and sanity only: the figures come from a full run (docs/architecture.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_combined_inference_bench_smoke(tmp_path: Path) -> None:
    output = tmp_path / "result.json"
    result = subprocess.run(
        [sys.executable, "bench/combined_inference.py", "--scale", "0.05", "--reps", "1", "--json", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert "single engine s" in result.stdout and "median" in result.stdout
    data = json.loads(output.read_text())
    (run,) = data["runs"]
    assert run["paths"] > 1_000 and run["same_epoch"] and run["same_diagnoses"]
    assert 0 < run["reverse_known"] < run["paths"]  # traces give some reverse routes, not all
    assert run["bytes_per_partition_max"] <= run["bytes_per_epoch"] and run["bytes_per_path"] > 10
    assert data["medians"]["combiner_s"] > 0 and data["medians"]["intervals_per_inference_at_1s"] >= 1
