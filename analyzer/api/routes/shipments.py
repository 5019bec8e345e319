"""POST /v1/windows: an agent's shipment of path windows into the store."""

from __future__ import annotations

from dataclasses import asdict, replace

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from analyzer.api import models as m
from analyzer.api.auth import WRITE_ERRORS, require_writer
from analyzer.api.bodies import read_body
from analyzer.api.context import ApiContext
from analyzer.store.memory import SOURCE_MISMATCH, IngestResult
from collector.contract.codec import MalformedShipment, ShipmentParser, encode_body


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
            503: {"model": m.Problem, "description": "the shipment could not be made durable; send it again"},
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
            result = await run_in_threadpool(_parse_and_ingest, parser, api, body, writer.site)
        except HTTPException:
            api.store.note_rejected()
            raise
        return m.WindowsAccepted(**asdict(result))

    return routes


def _parse_and_ingest(parser: ShipmentParser, api: ApiContext, body: bytes, site: str | None) -> IngestResult:
    """Decode, bind to the token's `site` (None: the shared token, any site), ingest, then
    record in the journal (when there is one) before the answer."""
    try:
        batch = parser.parse(body)
    except MalformedShipment as exc:
        raise HTTPException(400, f"malformed shipment: {exc}") from None
    if site is not None and batch.site != site:
        raise HTTPException(403, f"site: the token is site {site!r}'s; it cannot ship for {batch.site!r}")
    own = batch.windows if site is None else tuple(w for w in batch.windows if w.key.source == site)
    foreign = len(batch.windows) - len(own)
    if foreign:
        api.store.note_refused(SOURCE_MISMATCH, foreign)
        batch = replace(batch, windows=own)
    result = api.store.ingest(batch, api.clock())
    result.refused += foreign
    if api.journal is not None:
        try:
            api.journal.record(encode_body(batch) if foreign else body)
        except OSError as exc:
            api.errors.note("journal", exc)
            raise HTTPException(503, f"cannot make the shipment durable ({exc.strerror}); send it again") from None
    return result
