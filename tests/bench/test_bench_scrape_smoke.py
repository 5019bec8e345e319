"""Smoke test of bench/agent_scrape.py: a tiny run writes a result of the documented shape,
with our bytes identical to generate_latest's. Never the 0.5 s target (bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize("counts_from", [0, 2_000_000])  # 2e6: counts in Go's exponent form
def test_agent_scrape_smoke(tmp_path: Path, counts_from: int) -> None:
    output = tmp_path / "result.json"
    argv = [sys.executable, str(BENCH / "agent_scrape.py"), "--targets", "30", "--reps", "2", "--output", str(output)]
    argv += ["--counts-from", str(counts_from)]
    result = subprocess.run(argv + ["--quiet"], capture_output=True, text=True, timeout=300)  # bounds a hang only
    assert result.returncode == 0, result.stderr
    data = json.loads(output.read_text())
    assert data["parameters"]["counts_from"] == counts_from
    assert (data["paths"], data["series"], data["identical"]) == (120, 3000, True)
    assert len(data["runs"]) == 2
    assert all(data["median_cpu_s"][k] > 0 for k in ("peer_s", "ours_s"))
    assert set(data["ratios"]) == {"peer/ours", "peer/cached"}
    assert "generate_latest" in result.stdout
