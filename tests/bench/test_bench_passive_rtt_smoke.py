"""Smoke test of bench/passive_rtt.py: a tiny run compares our passive RTT with ss and tshark,
writes a result of the documented shape and leaves no namespace behind. Shape and sanity
only, never the 5% aim."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench._common import namespaces
from tests.support import REPO


@pytest.mark.root
@pytest.mark.tool("tshark")
def test_passive_rtt_benchmark_reports_ours_beside_ss_and_tshark(tmp_path):
    out = tmp_path / "passive_rtt.json"
    before = namespaces()
    done = subprocess.run(
        [sys.executable, "-m", "bench.passive_rtt", "--runs", "1", "--transfer-mib", "2", "--output", str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sender-side: ours data->ack" in done.stdout and "/ tshark" in done.stdout
    result = json.loads(out.read_text())
    assert result["benchmark"] == "passive_rtt" and len(result["runs"]) == 1 and result["runs_counted"] == [0]
    summary = result["summary"]
    assert summary["ss_ms"] > 0
    for point in ("sender-side", "receiver-side"):
        figures = summary[point]
        assert figures["ours_data_ack_ms"] > 0 and figures["tshark_ack_rtt_ms"] > 0
        assert figures["ours_round_trip_vs_ss"] > 0 and figures["ours_data_ack_vs_tshark"] > 0
    run = result["runs"][0]["points"]["sender-side"]
    assert run["ours_data_ack_samples"] > 100 and run["tshark_ack_rtt_samples"] > 100
    assert namespaces() <= before
