"""The fuzzing campaign runs, tiny, and reports executions, coverage and crashes per target."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support import REPO


def test_fuzz_campaign_reports_each_target(tmp_path):
    output = tmp_path / "result.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.fuzz",
            "--minutes",
            "0.05",
            "--targets",
            "icmp6,ipv6_ext",
            "--workdir",
            str(tmp_path / "work"),
            "--output",
            str(output),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(output.read_text())
    assert [t["target"] for t in result["targets"]] == ["icmp6", "ipv6_ext"]
    for target in result["targets"]:
        assert target["executions"] > 0 and target["coverage"] > 0 and target["features"] >= target["coverage"]
        assert target["crashes"] == [] and target["runs"] == 1
    assert result["totals"]["executions"] == sum(t["executions"] for t in result["targets"])
    assert "icmp6" in run.stdout and "ipv6_ext" in run.stdout
