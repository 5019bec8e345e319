"""GET /segments: totals and blocks from marked blocks shipped with windows, filtered."""

from __future__ import annotations

from dataclasses import replace

from collector.contract.codec import encode_body
from tests.analyzer.insitu.insitu_support import path_blocks
from tests.analyzer_support import T0, batch, window
from tests.api_support import AUTH, Api


def shipped(api: Api, blocks) -> None:
    body = encode_body(replace(batch(window(T0)), marked_blocks=tuple(blocks)))
    assert api.post("/v1/windows", content=body, headers=AUTH).status_code == 200


def test_segments_from_shipped_blocks_filtered_by_slice_flow_and_link():
    api = Api()
    shipped(api, path_blocks([[100, 100], [100, 99], [100, 99], [100, 99]], flow=1))
    shipped(api, path_blocks([[10], [10], [10], [10]], flow=2, slice_name="egov"))
    answer = api.get("/segments", params={"slice": "video", "link": "cnty1a>city1a"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(s["segment"], s["kind"], s["lost"], s["packets"]) for s in body["segments"]] == [
        ("cnty1a>city1a", "link", 1, 200)
    ]
    assert [b["lost"] for b in body["blocks"]] == [0, 1]
    assert {b["flow_mon_id"] for b in api.get("/segments", params={"flow": 2}).json()["blocks"]} == {2}
    everything = api.get("/segments").json()
    assert {s["slice"] for s in everything["segments"]} == {"video", "egov"}
    assert api.get("/segments", params={"flow": 1 << 20}).status_code == 400
