"""Smoke test of bench/analyzer_ingest.py: a tiny run writes a result of the documented
shape with positive figures. Structure and sanity only, never the 50,000 windows/s target
(that comes from a full run, see bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_analyzer_ingest_smoke(tmp_path: Path) -> None:
    output = tmp_path / "result.json"
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / "analyzer_ingest.py"),
            "--paths",
            "200",
            "--agents",
            "4",
            "--intervals",
            "3",
            "--reps",
            "1",
            "--output",
            str(output),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,  # bounds a hang only: a loaded machine is slower
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(output.read_text())
    assert data["parameters"]["windows_per_rep"] == 600
    assert set(data["windows_per_cpu_second"]) == {
        "json",
        "decode",
        "parse",
        "store, first sight",
        "store",
        "parse+store",
        "parse+store, default gc",
        "parse+store, tracker objects",
        "parse+store, slice verdicts only",
        "resend",
    }
    assert all(rate > 0 for rate in data["windows_per_cpu_second"].values())
    assert isinstance(data["target"]["met"], bool)
