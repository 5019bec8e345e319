"""POST /probe (analyzer.api.routes.probe): the prober run, sync or async, its refusal, no prober,
the token, and bad requests refused naming the field."""

from __future__ import annotations

import pytest

from tests.analyzer_support import T0, batch, window
from tests.api_support import AUTH, Api

ALLOWED = ("fd00::/64",)  # the test probes' target, fd00::1, inside
PROBE = {"agent": "cnty1a", "target": "fd00::1", "kind": "stamp", "slice": "video", "count": 5}


def test_probe_runs_the_prober_when_there_is_one():
    seen = []

    def prober(request):
        seen.append(request)
        return {"sent": request.count, "received": request.count}

    api = Api(prober=prober, probe_targets=ALLOWED)
    response = api.post("/probe", json=PROBE, headers=AUTH)
    assert response.status_code == 200 and response.json()["result"] == {"sent": 5, "received": 5}
    assert seen[0].target == "fd00::1"


def test_a_trace_is_asked_of_the_prober_and_its_report_answered():
    def prober(request):
        return {"trace": {"kind": request.kind, "rounds": request.count}}

    api = Api(prober=prober, probe_targets=ALLOWED)
    response = api.post("/probe", json={**PROBE, "kind": "trace", "count": 3}, headers=AUTH)
    assert response.status_code == 200 and response.json()["result"] == {"trace": {"kind": "trace", "rounds": 3}}
    assert response.json()["request"]["kind"] == "trace"


def test_probe_accepts_an_async_prober_and_reports_its_refusal():
    async def prober(request):
        raise ValueError(f"no agent named {request.agent!r} here")

    response = Api(prober=prober, probe_targets=ALLOWED).post("/probe", json=PROBE, headers=AUTH)
    assert response.status_code == 400 and response.json()["detail"] == "no agent named 'cnty1a' here"


def test_probe_without_a_prober_is_503():
    api = Api()
    response = api.post("/probe", json=PROBE, headers=AUTH)
    assert response.status_code == 503 and "no agent can run probes from this analyzer" in response.json()["detail"]


def test_probe_needs_the_token():
    api = Api()
    assert api.post("/probe", json=PROBE).status_code == 401


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"target": "core.example"}, "target: Value error, 'core.example' is not an IP address"),
        ({"kind": "udp"}, "kind: Input should be 'stamp', 'icmp' or 'trace'"),
        ({"count": 0}, "count: Input should be greater than or equal to 1"),
        ({"slice": "vidoe"}, "slice: unknown slice 'vidoe' (slices are: best-effort, data, egov, video)"),
        ({"extra": 1}, "extra: Extra inputs are not permitted"),
    ],
)
def test_bad_probe_requests_are_400_naming_the_field(change, reason):
    api = Api(prober=lambda request: {}, probe_targets=ALLOWED)
    response = api.post("/probe", json={**PROBE, **change}, headers=AUTH)
    assert response.status_code == 400 and response.json()["detail"] == reason


def test_probes_need_the_operators_token_not_a_sites():
    site_token = "cnty1a-token-0123456789"
    api = Api(prober=lambda request: {}, site_tokens={"cnty1a": site_token}, probe_targets=ALLOWED)
    response = api.post("/probe", json=PROBE, headers={"Authorization": f"Bearer {site_token}"})
    assert response.status_code == 403 and "probes need the operator's shared token" in response.json()["detail"]
    assert api.post("/probe", json=PROBE, headers=AUTH).status_code == 200


def test_only_an_agents_target_or_an_allowed_address_is_probed():
    api = Api(prober=lambda request: {"probed": request.target})
    refused = api.post("/probe", json={**PROBE, "target": "2001:db8::66"}, headers=AUTH)
    assert refused.status_code == 403 and "2001:db8::66 is not a target of any agent here" in refused.json()["detail"]
    assert api.post("/probe", json=PROBE, headers=AUTH).status_code == 403  # no agent has reported fd00::1 yet
    api.ship(batch(window(T0)))  # an agent probes fd00::1 (its window says so)
    assert api.post("/probe", json=PROBE, headers=AUTH).json()["result"] == {"probed": "fd00::1"}
    allowed = Api(prober=lambda request: {}, probe_targets=["2001:db8::/32"])
    assert allowed.post("/probe", json={**PROBE, "target": "2001:db8::66"}, headers=AUTH).status_code == 200
