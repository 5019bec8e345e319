"""GET /hints (analyzer.api.routes.hints): empty without root-cause analysis, newest first, and
filtered by slice, kind and time."""

from __future__ import annotations

from tests.api_support import Api


def test_hints_are_empty_until_the_root_cause_analysis_fills_them():
    api = Api()
    assert api.get("/hints").json() == []


def test_hints_filter_by_slice_kind_and_time():
    class FakeHint:
        def __init__(self, kind, slices, last):
            self.kind, self.slices, self.last_seen_ns = kind, slices, last
            self.suspects, self.confidence, self.evidence, self.first_seen_ns = ["a>b"], 0.8, ["core loss 80%"], 1

    api = Api(hints=lambda: [FakeHint("link-loss", ["video"], 5), FakeHint("congestion", ["egov"], 9)])
    assert [h["kind"] for h in api.get("/hints").json()] == ["congestion", "link-loss"]
    assert [h["kind"] for h in api.get("/hints", params={"slice": "video"}).json()] == ["link-loss"]
    assert [h["kind"] for h in api.get("/hints", params={"kind": "congestion"}).json()] == ["congestion"]
    assert api.get("/hints", params={"since": 6}).json()[0]["kind"] == "congestion"
    bad = api.get("/hints", params={"kind": "gremlins"})
    assert bad.status_code == 400 and "unknown hint kind 'gremlins'" in bad.json()["detail"]


def test_a_hint_naming_two_kinds_the_evidence_cannot_tell_apart_matches_either_kind():
    class FakeHint:
        def __init__(self, kind, last):
            self.kind, self.slices, self.last_seen_ns = kind, ["best-effort"], last
            self.suspects, self.confidence, self.evidence, self.first_seen_ns = ["a>b"], 0.8, ["loss 5%"], 1

    api = Api(hints=lambda: [FakeHint("congestion|slice-isolation", 5), FakeHint("link-loss", 9)])
    for kind in ("congestion", "slice-isolation", "congestion|slice-isolation"):
        assert [h["kind"] for h in api.get("/hints", params={"kind": kind}).json()] == ["congestion|slice-isolation"]
