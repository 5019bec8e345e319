"""GET /metrics (analyzer.api.routes.metrics): the verdicts and intake counters for Prometheus."""

from __future__ import annotations

from analyzer.exporter import BusLink
from tests.api_support import Api


def test_metrics_are_served_beside_the_api():
    """The analyzer's /metrics renders the slice verdicts and intake counters."""
    api = Api()
    response = api.get("/metrics")
    assert response.status_code == 200
    assert "xnet_analyzer_windows_ingested_total 0.0" in response.text
    assert "# HELP xnet_slice_state" in response.text


def test_metrics_show_the_bus_intakes_connection_when_there_is_one():
    assert "xnet_analyzer_bus_connected" not in Api().get("/metrics").text  # no bus: nothing to show
    link = [BusLink(True, 0)]
    api = Api(bus_link=lambda: link[0])
    assert "xnet_analyzer_bus_connected 1.0" in api.get("/metrics").text
    link[0] = BusLink(False, 1)
    text = api.get("/metrics").text
    assert "xnet_analyzer_bus_connected 0.0" in text and "xnet_analyzer_bus_disconnections_total 1.0" in text
