"""GET /slices/{name}/history: the slice's verdicts over the last hour, 6 hours or day, for the
console's charts (analyzer.slice_history; 503 where the analyzer keeps none)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Query

from analyzer.api import models as m
from analyzer.api.context import ApiContext
from analyzer.api.views import listed

RANGES_S = {"1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}


def router(api: ApiContext) -> APIRouter:
    routes = APIRouter()
    store = api.store

    @routes.get(
        "/slices/{name}/history",
        response_model=m.SliceHistory,
        summary="One slice's status, budget, burn rates and objectives over a range",
        responses={
            400: {"model": m.Problem, "description": "unknown range (1h, 6h or 24h)"},
            404: {"model": m.Problem, "description": "unknown slice; the known ones are listed"},
            503: {"model": m.Problem, "description": "this analyzer keeps no history"},
        },
    )
    def get_history(
        name: str, range: Literal["1h", "6h", "24h"] = Query("1h", description="how far back")
    ) -> m.SliceHistory:
        known = store.slice_names()
        if name not in known:
            raise HTTPException(404, f"unknown slice {name!r} (slices are: {listed(known) or 'none yet'})")
        if api.history is None:
            raise HTTPException(503, "this analyzer keeps no history of its verdicts")
        since = api.clock() - RANGES_S[range] * 1_000_000_000
        return m.SliceHistory(
            name=name,
            range=range,
            step_s=api.history.step_ns / 1e9,
            points=[
                m.SliceHistoryPoint(
                    at_ns=p.at_ns,
                    status=p.status,
                    error_budget_remaining=p.error_budget_remaining,
                    burn_rates=dict(p.burn_rates),
                    observed=dict(p.observed),
                )
                for p in api.history.points(name, since)
            ],
        )

    return routes
