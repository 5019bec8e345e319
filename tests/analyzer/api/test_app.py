"""The analyzer API as a whole (analyzer.api.app): one app from the resources' routers, read-only
without a token, invalid input refused with 400 naming the field, the OpenAPI document of every
endpoint, and a restored store behind a new app. Each resource's endpoints are tested beside its
router, in tests/analyzer/api/routes/."""

from __future__ import annotations

import pytest

from analyzer.api.app import create_app
from analyzer.sla.verdicts import default_policies
from analyzer.store.snapshot import restore_snapshot, save_snapshot
from collector.contract.records import PathKey
from tests.analyzer_support import T0, batch, window
from tests.api_support import AUTH, TOKEN, Api, lossy_video


def test_without_a_token_the_analyzer_is_read_only():
    api = Api(token=None)
    refused = api.ship(batch(window(T0)))
    assert refused.status_code == 403 and "--token-file" in refused.json()["detail"]
    assert api.get("/slices").status_code == 200
    assert api.get("/healthz").json()["writes"] is False


def test_invalid_input_is_a_400_naming_the_field_where_fastapi_would_answer_422():
    api = Api()
    query = api.get("/hints", params={"since": "soon"})
    assert query.status_code == 400
    assert query.json()["detail"] == "since: Input should be a valid integer, unable to parse string as an integer"
    body = api.post("/probe", json={"agent": "cnty1a", "slice": "video"}, headers=AUTH)
    assert body.status_code == 400 and body.json()["detail"] == "target: Field required"


def test_the_openapi_document_describes_every_endpoint():
    api = Api(openapi=True)
    document = api.get("/openapi.json").json()
    paths = document["paths"]
    for path, method in [
        ("/v1/windows", "post"),
        ("/probe", "post"),
        ("/slices", "get"),
        ("/slices/{name}", "get"),
        ("/paths", "get"),
        ("/hints", "get"),
        ("/topology", "get"),
        ("/healthz", "get"),
    ]:
        assert paths[path][method]["summary"], path
    body = paths["/v1/windows"]["post"]["requestBody"]["content"]["application/json"]
    assert "windows" in body["schema"]["properties"]
    assert {"400", "401", "403", "413"} <= set(paths["/v1/windows"]["post"]["responses"])
    assert "SliceSummary" in document["components"]["schemas"]
    assert api.get("/docs").status_code == 200


def test_verdicts_survive_a_store_restored_behind_a_new_app(tmp_path):
    api = Api()
    lossy_video(api)
    before = api.get("/slices/video").json()
    save_snapshot(api.store, tmp_path / "state.json")
    again = Api()
    again.store = restore_snapshot(tmp_path / "state.json", default_policies(), catch_up_s=0)
    again.app = create_app(again.store, token=TOKEN, clock=lambda: again.now)
    again.now = api.now
    assert again.get("/slices/video").json() == before
    assert PathKey("cnty1a", "core", "video", "stamp") in again.store.path_keys("video")


def test_the_openapi_document_and_pages_are_off_unless_asked_for():
    api = Api()
    assert [api.get(path).status_code for path in ("/openapi.json", "/docs", "/redoc")] == [404, 404, 404]


READ = "r3ad-t0ken"


@pytest.mark.parametrize("path", ["/slices", "/slices/video", "/paths", "/hints", "/topology", "/healthz", "/metrics"])
def test_with_a_read_token_every_get_needs_it(path):
    api = Api(read_token=READ)
    assert api.get(path).status_code == 401
    wrong = api.get(path, headers={"Authorization": "Bearer r3ad-t0keN"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong bearer token"
    assert api.get(path, headers={"Authorization": f"Bearer {READ}"}).status_code == 200


def test_with_a_read_token_the_openapi_document_needs_it_too_and_writes_keep_their_own_token():
    api = Api(read_token=READ, openapi=True)
    assert api.get("/openapi.json").status_code == 401
    assert api.get("/openapi.json", headers={"Authorization": f"Bearer {READ}"}).status_code == 200
    assert api.ship(batch(window(T0))).status_code == 200  # the write token, not the read token
