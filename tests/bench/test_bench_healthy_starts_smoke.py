"""Smoke test of bench/healthy_starts.py: one short start per condition (quiet, CPU hog) of
the all-in-one on the healthy lab writes a result of the documented shape, and leaves no
namespace behind. Structure and sanity only; the false-alarm counts come from
a full run (bench/README.md)."""

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
@pytest.mark.tool("stress-ng")
def test_healthy_starts_smoke(tmp_path: Path) -> None:
    output = tmp_path / "healthy.json"
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench.healthy_starts", "--starts", "1", "--seconds", "8", "--output", str(output)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    stdout, stderr = bench.communicate(timeout=600)
    assert bench.returncode == 0, stderr[-3000:]
    assert "starts with a bad status" in stdout
    data = json.loads(output.read_text())
    assert [s["condition"] for s in data["starts"]] == ["quiet", "hog"]
    for start in data["starts"]:
        assert start["polls"] >= 4
        assert start["bad"] >= 0 and start["dropped"] >= 0 and isinstance(start["hints"], list)
        assert set(start["hint_evidence"]) == set(start["hints"])  # each hint says which rule fired
        assert set(start["seen"]) == {"best-effort", "data", "egov", "video"}
    assert {row["condition"] for row in data["summary"]} == {"quiet", "hog"}
    assert not [ns for ns in namespaces() if ns.startswith(f"xl{bench.pid}-")]  # its lab is down
