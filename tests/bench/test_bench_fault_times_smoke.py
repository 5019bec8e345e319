"""Smoke test of bench/fault_times.py: one round of one fault on the lab all-in-one writes a
result of the documented shape, finds the fault and leaves no namespace behind. Structure and
sanity only; the times come from a full run (bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import namespaces

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.root
@pytest.mark.lab
def test_fault_times_smoke(tmp_path: Path) -> None:
    output = tmp_path / "fault_times.json"
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench.fault_times", "--kinds", "reflector", "--rounds", "1", "--output", str(output)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    stdout, stderr = bench.communicate(timeout=900)
    assert bench.returncode == 0, stderr[-3000:]
    assert "hint s (median)" in stdout
    data = json.loads(output.read_text())
    [fault] = data["faults"]
    assert fault["kind"] == "reflector" and fault["hint"].startswith("reflector-down service:")
    assert 0 < fault["hint_s"] <= data["parameters"]["watch"]
    assert [row["fault"] for row in data["summary"]] == ["reflector"]
    assert not [ns for ns in namespaces() if ns.startswith(f"xl{bench.pid}-")]  # its lab is down
