"""Smoke test of bench/agent_scale.py: a tiny run (50 targets, 2 s measured) of all three
probers writes a result of the documented shape with positive figures, and leaves no
namespace behind (nor any prober, which all run inside them). Structure and sanity only,
never the performance targets (those come from a full run, see bench/README.md).

smokeping_prober is Debian's `prometheus-smokeping-prober` package, whose binary carries the
package name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import namespaces

BENCH = Path(__file__).resolve().parents[2] / "bench"
TARGETS, DURATION = 50, 2


@pytest.mark.root
@pytest.mark.tool("prometheus-smokeping-prober")
@pytest.mark.tool("ping")
def test_agent_scale_smoke(tmp_path: Path) -> None:
    out = tmp_path / "agent.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "agent_scale.py"),
            "--targets",
            str(TARGETS),
            "--duration",
            str(DURATION),
            "--warmup",
            "1",
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
    assert "ratio icmp/smokeping" in done.stdout and "ratio stamp/smokeping" in done.stdout
    result = json.loads(out.read_text())
    assert result["benchmark"] == "agent_scale"
    params = result["parameters"]
    assert params["targets"] == TARGETS and params["duration_s"] == DURATION and params["reps"] == 1
    assert params["tools"] == ["icmp", "smokeping", "stamp"]
    [run] = result["runs"]
    assert sorted(run["order"]) == ["icmp", "smokeping", "stamp"]
    for tool in ("icmp", "smokeping", "stamp"):
        r = run[tool]
        assert r["pairs"] == TARGETS
        assert r["wall_s"] > 0 and r["cpu_s"] >= 0 and r["cpu_per_wall_s"] >= 0
        assert r["expected"] > 0 and r["received"] > 0 and r["received_ratio"] > 0
        assert r["rtt_p50_us"] > 0 and r["rtt_spread_us"] >= 0 and r["rtt_spread_us_buckets"] >= 0
        assert r["rss_bytes"] > 0
        summary = result["tools"][tool]
        assert summary["median_rss_bytes"] > 0 and summary["median_received_ratio"] > 0
    for tool in ("icmp", "stamp"):
        r = run[tool]
        assert r["sent"] > 0 and r["lag_samples"] > 0
        assert r["lag_p99_us"] is not None and r["lag_max_us"] >= 0
        assert r["rss_per_pair_bytes"] is not None
        assert r["cpu_per_probe_us"] > 0 and r["run_queue_per_wall_s"] >= 0
        assert set(r["gc"]) <= {"gen0", "gen1", "gen2"}  # the collections that held the loop, if any
        assert all(g["count"] > 0 and g["max_ms"] >= g["p50_ms"] >= 0 for g in r["gc"].values())
        assert result["tools"][tool]["median_lag_p99_us"] is not None
    assert run["smokeping"]["lag_p99_us"] is None  # it has no scheduling telemetry
    assert run["stamp"]["reflector_cpu_per_wall_s"] >= 0
    for name in ("icmp/smokeping", "stamp/smokeping"):
        assert result["ratios"][name]["rss"] > 0
        assert result["ratios"][name]["received_ratio"] > 0
    assert not set(result["namespaces"]) & namespaces()  # and with them every process that ran inside
