"""GET /healthz (analyzer.api.routes.health): the store's figures and the agents seen with their health."""

from __future__ import annotations

from tests.api_support import Api, lossy_video


def test_healthz_shows_store_figures_and_agents_with_their_health():
    api = Api()
    lossy_video(api, intervals=2)
    body = api.get("/healthz").json()
    assert body["status"] == "ok" and body["writes"] is True
    assert body["store"]["windows_ingested"] == 6 and body["store"]["paths"] == 3
    (agent,) = body["agents"]
    assert agent["site"] == "cnty1a" and agent["health"]["sessions"] == 12
