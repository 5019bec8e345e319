"""Smoke test of bench/bus_outage.py: a two-second outage under a tiny load, through a real
nats-server stopped and started again, writes a result of the documented shape in which
every window arrived exactly once and in order (the property itself, at any size)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.tool("nats-server")
def test_bus_outage_smoke(tmp_path: Path) -> None:
    output = tmp_path / "result.json"
    argv = ["--outage", "2", "--sites", "2", "--paths", "5", "--interval", "0.2", "--before", "1", "--after", "1"]
    result = subprocess.run(
        [sys.executable, str(BENCH / "bus_outage.py"), *argv, "--output", str(output), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,  # bounds a hang only: a loaded machine is slower
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(output.read_text())
    assert set(data["runs"]) == {"outage", "no outage"} and data["target"]["met"] is True
    outage = data["runs"]["outage"]
    assert outage["published"] > 0 and outage["in_stream"] == outage["published"]
    assert outage["deepest_spool_windows"] > 0  # windows waited in the spools while the bus was away
    assert outage["duplicates_in_stream"] == 0 and outage["order_breaks"] == 0
