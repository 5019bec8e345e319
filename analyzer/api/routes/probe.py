"""POST /probe: an on-demand probe from a named agent, when one runs beside this analyzer."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from analyzer.api import models as m
from analyzer.api.auth import WRITE_ERRORS, require_writer
from analyzer.api.bodies import read_model
from analyzer.api.context import ApiContext
from analyzer.api.probe_runs import AgentUnreachable, TargetNotAllowed, TooManyProbes
from analyzer.api.views import listed

MAX_PROBE_BODY_BYTES = 4096  # a probe request is a few short fields


def router(api: ApiContext) -> APIRouter:
    routes = APIRouter()

    @routes.post(
        "/probe",
        response_model=m.ProbeResponse,
        summary="Run an on-demand probe from a named agent",
        responses={
            **WRITE_ERRORS,
            400: {"model": m.Problem, "description": "bad request"},
            403: {"model": m.Problem, "description": "not an agent's target nor allowed, or not the operator's token"},
            413: {"model": m.Problem, "description": "body too large"},
            429: {"model": m.Problem, "description": "every probe slot is taken: try again later"},
            503: {
                "model": m.Problem,
                "description": "no agent can run probes from this analyzer, or it did not answer",
            },
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": m.ProbeRequest.model_json_schema()}},
            }
        },
    )
    async def post_probe(request: Request) -> m.ProbeResponse:
        writer = require_writer(request, api.tokens)  # before the body is read: strangers cost nothing
        if writer.site is not None:
            raise HTTPException(403, f"probes need the operator's shared token, not site {writer.site!r}'s")
        probe = await read_model(request, m.ProbeRequest, MAX_PROBE_BODY_BYTES)
        runs = api.probes
        if runs is None:
            raise HTTPException(
                503,
                "no agent can run probes from this analyzer (it needs the bus and an operator's identity: "
                "xnetmon analyzer --bus ... --probe-operator NAME, or the all-in-one monitor, xnetmon run)",
            )
        known = api.store.slice_names()
        if known and probe.slice not in known:
            raise HTTPException(400, f"slice: unknown slice {probe.slice!r} (slices are: {listed(known)})")
        try:
            runs.check_target(probe.target)
            result = await runs.run(probe)
        except TargetNotAllowed as exc:
            raise HTTPException(403, str(exc)) from None
        except TooManyProbes as exc:
            raise HTTPException(429, str(exc), headers={"Retry-After": "5"}) from None
        except AgentUnreachable as exc:
            raise HTTPException(503, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return m.ProbeResponse(request=probe, result=dict(result))

    return routes
