"""GET /paths (analyzer.api.routes.paths): the filters, what each path carries, and unknown filter
values refused with the known ones."""

from __future__ import annotations

import pytest

from tests.analyzer_support import T0, observation
from tests.api_support import Api, lossy_video


def test_paths_filter_and_carry_verdict_window_and_fingerprint():
    api = Api()
    lossy_video(api)
    every = api.get("/paths").json()
    assert every["total"] == 3
    video = api.get("/paths", params={"slice": "video", "dst": "core"}).json()
    (path,) = video["paths"]
    assert path["path"] == {"source": "cnty1a", "target": "core", "slice": "video", "kind": "stamp"}
    assert path["verdict"]["status"] == "breached" and path["latest"]["seq"] == T0 + 7
    assert path["fingerprint"] == observation().fingerprint and path["traced_ns"] == observation().observed_ns
    assert api.get("/paths", params={"src": "cnty1a", "limit": 1}).json()["total"] == 3
    assert len(api.get("/paths", params={"src": "cnty1a", "limit": 1}).json()["paths"]) == 1


@pytest.mark.parametrize(
    "params, reason",
    [
        ({"slice": "vidoe"}, "slice: no path has slice 'vidoe' (known: best-effort, data, egov, video)"),
        ({"src": "nowhere"}, "src: no path has src 'nowhere' (known: cnty1a)"),
        ({"dst": "mars"}, "dst: no path has dst 'mars' (known: core, edge)"),
        ({"limit": 0}, "limit: Input should be greater than or equal to 1"),
    ],
)
def test_unknown_path_filters_are_400_with_the_known_values(params, reason):
    api = Api()
    lossy_video(api, intervals=1)
    response = api.get("/paths", params=params)
    assert response.status_code == 400 and response.json()["detail"] == reason
