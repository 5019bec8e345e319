"""`xnetmon why SLICE` against a real analyzer API over HTTP: a breached slice with its
verdict and most likely root cause in words (exit 1), a healthy one (exit 0), a slice
without hints, and the errors (exit 2)."""

from __future__ import annotations

import json

import pytest

from analyzer.api.app import create_app
from analyzer.rootcause.hints import HintTracker
from analyzer.rootcause.model import Diagnosis
from analyzer.service import ApiServer
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from tests.analyzer_support import T0, W, batch, settled, window
from tests.support import xnetmon
from xnetmon.commands.why import explain

FIRST_SEEN_NS = (T0 + 3) * W


@pytest.fixture(scope="module")
def analyzer():
    """Video losing 80% on one path for 8 intervals, egov clean; one hint on video and egov."""
    store = WindowStore(default_policies(), catch_up_s=0)
    now = settled(T0 + 7)
    for seq in range(T0, T0 + 8):
        store.ingest(batch(window(seq, lost=8), window(seq, slice_="egov")), settled(seq))
    tracker = HintTracker(confirm_epochs=1)  # these hints are given, not inferred: shown at once
    tracker.update(
        [
            Diagnosis(
                "link-loss",
                ("prov2>city2a",),
                ("egov", "video"),
                0.9,
                ("3 of 4 paths through prov2>city2a lost 80% (forward)", "paths elsewhere lost nothing"),
            )
        ],
        FIRST_SEEN_NS,
    )
    with ApiServer(create_app(store, token=None, hints=tracker.hints, clock=lambda: now), ("::1", 0)) as server:
        yield server.url


def test_a_breached_slice_is_explained_with_its_most_likely_cause_and_exits_1(analyzer):
    done = xnetmon("why", "video", "--analyzer", analyzer)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("video: breached since ") and "two-way-packet-loss 80.00% > 0.10%" in lines[0]
    assert lines[1].startswith(
        "Most likely: loss on link prov2>city2a (confidence 0.90), affecting egov, video, since "
    )
    assert lines[2] == "Evidence: 3 of 4 paths through prov2>city2a lost 80% (forward)"
    assert lines[3] == "Evidence: paths elsewhere lost nothing"


def test_a_healthy_slice_says_so_and_exits_0(analyzer):
    done = xnetmon("why", "data", "--analyzer", analyzer)
    assert done.returncode == 0, done.stderr
    assert "data: " in done.stdout and "No root-cause hint: nothing in the network is suspected." in done.stdout


def test_json_gives_the_verdict_and_the_hints(analyzer):
    done = xnetmon("why", "egov", "--analyzer", analyzer, "--json")
    body = json.loads(done.stdout)
    assert body["name"] == "egov" and body["hints"][0]["suspects"] == ["prov2>city2a"]
    assert done.returncode == (1 if body["verdict"]["status"] in ("at-risk", "breached") else 0)


def test_unknown_slice_and_missing_analyzer_are_errors_with_exit_2(analyzer):
    unknown = xnetmon("why", "gold", "--analyzer", analyzer)
    assert unknown.returncode == 2 and "unknown slice 'gold'" in unknown.stderr
    away = xnetmon("why", "video", "--analyzer", "http://[::1]:9")
    assert away.returncode == 2 and "no analyzer answers" in away.stderr


def test_a_degraded_slice_without_a_hint_says_none_points_anywhere():
    detail = {
        "name": "video",
        "hints": [],
        "verdict": {
            "status": "at-risk",
            "since_ns": FIRST_SEEN_NS,
            "objectives": [
                {"name": "two-way-delay-percentile", "percentile": 99, "bound": 0.15, "observed": 0.3, "met": False},
                {"name": "availability", "percentile": None, "bound": 0.9999, "observed": 0.99, "met": False},
            ],
        },
    }
    text = explain(detail)
    assert "(two-way-delay-percentile p99 300 ms > 150 ms; availability 99.00% < 99.99%)" in text
    assert "No root-cause hint yet" in text


def test_status_shows_each_hint_in_a_row_under_the_slices_it_affects(analyzer):
    done = xnetmon("status", "--analyzer", analyzer)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("│")]
    names = [row.split("│")[1].strip() for row in rows]
    hint_rows = [i for i, row in enumerate(rows) if row.split("│")[2].strip() == "hint"]
    assert [names[i - 1] for i in hint_rows] == ["egov", "video"]
    assert all("loss on link prov2>city2a (confidence 0.90)," in rows[i] for i in hint_rows)
