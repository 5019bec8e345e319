"""Smoke test of bench/verdict_latency.py: a tiny run through a real nats-server and a real
HTTP intake writes a result of the documented shape, with a latency for every window after
the warm-up on both paths. Structure and sanity only, never a figure (see bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.tool("nats-server")
def test_verdict_latency_smoke(tmp_path: Path) -> None:
    output = tmp_path / "result.json"
    argv = ["--sites", "2", "--paths", "4", "--interval", "0.2", "--intervals", "5", "--reps", "1"]
    result = subprocess.run(
        [sys.executable, str(BENCH / "verdict_latency.py"), *argv, "--output", str(output), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,  # bounds a hang only: a loaded machine is slower
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(output.read_text())
    assert data["parameters"]["warm_up_intervals"] == 2
    for path in ("bus", "http"):
        (run,) = data["rounds"][path]
        assert run["windows"] == 2 * 4 * (5 - 2)  # sites x paths x intervals after the warm-up
        assert 0 < run["p50_s"] <= run["p99_s"] <= run["max_s"] < 300
    assert data["bus_over_http_p50"] > 0 and data["bus_over_http_p99"] > 0
