"""GET /slices/{name}/history (analyzer.api.routes.history): the points of the chosen range,
404 for an unknown slice, 400 for an unknown range, 503 without a history."""

from __future__ import annotations

from analyzer.slice_history import SliceHistory
from tests.analyzer_support import T0, batch, window
from tests.api_support import Api

S = 1_000_000_000


def test_the_history_answers_the_points_of_the_range_oldest_first():
    history = SliceHistory(step_s=1)
    api = Api(history=history)
    api.ship(batch(window(T0, lost=5)))
    verdicts = api.store.slice_verdict_map(api.now)
    for hours_ago in (30, 5, 0.5, 0):
        history.record(api.now - int(hours_ago * 3600 * S), verdicts)
    answer = api.get("/slices/video/history", params={"range": "6h"}).json()
    assert answer["name"] == "video" and answer["range"] == "6h" and answer["step_s"] >= 1
    ages = [round((api.now - p["at_ns"]) / 3600 / S, 1) for p in answer["points"]]
    assert ages == [5.0, 0.5, 0.0]
    point = answer["points"][-1]
    assert point["status"] == verdicts["video"].status
    assert set(point["burn_rates"]) == {label for label, _ in verdicts["video"].burn_rates}
    assert point["observed"] == {o.name: o.observed for o in verdicts["video"].objectives}
    assert len(api.get("/slices/video/history").json()["points"]) == 2  # 1h by default


def test_bad_requests_are_named():
    api = Api(history=SliceHistory(step_s=1))
    api.ship(batch(window(T0)))
    assert "slices are:" in api.get("/slices/nope/history").json()["detail"]
    assert api.get("/slices/video/history", params={"range": "2d"}).status_code == 400
    assert Api().get("/slices/video/history").status_code in (404, 503)
    no_history = Api()
    no_history.ship(batch(window(T0)))
    assert no_history.get("/slices/video/history").status_code == 503
