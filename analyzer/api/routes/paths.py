"""GET /paths: paths with their verdicts, newest window and fingerprint."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query

from analyzer.api import models as m
from analyzer.api.context import ApiContext
from analyzer.api.views import listed, path_detail


def router(api: ApiContext) -> APIRouter:
    routes = APIRouter()
    store = api.store

    @routes.get(
        "/paths",
        response_model=m.PathList,
        summary="Paths with their verdicts, newest window and fingerprint",
        responses={400: {"model": m.Problem, "description": "unknown filter value; the known ones are listed"}},
    )
    def list_paths(
        slice: str | None = Query(None, description="only this slice"),
        src: str | None = Query(None, description="only paths probed from this site"),
        dst: str | None = Query(None, description="only paths to this target"),
        limit: int = Query(1000, ge=1, le=100_000, description="at most this many paths"),
    ) -> m.PathList:
        keys = store.path_keys()
        for label, value, names in (
            ("slice", slice, store.slice_names()),
            ("src", src, {k.source for k in keys}),
            ("dst", dst, {k.target for k in keys}),
        ):
            if value is not None and value not in names:
                raise HTTPException(400, f"{label}: no path has {label} {value!r} (known: {listed(names) or 'none'})")
        chosen = sorted(
            (
                k
                for k in keys
                if (slice is None or k.slice == slice)
                and (src is None or k.source == src)
                and (dst is None or k.target == dst)
            ),
            key=lambda k: (k.slice, k.source, k.target, k.kind),
        )
        now = api.clock()
        shown = chosen[:limit]
        judged = store.path_verdicts(shown, now)  # every verdict in one pass
        return m.PathList(total=len(chosen), paths=[path_detail(store, k, now, judged[k]) for k in shown])

    return routes
