"""The fuzzing campaign runs, tiny, and reports executions, coverage and crashes per target,
writing its result as each target ends; a hang is a crash named where it ran."""

from __future__ import annotations

import json
import subprocess
import sys

from bench.fuzz.__main__ import crash_signature
from tests.support import DEADLINE_S, REPO, wait_until


def campaign(tmp_path, targets: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.fuzz",
        "--minutes",
        "0.05",
        "--targets",
        targets,
        "--workdir",
        str(tmp_path / "work"),
        "--output",
        str(tmp_path / "result.json"),
    ]


def test_fuzz_campaign_reports_each_target(tmp_path):
    output = tmp_path / "result.json"
    run = subprocess.run(campaign(tmp_path, "icmp6,ipv6_ext"), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(output.read_text())
    assert result["complete"] is True and result["input_timeout_s"] == 25
    assert [t["target"] for t in result["targets"]] == ["icmp6", "ipv6_ext"]
    for target in result["targets"]:
        assert target["executions"] > 0 and target["coverage"] > 0 and target["features"] >= target["coverage"]
        assert target["crashes"] == [] and target["runs"] == 1
    assert result["totals"]["executions"] == sum(t["executions"] for t in result["targets"])
    assert "icmp6" in run.stdout and "ipv6_ext" in run.stdout


def test_the_result_is_written_as_each_target_ends(tmp_path):
    output = tmp_path / "result.json"
    proc = subprocess.Popen(campaign(tmp_path, "icmp6,ipv6_ext"), cwd=REPO, stdout=subprocess.PIPE, text=True)

    def targets_done() -> list[str]:
        text = output.read_text() if output.exists() else ""
        return [t["target"] for t in json.loads(text)["targets"]] if text.endswith("}\n") else []

    try:
        wait_until(lambda: targets_done() == ["icmp6"] or proc.poll() is not None, what="the first target's result")
        assert targets_done() == ["icmp6"] and json.loads(output.read_text())["complete"] is False
    finally:
        proc.wait(DEADLINE_S)
    assert targets_done() == ["icmp6", "ipv6_ext"] and json.loads(output.read_text())["complete"] is True


def test_a_hang_is_a_timeout_named_where_the_input_was_running():
    module = REPO / "collector" / "wire" / "stamp.py"
    stderr = f"""INFO: seed corpus: files: 1 min: 1b max: 1b total: 1b rss: 40Mb

 === Timeout: 26s elapsed, timeout=25s ===
Current thread 0x00007f76058a8b80 (most recent call first):
  File "{module}", line 120 in unpack_tlvs
  File "{module}", line 200 in decode
  File "{REPO / "tests" / "fuzz" / "targets.py"}", line 131 in stamp_sender
ALARM: working on the last Unit for 26 seconds
       and the timeout value is 25 (use -timeout=N to change)
artifact_prefix='/tmp/work/'; Test unit written to /tmp/work/timeout-27d5482eebd075de44389774fce28c69f45c8a75
==12649== ERROR: libFuzzer: timeout after 26 seconds
SUMMARY: libFuzzer: timeout
"""
    assert crash_signature(stderr) == "Timeout at collector/wire/stamp.py:120 in unpack_tlvs"
    assert crash_signature("==1== ERROR: libFuzzer: out-of-memory (used: 2100Mb; exceeds: 2048Mb)") == "OutOfMemory"
