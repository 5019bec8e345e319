"""POST /v1/windows (analyzer.api.routes.shipments): a shipment taken and counted once, the token
it needs, and every refusal naming its reason: the field, the JSON, the size."""

from __future__ import annotations

import json

import pytest

from collector.contract.codec import encode_body
from tests.analyzer_support import T0, batch, window
from tests.api_support import AUTH, Api


def test_a_shipment_is_taken_and_counted_and_a_resend_is_not():
    api = Api()
    shipment = batch(window(T0), window(T0, target="edge"))
    first = api.ship(shipment)
    assert first.status_code == 200
    assert first.json() == {
        "accepted": 2,
        "duplicates": 0,
        "stale": 0,
        "late": 0,
        "future": 0,
        "refused": 0,
        "observations": 0,
        "health": False,
    }
    assert api.ship(shipment).json()["duplicates"] == 2


def test_writes_need_the_bearer_token():
    api = Api()
    missing = api.ship(batch(window(T0)), headers={})
    assert missing.status_code == 401 and "missing bearer token" in missing.json()["detail"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = api.ship(batch(window(T0)), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong bearer token"
    assert api.store.stats()["windows_ingested"] == 0 and api.store.stats()["batches_rejected"] == 2


@pytest.mark.parametrize(
    "mutate, field",
    [
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
    ],
)
def test_a_malformed_shipment_is_refused_naming_the_field(mutate, field):
    api = Api()
    body = json.loads(encode_body(batch(window(T0), window(T0, target="edge"))))
    mutate(body)
    response = api.post("/v1/windows", content=json.dumps(body), headers=AUTH)
    assert response.status_code == 400
    assert f"malformed shipment: {field}:" in response.json()["detail"]


def test_a_body_that_is_not_json_is_refused():
    api = Api()
    response = api.post("/v1/windows", content=b"\x00garbage", headers=AUTH)
    assert response.status_code == 400 and "not JSON" in response.json()["detail"]


def test_a_body_over_the_limit_is_refused_with_413():
    api = Api(max_body_bytes=2000)
    response = api.ship(batch(*(window(T0, target=f"t{i}") for i in range(10))))
    assert response.status_code == 413 and "over the limit of 2000 bytes" in response.json()["detail"]


def test_fields_a_newer_agent_added_are_ignored():
    api = Api()
    body = json.loads(encode_body(batch(window(T0))))
    body["windows"][0]["next_year_field"] = 1
    body["future"] = True
    assert api.post("/v1/windows", content=json.dumps(body), headers=AUTH).json()["accepted"] == 1


@pytest.mark.parametrize(
    "body, reason",
    [
        (b'{"site": "cnty1a", "windows": [], "created_ns": ' + b"7" * 4_301 + b"}", "not JSON this analyzer takes"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
    ],
)
def test_json_python_cannot_take_is_400_not_500(body, reason):
    response = Api().post("/v1/windows", content=body, headers=AUTH)
    assert response.status_code == 400 and reason in response.json()["detail"]


def test_a_refused_batch_changes_nothing_and_its_corrected_retry_is_taken():
    api = Api()
    good, bad = window(T0), window(T0, target="edge")
    body = json.loads(encode_body(batch(good, bad)))
    body["windows"][1]["rtt_buckets"][3] = 10**309  # once closed, a float of it overflowed
    response = api.post("/v1/windows", content=json.dumps(body), headers=AUTH)
    assert response.status_code == 400 and "windows[1].rtt_buckets" in response.json()["detail"]
    assert api.store.stats()["windows_ingested"] == 0 and api.store.path_keys() == []
    retry = api.ship(batch(good, bad))
    assert retry.json()["accepted"] == 2 and retry.json()["duplicates"] == 0


def test_windows_at_every_bound_close_into_verdicts_without_overflow():
    from collector.contract.codec import MAX_COUNT
    from tests.analyzer_support import W

    api = Api()
    for seq in range(T0, T0 + 4):
        body = json.loads(encode_body(batch(*(window(seq, target=f"t{i}") for i in range(3)))))
        for w in body["windows"]:
            w.update(sent=MAX_COUNT, received=MAX_COUNT, rtt_sum_ns=2**63 - 1, rtt_p99_ns=2**63 - 1)
            w["rtt_buckets"] = [0] * 12 + [MAX_COUNT]
        api.now = (seq + 3) * W
        assert api.post("/v1/windows", content=json.dumps(body), headers=AUTH).status_code == 200
    assert api.get("/slices/video").json()["verdict"]["status"] in ("ok", "at-risk", "breached")
    assert api.get("/metrics").status_code == 200


# -- per-site tokens: a site ships only its own paths ------------------------------------------

SITE_TOKENS = {"cnty1a": "cnty1a-token-0123456789", "cnty2a": "cnty2a-token-0123456789"}


def as_site(site: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SITE_TOKENS[site]}"}


def test_a_site_token_takes_its_own_paths_and_refuses_and_counts_another_sites():
    api = Api(site_tokens=SITE_TOKENS)
    forged = batch(window(T0), window(T0, source="cnty2a", target="edge"))
    response = api.ship(forged, headers=as_site("cnty1a"))
    assert response.status_code == 200 and (response.json()["accepted"], response.json()["refused"]) == (1, 1)
    assert api.store.refused_counts()["source-mismatch"] == 1
    assert [k.source for k in api.store.path_keys()] == ["cnty1a"]
    assert 'xnet_analyzer_windows_refused_total{reason="source-mismatch"} 1.0' in api.get("/metrics").text


def test_a_site_token_cannot_ship_a_batch_in_another_sites_name():
    api = Api(site_tokens=SITE_TOKENS)
    response = api.ship(batch(window(T0, source="cnty2a"), site="cnty2a"), headers=as_site("cnty1a"))
    assert response.status_code == 403 and "the token is site 'cnty1a''s" in response.json()["detail"]
    assert api.store.path_keys() == []


def test_with_site_tokens_the_shared_token_no_longer_ships():
    api = Api(site_tokens=SITE_TOKENS)
    response = api.ship(batch(window(T0)))
    assert response.status_code == 403 and "ship with the site's own token" in response.json()["detail"]


def test_a_far_future_sequence_cannot_make_later_real_windows_stale():
    api = Api(site_tokens=SITE_TOKENS)
    body = json.loads(encode_body(batch(window(T0))))
    body["windows"][0]["seq"] = T0 + 8_640  # a day ahead, in a window of now
    response = api.post("/v1/windows", content=json.dumps(body), headers=as_site("cnty1a"))
    assert response.status_code == 400 and "windows[0].seq" in response.json()["detail"]
    ahead = api.post("/v1/windows", content=encode_body(batch(window(T0 + 8_640))), headers=as_site("cnty1a"))
    assert ahead.json()["future"] == 1  # its time is a day ahead too: refused as future
    later = api.ship(batch(window(T0 + 1)), headers=as_site("cnty1a")).json()
    assert (later["accepted"], later["stale"]) == (1, 0)
