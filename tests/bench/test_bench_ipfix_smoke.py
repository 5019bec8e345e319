"""The IPFIX decode benchmark runs, tiny, and reports records/s and ratios (never a threshold)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import REPO


@pytest.mark.tool("nfcapd", "nfdump")
def test_ipfix_decode_benchmark_reports_ratios(tmp_path):
    output = tmp_path / "result.json"
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "ipfix_decode.py"),
            "--datagrams",
            "300",
            "--records",
            "10",
            "--rounds",
            "1",
            "--nfcapd-repeat",
            "2",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(output.read_text())
    assert result["records"] == 3000
    assert set(result["medians_records_per_s"]) == {"ours-decode", "ours-receiver", "netflow", "nfcapd"}
    assert result["ratios"]["ours_decode_vs_netflow"] > 0
    assert "ours-receiver / netflow: " in run.stdout
    assert result["nfcapd"]["records"] == 6000
    assert "ours-decode" in run.stdout
