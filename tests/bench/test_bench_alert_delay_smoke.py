"""Smoke test of bench/alert_delay.py: one loss fault on the lab, watched by a real Prometheus,
writes a result of the documented shape in which every stage was seen in order and the alert
fired; its lab is down afterwards. Structure and sanity only; the times come from a full run
(docs/architecture.md)."""

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
@pytest.mark.tool("prometheus")
def test_alert_delay_smoke(tmp_path: Path) -> None:
    output = tmp_path / "alert_delay.json"
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench.alert_delay", "--rounds", "1", "--output", str(output)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    stdout, stderr = bench.communicate(timeout=900)
    assert bench.returncode == 0, stderr[-3000:]
    assert "fault -> firing" in stdout and "aim: for + one scrape" in stdout
    data = json.loads(output.read_text())
    [round_] = data["rounds"]
    assert round_["window"] in {"1m/5s", "2m/10s"} and round_["for_s"] in {2.0, 4.0}
    times = [round_["fault"], *(round_["times"][stage] for stage in ("window in", "scraped", "pending", "firing"))]
    assert times == sorted(times), round_  # the stages Prometheus and the store saw, in order
    assert round_["total_s"] >= round_["for_s"]
    assert data["parameters"]["evaluation"] == 1.0 and data["aim_s"] == round_["for_s"] + 5
    assert [row["stage"] for row in data["summary"]][-1] == "fault -> firing"
    assert not [ns for ns in namespaces() if ns.startswith(f"xl{bench.pid}-")]  # its lab is down
