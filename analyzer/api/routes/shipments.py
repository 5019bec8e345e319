"""POST /v1/windows: an agent's shipment of path windows into the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from analyzer.api import models as m
from analyzer.api.auth import WRITE_ERRORS, require_writer
from analyzer.api.bodies import read_body
from analyzer.api.context import ApiContext
from analyzer.store.memory import SOURCE_MISMATCH, IngestResult, WindowStore
from collector.contract.codec import MalformedShipment, ShipmentParser


def router(api: ApiContext) -> APIRouter:
    routes = APIRouter()
    parser = ShipmentParser()

    @routes.post(
        "/v1/windows",
        response_model=m.WindowsAccepted,
        summary="Take an agent's shipment of path windows",
        description="The body is collector/contract/shipment.py's JSON. Windows already received are ignored "
        "(delivery is at least once), so an agent may always send again.",
        responses={
            **WRITE_ERRORS,
            400: {"model": m.Problem, "description": "malformed body; the field is named"},
            413: {"model": m.Problem, "description": "body too large"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": m.ShipmentBody.model_json_schema()}},  # $defs: openapi_doc
            }
        },
    )
    async def post_windows(request: Request) -> m.WindowsAccepted:
        try:
            writer = require_writer(request, api.tokens)
            if writer.site is None and api.tokens.by_site:
                raise HTTPException(403, "this analyzer binds shipments to sites: ship with the site's own token")
            body = await read_body(request, api.max_body_bytes)
            result = await run_in_threadpool(_parse_and_ingest, parser, api.store, body, api.clock, writer.site)
        except HTTPException:
            api.store.note_rejected()
            raise
        return m.WindowsAccepted(**asdict(result))

    return routes


def _parse_and_ingest(
    parser: ShipmentParser, store: WindowStore, body: bytes, clock: Callable[[], int], site: str | None
) -> IngestResult:
    """Decode, bind to the token's `site` (None: the shared token, any site), then ingest."""
    try:
        batch = parser.parse(body)
    except MalformedShipment as exc:
        raise HTTPException(400, f"malformed shipment: {exc}") from None
    if site is None:
        return store.ingest(batch, clock())
    if batch.site != site:
        raise HTTPException(403, f"site: the token is site {site!r}'s; it cannot ship for {batch.site!r}")
    own = tuple(w for w in batch.windows if w.key.source == site)
    foreign = len(batch.windows) - len(own)
    if foreign:
        store.note_refused(SOURCE_MISMATCH, foreign)
    result = store.ingest(replace(batch, windows=own), clock())
    result.refused += foreign
    return result
