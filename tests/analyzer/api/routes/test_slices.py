"""GET /slices and /slices/{name} (analyzer.api.routes.slices): each slice's status, budget,
objectives and worst paths, a slice without policy, an unknown slice, and the hints on them."""

from __future__ import annotations

import pytest

from analyzer.rootcause.hints import HintTracker
from analyzer.rootcause.model import Diagnosis
from tests.analyzer_support import T0, batch, window
from tests.api_support import Api, lossy_video


def test_slices_lists_every_policy_slice_with_status_budget_and_worst_path():
    api = Api()
    lossy_video(api)
    slices = {s["name"]: s for s in api.get("/slices").json()}
    assert set(slices) == {"video", "egov", "data", "best-effort"}
    video = slices["video"]
    assert video["status"] == "breached" and video["paths"] == 2
    assert video["error_budget_remaining"] < 1 and "1h" in video["burn_rates"]
    assert video["worst_path"]["path"]["target"] == "core" and video["worst_path"]["latest"]["loss_ratio"] == 0.8
    assert slices["egov"]["status"] == "ok" and slices["data"]["status"] == "no-data"


def test_a_slice_without_policy_is_refused_and_counted():
    api = Api()
    assert api.ship(batch(window(T0, slice_="lab-experiment"), window(T0))).json()["refused"] == 1
    assert [s["name"] for s in api.get("/slices").json()] == ["best-effort", "data", "egov", "video"]
    assert api.get("/slices/lab-experiment").status_code == 404
    assert 'xnet_analyzer_windows_refused_total{reason="unknown-slice"} 1.0' in api.get("/metrics").text


def test_twenty_thousand_made_up_slices_do_not_reach_the_reads():
    api = Api()
    for part in range(4):
        response = api.ship(batch(*(window(T0, slice_=f"bogus{part}-{i}") for i in range(5_000))))
        assert response.json()["refused"] == 5_000
    assert len(api.get("/slices").json()) == 4 and api.get("/paths").json()["total"] == 0
    assert 'xnet_analyzer_windows_refused_total{reason="unknown-slice"} 20000.0' in api.get("/metrics").text


def test_one_slice_shows_its_objectives_and_worst_paths():
    api = Api()
    lossy_video(api)
    detail = api.get("/slices/video").json()
    objectives = {o["name"]: o for o in detail["verdict"]["objectives"]}
    assert objectives["two-way-packet-loss"]["observed"] == pytest.approx(0.4)
    assert objectives["two-way-packet-loss"]["met"] is False
    assert [p["path"]["target"] for p in detail["worst_by_loss"]] == ["core"]
    assert [p["path"]["target"] for p in detail["worst_by_p99"]] == ["edge", "core"]


def test_an_unknown_slice_is_404_with_the_known_names():
    api = Api()
    response = api.get("/slices/vidoe")
    assert response.status_code == 404
    assert response.json()["detail"] == "unknown slice 'vidoe' (slices are: best-effort, data, egov, video)"


def test_slices_carry_the_hints_that_affect_them_most_confident_first():
    tracker = HintTracker(confirm_epochs=1)  # these hints are given, not inferred: shown at once
    tracker.update(
        [
            Diagnosis("link-loss", ("prov2>city2a",), ("egov", "video"), 0.9, ("4 of 6 paths lost 40%",)),
            Diagnosis("latency-shift", ("core>prov1",), ("video",), 0.6),
        ],
        T0 * 10**10,
    )
    api = Api(hints=tracker.hints)
    lossy_video(api, intervals=2)
    summaries = {s["name"]: s for s in api.get("/slices").json()}
    assert [(h["kind"], h["suspects"]) for h in summaries["video"]["hints"]] == [
        ("link-loss", ["prov2>city2a"]),
        ("latency-shift", ["core>prov1"]),
    ]
    assert [h["kind"] for h in summaries["egov"]["hints"]] == ["link-loss"]
    assert summaries["data"]["hints"] == []
    detail = api.get("/slices/video").json()
    assert detail["hints"][0]["evidence"] == ["4 of 6 paths lost 40%"]
    assert detail["hints"][0]["first_seen_ns"] == T0 * 10**10
    assert api.get("/slices/egov").json()["hints"][0]["slices"] == ["egov", "video"]


def test_slices_have_no_hints_without_root_cause_analysis():
    api = Api()
    lossy_video(api, intervals=1)
    assert all(s["hints"] == [] for s in api.get("/slices").json())
    assert api.get("/slices/video").json()["hints"] == []
