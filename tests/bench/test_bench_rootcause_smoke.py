"""Smoke test of bench/rootcause: a tiny network and a few trials of every class through
`python -m bench.rootcause` write a result of the documented shape with scores in [0, 1].
Structure and sanity only, never the targets (those come from a full run, bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
METHODS = {"ours", "007", "tomo", "netbouncer"}


def run_small(output: Path, *more: str) -> subprocess.CompletedProcess:
    """bench.rootcause at a twentieth of the national scale, two trials a class, seed 3."""
    return subprocess.run(
        [sys.executable, "-m", "bench.rootcause", "--trials", "2", "--scale", "0.05", "--seed", "3"]
        + [*more, "--json", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def test_rootcause_bench_smoke(tmp_path: Path) -> None:
    output = tmp_path / "result.json"
    result = run_small(output)
    assert result.returncode == 0, result.stderr
    assert "F1 lenient" in result.stdout and "netbouncer" in result.stdout
    data = json.loads(output.read_text())
    assert data["network"]["nodes"] > 50 and data["network"]["paths"] > 100
    assert set(data["per_class"]) == {
        "gray-loss",
        "gray-loss county",
        "blackhole",
        "node-down",
        "partial-node",
        "latency",
        "congestion",
        "single-slice",
        "probe-host",
        "reflector-down",
        "reroute",
        "multi",
        "healthy",
    }
    for fault_class, per_method in data["per_class"].items():
        assert set(per_method) == METHODS
        for figures in per_method.values():
            # the county split is the gray-loss trials whose link has a county end
            assert figures["trials"] == 2 or (fault_class == "gray-loss county" and figures["trials"] <= 2)
            for scoring in ("strict", "lenient"):
                f1 = figures[scoring]["f1"]
                assert f1 is None or 0.0 <= f1 <= 1.0
            assert figures["trials"] == 0 or figures["seconds_median"] > 0
    ours = data["pooled"]["all classes"]["ours"]
    assert 0.0 <= ours["lenient"]["f1"] <= 1.0 and 0.0 <= ours["kind_accuracy"] <= 1.0
    healthy = data["per_class"]["healthy"]["ours"]
    assert healthy["healthy_epochs"] == 2
    # every alarmed healthy epoch made at least one diagnosis, and its kind is counted
    assert sum(healthy["false_alarm_kinds"].values()) >= healthy["false_alarms_per_1000_healthy"] * 2 / 1000
    # a faulty epoch's diagnoses are not false alarms
    assert all(f["false_alarm_kinds"] == {} for c, m in data["per_class"].items() if c != "healthy" for f in m.values())
    assert isinstance(data["targets"]["beats_every_baseline_lenient_f1"]["met"], bool)


def test_rootcause_bench_multi_epoch_smoke(tmp_path: Path) -> None:
    """Trials as sequences of epochs: ours pools over them, ours-unpooled judges the last alone."""
    output = tmp_path / "result.json"
    result = run_small(output, "--epochs", "3", "--classes", "gray-loss,healthy", "--methods", "ours,ours-unpooled")
    assert result.returncode == 0, result.stderr
    assert "3 epochs per trial" in result.stdout and "ours-unpooled" in result.stdout
    data = json.loads(output.read_text())
    assert data["parameters"]["epochs_per_trial"] == 3
    assert set(data["per_class"]) == {"gray-loss", "gray-loss county", "healthy"}
    for fault_class, per_method in data["per_class"].items():
        assert set(per_method) == {"ours", "ours-unpooled"}
        if fault_class != "gray-loss county":
            assert all(figures["trials"] == 2 for figures in per_method.values())
    assert data["per_class"]["healthy"]["ours"]["healthy_epochs"] == 2  # scored on the last epoch only
    refused = subprocess.run(
        [sys.executable, "-m", "bench.rootcause", "--epochs", "0"], capture_output=True, text=True, cwd=REPO
    )
    assert refused.returncode == 2 and "--epochs must be at least 1" in refused.stderr
