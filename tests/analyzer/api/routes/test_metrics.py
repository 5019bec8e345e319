"""GET /metrics (analyzer.api.routes.metrics): the verdicts and intake counters for Prometheus."""

from __future__ import annotations

from tests.api_support import Api


def test_metrics_are_served_beside_the_api():
    """The analyzer's /metrics renders the slice verdicts and intake counters."""
    api = Api()
    response = api.get("/metrics")
    assert response.status_code == 200
    assert "xnet_analyzer_windows_ingested_total 0.0" in response.text
    assert "# HELP xnet_slice_state" in response.text
