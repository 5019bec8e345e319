"""Smoke test of bench/icmp_echo_scale.py: a tiny run end to end writes a result of the
documented shape and leaves no namespace behind. Structure and sanity only, never the
performance targets (those come from a full run, see bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import namespaces

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.root
@pytest.mark.tool("fping")
@pytest.mark.tool("ping")
def test_icmp_echo_scale_smoke(tmp_path: Path) -> None:
    out = tmp_path / "echo.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "icmp_echo_scale.py"),
            "--targets",
            "10",
            "--count",
            "2",
            "--interval",
            "0.2",
            "--reps",
            "1",
            "--output",
            str(out),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,  # bounds a hang only: a loaded machine is slower
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ratios xnetmon/fping" in done.stdout
    result = json.loads(out.read_text())
    assert result["benchmark"] == "icmp_echo_scale"
    assert result["parameters"] == {"targets": 10, "count": 2, "interval_s": 0.2, "reps": 1}
    for tool in ("xnetmon", "fping"):
        summary = result["tools"][tool]
        assert summary["median_cpu_s_per_1000_probes"] > 0
        assert summary["median_p50_us"] > 0
        assert summary["median_spread_us"] >= 0
        assert 0 < summary["median_received_ratio"] <= 1
        [run] = [r[tool] for r in result["runs"]]
        assert run["sent"] == 20 and 0 < run["received"] <= 20 and run["cpu_s"] > 0
    assert result["tools"]["xnetmon"]["median_cpu_probing_s_per_1000_probes"] > 0
    assert result["ratios"]["cpu_per_probe"] > 0
    assert result["ratios"]["rtt_spread"] is None or result["ratios"]["rtt_spread"] >= 0
    assert not set(result["namespaces"]) & namespaces()
