"""`xnetmon status` against a real analyzer API: the slice table, one slice's objectives,
the analyzer's JSON for scripts, and no analyzer at all."""

from __future__ import annotations

import json

import pytest

from analyzer.api.app import create_app
from analyzer.service import ApiServer
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from tests.analyzer_support import T0, batch, settled, window
from xnetmon.cli import main


@pytest.fixture(scope="module")
def analyzer():
    """Video losing 80% on one path for 8 intervals, egov clean."""
    store = WindowStore(default_policies(), catch_up_s=0)
    for seq in range(T0, T0 + 8):
        store.ingest(batch(window(seq, lost=8), window(seq, slice_="egov")), settled(seq))
    now = settled(T0 + 7)
    with ApiServer(create_app(store, token=None, clock=lambda: now), ("::1", 0)) as server:
        yield server.url


def rows(text: str) -> dict[str, list[str]]:
    """Table body rows by their first cell."""
    found = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("│").split("│")] if line.startswith("│") else []
        if cells and cells[0]:
            found[cells[0]] = cells[1:]
    return found


def test_the_table_has_every_slice_with_its_status_and_worst_path(analyzer, capsys):
    assert main(["status", "--analyzer", analyzer]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"slices at {analyzer}")
    table = rows(out)
    assert table["video"][0] == "breached" and table["video"][-1] == "cnty1a>core loss 80.0%, p99 4.900 ms"
    assert table["egov"][0] == "ok"
    assert {"data", "best-effort"} <= set(table)


def test_one_slice_comes_with_its_objectives(analyzer, capsys):
    assert main(["status", "--analyzer", analyzer, "--slice", "video"]) == 0
    out = capsys.readouterr().out
    table = rows(out)
    assert "egov" not in table and "video: objectives of the latest interval" in out
    assert table["two-way-packet-loss"] == ["80.0000%", "0.1000%", "NO"]


def test_json_is_the_analyzers_own_answer(analyzer, capsys):
    assert main(["status", "--analyzer", analyzer, "--json"]) == 0
    slices = json.loads(capsys.readouterr().out)
    assert {s["name"]: s["status"] for s in slices}["video"] == "breached"
    assert main(["status", "--analyzer", analyzer, "--json", "--slice", "egov"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"]["status"] == "ok"


def test_an_unknown_slice_or_no_analyzer_is_a_usage_error(analyzer, capsys):
    assert main(["status", "--analyzer", analyzer, "--slice", "nope"]) == 2
    assert capsys.readouterr().err.startswith(f"xnetmon status: {analyzer}/slices/nope: 404")
