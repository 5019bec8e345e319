"""The analyzer API through the real app (httpx's ASGI transport): every endpoint, the
refusals and their reasons, and the OpenAPI document."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from analyzer.api.app import create_app
from analyzer.sla.verdicts import default_policies
from analyzer.store.memory import WindowStore
from analyzer.store.snapshot import restore_snapshot, save_snapshot
from collector.contract.codec import encode_body
from collector.contract.records import PathKey
from tests.analyzer_support import T0, batch, health, observation, settled, window

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Api:
    """Calls the app in-process; `now` is the analyzer's clock."""

    def __init__(self, token: str | None = TOKEN, prober=None, hints=None, **options) -> None:
        self.now = settled(T0)
        self.store = WindowStore(default_policies(), catch_up_s=0)
        self.app = create_app(self.store, token=token, prober=prober, hints=hints, clock=lambda: self.now, **options)

    def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://analyzer") as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(call())

    def get(self, url: str, **kwargs) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def ship(self, shipment, *, headers=AUTH) -> httpx.Response:
        self.now = settled(max((w.seq for w in shipment.windows), default=T0))
        return self.post("/v1/windows", content=encode_body(shipment), headers=headers)


def lossy_video(api: Api, intervals: int = 8) -> None:
    """`intervals` intervals: video core path losing 80%, video edge path clean, egov clean."""
    for seq in range(T0, T0 + intervals):
        response = api.ship(batch(window(seq, lost=8), window(seq, target="edge", p99_ns=9_000_000),
                                  window(seq, slice_="egov"), observations=(observation(),), health=health()))
        assert response.status_code == 200, response.text


@pytest.fixture
def api() -> Api:
    return Api()


# -- POST /v1/windows --------------------------------------------------------------------


def test_a_shipment_is_taken_and_counted_and_a_resend_is_not(api):
    shipment = batch(window(T0), window(T0, target="edge"))
    first = api.ship(shipment)
    assert first.status_code == 200
    assert first.json() == {"accepted": 2, "duplicates": 0, "stale": 0, "late": 0, "future": 0, "observations": 0,
                            "health": False}
    assert api.ship(shipment).json()["duplicates"] == 2


def test_writes_need_the_bearer_token(api):
    missing = api.ship(batch(window(T0)), headers={})
    assert missing.status_code == 401 and "missing bearer token" in missing.json()["detail"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = api.ship(batch(window(T0)), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong bearer token"
    assert api.store.stats()["windows_ingested"] == 0 and api.store.stats()["batches_rejected"] == 2


def test_without_a_token_the_analyzer_is_read_only():
    api = Api(token=None)
    refused = api.ship(batch(window(T0)))
    assert refused.status_code == 403 and "--token-file" in refused.json()["detail"]
    assert api.get("/slices").status_code == 200
    assert api.get("/healthz").json()["writes"] is False


@pytest.mark.parametrize("mutate, field", [
    (lambda b: b.pop("site"), "site"),
    (lambda b: b["windows"][1].pop("sent"), "windows[1].sent"),
    (lambda b: b["windows"][0].update(sent="ten"), "windows[0].sent"),
    (lambda b: b["windows"][0].update(received=-1), "windows[0].received"),
    (lambda b: b["windows"][0].update(rtt_buckets=[1, 2]), "windows[0].rtt_buckets"),
    (lambda b: b["windows"][0]["key"].pop("slice"), "windows[0].key.slice"),
    (lambda b: b["windows"][0].update(end_ns=0), "windows[0].end_ns"),
    (lambda b: b.update(windows={}), "windows"),
    (lambda b: b.update(health={"site": "x"}), "health.observed_ns"),
    (lambda b: b.update(observations=[{"source": 1}]), "observations[0].target"),
])
def test_a_malformed_shipment_is_refused_naming_the_field(api, mutate, field):
    body = json.loads(encode_body(batch(window(T0), window(T0, target="edge"))))
    mutate(body)
    response = api.post("/v1/windows", content=json.dumps(body), headers=AUTH)
    assert response.status_code == 400
    assert f"malformed shipment: {field}:" in response.json()["detail"]


def test_a_body_that_is_not_json_is_refused(api):
    response = api.post("/v1/windows", content=b"\x00garbage", headers=AUTH)
    assert response.status_code == 400 and "not JSON" in response.json()["detail"]


def test_a_body_over_the_limit_is_refused_with_413():
    api = Api(max_body_bytes=2000)
    response = api.ship(batch(*(window(T0, target=f"t{i}") for i in range(10))))
    assert response.status_code == 413 and "over the limit of 2000 bytes" in response.json()["detail"]


def test_fields_a_newer_agent_added_are_ignored(api):
    body = json.loads(encode_body(batch(window(T0))))
    body["windows"][0]["next_year_field"] = 1
    body["future"] = True
    assert api.post("/v1/windows", content=json.dumps(body), headers=AUTH).json()["accepted"] == 1


# -- reads -------------------------------------------------------------------------------


def test_slices_lists_every_policy_slice_with_status_budget_and_worst_path(api):
    lossy_video(api)
    slices = {s["name"]: s for s in api.get("/slices").json()}
    assert set(slices) == {"video", "egov", "data", "best-effort"}
    video = slices["video"]
    assert video["status"] == "breached" and video["paths"] == 2
    assert video["error_budget_remaining"] < 1 and "1h" in video["burn_rates"]
    assert video["worst_path"]["path"]["target"] == "core" and video["worst_path"]["latest"]["loss_ratio"] == 0.8
    assert slices["egov"]["status"] == "ok" and slices["data"]["status"] == "no-data"


def test_a_slice_without_policy_reads_no_policy(api):
    api.ship(batch(window(T0, slice_="lab-experiment")))
    (entry,) = [s for s in api.get("/slices").json() if s["name"] == "lab-experiment"]
    assert entry["status"] == "no-policy" and entry["paths"] == 1
    detail = api.get("/slices/lab-experiment").json()
    assert detail["verdict"]["status"] == "no-policy" and "no SLA policy" in detail["verdict"]["reason"]


def test_one_slice_shows_its_objectives_and_worst_paths(api):
    lossy_video(api)
    detail = api.get("/slices/video").json()
    objectives = {o["name"]: o for o in detail["verdict"]["objectives"]}
    assert objectives["two-way-packet-loss"]["observed"] == pytest.approx(0.4)
    assert objectives["two-way-packet-loss"]["met"] is False
    assert [p["path"]["target"] for p in detail["worst_by_loss"]] == ["core"]
    assert [p["path"]["target"] for p in detail["worst_by_p99"]] == ["edge", "core"]


def test_an_unknown_slice_is_404_with_the_known_names(api):
    response = api.get("/slices/vidoe")
    assert response.status_code == 404
    assert response.json()["detail"] == "unknown slice 'vidoe' (slices are: best-effort, data, egov, video)"


def test_paths_filter_and_carry_verdict_window_and_fingerprint(api):
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


@pytest.mark.parametrize("params, reason", [
    ({"slice": "vidoe"}, "slice: no path has slice 'vidoe' (known: best-effort, data, egov, video)"),
    ({"src": "nowhere"}, "src: no path has src 'nowhere' (known: cnty1a)"),
    ({"dst": "mars"}, "dst: no path has dst 'mars' (known: core, edge)"),
    ({"limit": 0}, "limit: Input should be greater than or equal to 1"),
])
def test_unknown_path_filters_are_400_with_the_known_values(api, params, reason):
    lossy_video(api, intervals=1)
    response = api.get("/paths", params=params)
    assert response.status_code == 400 and response.json()["detail"] == reason


def test_hints_are_empty_until_the_root_cause_analysis_fills_them(api):
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


def test_topology_links_consecutive_hops_and_names_the_paths_over_them(api):
    api.ship(batch(window(T0), observations=(
        observation(hops=("fd00::a", None, "fd00::1")),
        observation(target="edge", hops=("fd00::a", "fd00::e")),
    )))
    topology = api.get("/topology").json()
    assert topology["observations"] == 2
    roles = {n["id"]: n["role"] for n in topology["nodes"]}
    assert roles == {"cnty1a": "site", "fd00::a": "router", "fd00::1": "target", "fd00::e": "target"}
    links = {(link["a"], link["b"]): link for link in topology["links"]}
    assert set(links) == {("cnty1a", "fd00::a"), ("fd00::a", "fd00::1"), ("fd00::a", "fd00::e")}
    assert links[("fd00::a", "fd00::1")]["hidden_hops"] == 1
    assert [p["target"] for p in links[("cnty1a", "fd00::a")]["paths"]] == ["core", "edge"]


def test_healthz_shows_store_figures_and_agents_with_their_health(api):
    lossy_video(api, intervals=2)
    body = api.get("/healthz").json()
    assert body["status"] == "ok" and body["writes"] is True
    assert body["store"]["windows_ingested"] == 6 and body["store"]["paths"] == 3
    (agent,) = body["agents"]
    assert agent["site"] == "cnty1a" and agent["health"]["sessions"] == 12


# -- POST /probe -------------------------------------------------------------------------

PROBE = {"agent": "cnty1a", "target": "fd00::1", "kind": "stamp", "slice": "video", "count": 5}


def test_probe_runs_the_prober_when_there_is_one():
    seen = []

    def prober(request):
        seen.append(request)
        return {"sent": request.count, "received": request.count}

    api = Api(prober=prober)
    response = api.post("/probe", json=PROBE, headers=AUTH)
    assert response.status_code == 200 and response.json()["result"] == {"sent": 5, "received": 5}
    assert seen[0].target == "fd00::1"


def test_probe_accepts_an_async_prober_and_reports_its_refusal():
    async def prober(request):
        raise ValueError(f"no agent named {request.agent!r} here")

    response = Api(prober=prober).post("/probe", json=PROBE, headers=AUTH)
    assert response.status_code == 400 and response.json()["detail"] == "no agent named 'cnty1a' here"


def test_probe_without_a_prober_is_503(api):
    response = api.post("/probe", json=PROBE, headers=AUTH)
    assert response.status_code == 503 and "no agent can run probes from this analyzer" in response.json()["detail"]


def test_probe_needs_the_token(api):
    assert api.post("/probe", json=PROBE).status_code == 401


@pytest.mark.parametrize("change, reason", [
    ({"target": "core.example"}, "target: Value error, 'core.example' is not an IP address"),
    ({"kind": "udp"}, "kind: Input should be 'stamp' or 'icmp'"),
    ({"count": 0}, "count: Input should be greater than or equal to 1"),
    ({"slice": "vidoe"}, "slice: unknown slice 'vidoe' (slices are: best-effort, data, egov, video)"),
    ({"extra": 1}, "extra: Extra inputs are not permitted"),
])
def test_bad_probe_requests_are_400_naming_the_field(change, reason):
    api = Api(prober=lambda request: {})
    response = api.post("/probe", json={**PROBE, **change}, headers=AUTH)
    assert response.status_code == 400 and response.json()["detail"] == reason


# -- OpenAPI -----------------------------------------------------------------------------


def test_the_openapi_document_describes_every_endpoint(api):
    document = api.get("/openapi.json").json()
    paths = document["paths"]
    for path, method in [("/v1/windows", "post"), ("/probe", "post"), ("/slices", "get"), ("/slices/{name}", "get"),
                         ("/paths", "get"), ("/hints", "get"), ("/topology", "get"), ("/healthz", "get")]:
        assert paths[path][method]["summary"], path
    body = paths["/v1/windows"]["post"]["requestBody"]["content"]["application/json"]
    assert "windows" in body["schema"]["properties"]
    assert {"400", "401", "403", "413"} <= set(paths["/v1/windows"]["post"]["responses"])
    assert "SliceSummary" in document["components"]["schemas"]
    assert api.get("/docs").status_code == 200


def test_verdicts_survive_a_store_restored_behind_a_new_app(api, tmp_path):
    lossy_video(api)
    before = api.get("/slices/video").json()
    save_snapshot(api.store, tmp_path / "state.json")
    again = Api()
    again.store = restore_snapshot(tmp_path / "state.json", default_policies(), catch_up_s=0)
    again.app = create_app(again.store, token=TOKEN, clock=lambda: again.now)
    again.now = api.now
    assert again.get("/slices/video").json() == before
    assert PathKey("cnty1a", "core", "video", "stamp") in again.store.path_keys("video")


def test_metrics_are_served_beside_the_api():
    """The analyzer's /metrics renders the slice verdicts and intake counters."""
    import asyncio

    import httpx

    from analyzer.api.app import create_app
    from analyzer.sla.verdicts import default_policies
    from analyzer.store.memory import WindowStore

    store = WindowStore(default_policies(), interval_s=10)
    app = create_app(store, token=None)

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://analyzer") as client:
            return await client.get("/metrics")

    response = asyncio.run(get())
    assert response.status_code == 200
    assert "xnet_analyzer_windows_ingested_total 0.0" in response.text
    assert "# HELP xnet_slice_state" in response.text


def test_slices_carry_the_hints_that_affect_them_most_confident_first():
    from analyzer.rootcause.hints import HintTracker
    from analyzer.rootcause.model import Diagnosis

    tracker = HintTracker()
    tracker.update([Diagnosis("link-loss", ("prov2>city2a",), ("egov", "video"), 0.9, ("4 of 6 paths lost 40%",)),
                    Diagnosis("latency-shift", ("core>prov1",), ("video",), 0.6)], T0 * 10**10)
    api = Api(hints=tracker.hints)
    lossy_video(api, intervals=2)
    summaries = {s["name"]: s for s in api.get("/slices").json()}
    assert [(h["kind"], h["suspects"]) for h in summaries["video"]["hints"]] == [
        ("link-loss", ["prov2>city2a"]), ("latency-shift", ["core>prov1"])]
    assert [h["kind"] for h in summaries["egov"]["hints"]] == ["link-loss"]
    assert summaries["data"]["hints"] == []
    detail = api.get("/slices/video").json()
    assert detail["hints"][0]["evidence"] == ["4 of 6 paths lost 40%"]
    assert detail["hints"][0]["first_seen_ns"] == T0 * 10**10
    assert api.get("/slices/egov").json()["hints"][0]["slices"] == ["egov", "video"]


def test_slices_have_no_hints_without_root_cause_analysis(api):
    lossy_video(api, intervals=1)
    assert all(s["hints"] == [] for s in api.get("/slices").json())
    assert api.get("/slices/video").json()["hints"] == []
