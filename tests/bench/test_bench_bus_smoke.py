"""Smoke test of bench/bus_intake.py: a tiny run through a real nats-server and a real HTTP
intake writes a result of the documented shape with every window delivered on each path,
the partitioned one (two partition processes) included.
Structure and sanity only, never the target (that comes from a full run, see bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.tool("nats-server")
@pytest.mark.parametrize("prefilled", [False, True], ids=["live", "prefilled"])
def test_bus_intake_smoke(tmp_path: Path, prefilled: bool) -> None:
    output = tmp_path / "result.json"
    argv = ["--sites", "3", "--paths", "20", "--intervals", "2", "--reps", "1", "--partitions", "2"]
    argv += ["--output", str(output), "--quiet", *(["--prefilled"] if prefilled else [])]
    result = subprocess.run(
        [sys.executable, str(BENCH / "bus_intake.py"), *argv],
        capture_output=True,
        text=True,
        timeout=300,  # bounds a hang only: a loaded machine is slower
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(output.read_text())
    assert data["parameters"]["windows_per_rep"] == 120
    for path in ("bus", "http"):
        assert [r["windows"] for r in data["rounds"][path]] == [120]
        assert data["medians"][path]["windows_per_second"] > 0
    assert data["medians"]["bus"]["server_cpu_seconds"] >= 0 and data["medians"]["http"]["windows_per_cpu_second"] > 0
    assert isinstance(data["target"]["met"], bool) and data["bus_over_http"] > 0
    partitioned = data["rounds"]["partitioned"][0]
    assert partitioned["prefilled"] is prefilled and data["parameters"]["prefilled"] is prefilled
    assert partitioned["windows"] == 120 and sum(partitioned["per_partition"]) == 120
    assert data["partitioned_over_bus"] > 0 and isinstance(data["partitioned_target"]["met"], bool)
    # the partitions' partial sums reached the combiner: every slice's first interval, at least
    assert partitioned["intervals_combined"] >= 4 and len(partitioned["per_partition_cpu_seconds"]) == 2
    assert data["windows_per_partition_cpu_second"] > 0
    assert data["dedicated_cores_windows_per_second"] == 2 * data["windows_per_partition_cpu_second"]
