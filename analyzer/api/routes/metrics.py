"""GET /metrics: Prometheus scrapes the API's server for the verdicts as metrics, rendered per
scrape (left out of the OpenAPI document)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from analyzer.api.context import ApiContext
from analyzer.exporter import AnalyzerSnapshot, analyzer_registry
from analyzer.insitu.exporter import SegmentCollector
from collector.system.http_limits import RESPONSES_CUT_OFF


def router(api: ApiContext) -> APIRouter:
    routes = APIRouter()
    store = api.store

    def snapshot() -> AnalyzerSnapshot:
        return AnalyzerSnapshot(
            verdicts=[v for v in store.slice_verdicts(api.clock()) if v is not None],
            counters=store.stats(),
            hints=list(api.hints()) if api.hints is not None else [],
            errors=api.errors.counts(),
            bus=api.bus_link(),
            responses_cut_off=RESPONSES_CUT_OFF.total,
        )

    registry = analyzer_registry(snapshot)
    registry.register(SegmentCollector(store.segments))

    @routes.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return routes
