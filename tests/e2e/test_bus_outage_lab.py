"""The bus stopped under the lab's load, then started (issue 14): the all-in-one on the
`small` lab, real agents publishing to nats-server in the core site, the server stopped
for 30 s (long enough that every agent spools and the analyzer's stall wait runs out) and
started again on the same store. Every window the agents closed is in the stream exactly
once and in order per path (the agents' own per-path probe counts agree with the stream),
the analyzer refused none as too old, and its slice verdicts per interval, from the
outage's start to the end, equal those it would have shown had the intervals the outage
held back been judged as a fresh store fed the same windows without an outage judges them
(bench/lab_bus_outage.py defines the comparison; `python -m bench.lab_bus_outage` is the
5-minute version)."""

from __future__ import annotations

import json

import pytest

from bench.lab_bus_outage import held, run_outage

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.tool("nats-server")]

OUTAGE_S = 30.0


def test_a_bus_outage_loses_and_doubles_nothing_and_leaves_verdicts_as_without_it(lab, tmp_path):
    result = run_outage(lab, tmp_path, OUTAGE_S, before_s=20.0, after_s=10.0)
    failed = [name for name, ok in held(result).items() if not ok]
    if failed:
        pytest.fail(f"failed: {failed}\n{json.dumps(result, indent=1, default=str)}")
    assert result["intake_disconnections"] >= 1  # the analyzer saw the bus go
    outage = range(*result["outage_intervals"])
    for name, compared in result["verdicts"].items():
        # the comparison spans the outage: its intervals were judged, with their windows
        assert compared["intervals_compared"] > len(outage), name
        assert "no-data" not in compared["statuses"], name
