"""Smoke test of bench/pcap_classify.py: a tiny run of every tool writes a result with a
rate per tool and the ratios. Structure and sanity only, never the 400,000 packets/s target
(that comes from a full run, see bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.tool("tshark")
def test_pcap_classify_smoke(tmp_path: Path) -> None:
    output = tmp_path / "result.json"
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / "pcap_classify.py"),
            "--packets",
            "3000",
            "--flows",
            "100",
            "--reps",
            "1",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "ours/tool" in result.stdout
    data = json.loads(output.read_text())
    assert data["parameters"]["packets"] == 3000
    tools = {"ours", "ours per-packet", "xnetmon command", "dpkt loop", "tshark fields", "tshark conv"}
    assert set(data["packets_per_cpu_second"]) == tools
    assert all(rate > 0 for rate in data["packets_per_cpu_second"].values())
    assert set(data["ratio_ours_to"]) == tools and data["ratio_ours_to"]["ours"] == 1.0
    # every tool that reports what it read saw every packet of the capture
    for tool in ("ours", "ours per-packet", "dpkt loop", "tshark fields"):
        assert data["runs"][tool][0]["packets_reported"] == 3000, tool
    assert isinstance(data["target"]["met"], bool)
