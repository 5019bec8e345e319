"""GET /hints: the root-cause hints, newest first."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query

from analyzer.api import models as m
from analyzer.api.context import ApiContext
from analyzer.rootcause.model import kind_parts


def router(api: ApiContext) -> APIRouter:
    routes = APIRouter()

    @routes.get(
        "/hints",
        response_model=list[m.Hint],
        summary="Root-cause hints, newest first",
        description="From the root-cause analysis, once per closed interval; empty when it does not run.",
        responses={400: {"model": m.Problem, "description": "unknown kind"}},
    )
    def list_hints(
        slice: str | None = Query(None, description="only hints affecting this slice"),
        kind: str | None = Query(
            None,
            description=f"one of: {', '.join(m.HINT_KINDS)} (a kind also matches the hints that name it as one "
            "of two the evidence cannot tell apart)",
        ),
        since: int | None = Query(None, description="only hints last seen at or after this time (ns)"),
    ) -> list[m.Hint]:
        if kind is not None and kind not in m.HINT_KINDS:
            raise HTTPException(400, f"kind: unknown hint kind {kind!r} (kinds are: {', '.join(m.HINT_KINDS)})")
        return sorted(
            (
                h
                for h in api.current_hints()
                if (slice is None or slice in h.slices)
                and (kind is None or h.kind == kind or kind in kind_parts(h.kind))
                and (since is None or h.last_seen_ns >= since)
            ),
            key=lambda h: h.last_seen_ns,
            reverse=True,
        )

    return routes
