"""The analyzer's HTTP API: shipments in, verdicts, paths, topology and health out.

`create_app(store, token=..., prober=...)` returns a FastAPI app over a `WindowStore`,
assembled from one router per resource (analyzer/api/routes/: shipments, probe, slices,
paths, hints, topology, health, metrics).

- The OpenAPI document and its pages (/openapi.json, /docs, /redoc) only when `openapi`: they
  map the API for anyone who can reach it.
- With `read_token`, every GET needs it as a bearer token too (401 without; constant-time),
  but the console's static files under /ui/.
- Read-only by default: every GET is open; writes (`POST /v1/windows`, `POST /probe`)
  need `Authorization: Bearer TOKEN`, and without a token configured they are refused
  with 403 (no token can be right), so an analyzer started without one only shows.
  `site_tokens` ({site: token}) bind shipments to their site; `token`, the shared one, then
  only asks for probes (analyzer.api.tokens).
- Bad input gets a 4xx whose `detail` names the field or value: 400 malformed (also for
  query and body validation, where FastAPI would say 422), 401 missing or wrong token,
  404 unknown slice, 413 body over `max_body_bytes`.
- `GET /paths` refuses unknown `slice`, `src` or `dst` values with 400 and the known
  names, rather than answering an empty list that looks like "no such paths".
- `GET /hints` answers what `hints()` returns (objects with the fields of `api_models.Hint`,
  e.g. analyzer.service.RootCauseRunner.hints); without it the list is empty. `/slices` and
  `/slices/{name}` carry the hints that affect each slice.
- `GET /map` (the console's map) merges `declared_topology` (sites' roles, physical links) with the
  traced links; `GET /slices/{name}/history` reads `history` (analyzer.slice_history); the
  console itself is served at /ui/ (analyzer.api.console_files).
- `GET /topology` names traced hops as the hints do (analyzer.traced_links): after their sites
  where `site_names` ({address: site}) or a target probed under an agent's site name tells
  the address, else by address.
- `POST /probe` runs `prober(request)` (sync or async; it returns a JSON-ready dict and
  raises ValueError for a request it cannot run) when the analyzer runs next to an agent;
  otherwise 503. Only to an agent's target or an address in `probe_targets` (403), at most
  `max_probes_in_flight` at once (429), on threads apart from the reads'
  (analyzer.api.probe_runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from analyzer.api.auth import ReadTokenGate
from analyzer.api.console_files import is_console_file, mount_console
from analyzer.api.context import ApiContext
from analyzer.api.openapi_doc import complete_openapi
from analyzer.api.probe_runs import MAX_IN_FLIGHT, ProbeRuns
from analyzer.api.routes import RESOURCES
from analyzer.api.tokens import WriteTokens
from analyzer.declared_topology import DeclaredTopology
from analyzer.exporter import BusLink
from analyzer.slice_history import SliceHistory
from analyzer.store.journal import IntakeJournal
from analyzer.store.memory import WindowStore
from analyzer.traced_links import by_canonical_address
from collector.system.loop_errors import LoopErrors

MAX_BODY_BYTES = 32 << 20  # an agent posts at most 5,000 windows (~4 MB) at a time


def create_app(
    store: WindowStore,
    *,
    token: str | None,
    site_tokens: Mapping[str, str] | None = None,
    prober: Callable | None = None,
    hints: Callable[[], Iterable] | None = None,
    clock: Callable[[], int] = time.time_ns,
    max_body_bytes: int = MAX_BODY_BYTES,
    site_names: Mapping[str, str] | None = None,
    errors: LoopErrors | None = None,
    probe_targets: Collection[str] = (),
    max_probes_in_flight: int = MAX_IN_FLIGHT,
    read_token: str | None = None,
    openapi: bool = False,
    journal: IntakeJournal | None = None,
    declared_topology: DeclaredTopology | None = None,
    history: SliceHistory | None = None,
    bus_link: Callable[[], BusLink | None] = lambda: None,
) -> FastAPI:
    app = FastAPI(
        title="xnetmon analyzer",
        summary="Per-slice SLA verdicts of an IPv6 extranet from the agents' path windows.",
        version="1",
        openapi_url="/openapi.json" if openapi else None,
        docs_url="/docs" if openapi else None,
        redoc_url="/redoc" if openapi else None,
    )
    if read_token is not None:
        app.add_middleware(ReadTokenGate, token=read_token, is_open=is_console_file)
    app.add_exception_handler(RequestValidationError, _bad_request)
    api = ApiContext(
        store=store,
        tokens=WriteTokens(shared=token, by_site=dict(site_tokens or {})),
        clock=clock,
        probes=None
        if prober is None
        else ProbeRuns(prober, store.target_addresses, probe_targets, max_probes_in_flight),
        hints=hints,
        site_names=by_canonical_address(site_names),
        max_body_bytes=max_body_bytes,
        errors=errors if errors is not None else LoopErrors(),
        journal=journal,
        declared=declared_topology,
        history=history,
        bus_link=bus_link,
    )
    app.state.routers = tuple(resource.router(api) for resource in RESOURCES)  # for `release`
    for router in app.state.routers:
        app.include_router(router)
    complete_openapi(app, reads_need_token=read_token is not None)
    mount_console(app)
    return app


def release(app: FastAPI) -> None:
    """Let a stopped app's endpoints go of what they serve from. FastAPI classifies every
    endpoint and dependency in process-wide caches (4,096 entries each) that keep the
    functions, and ours are closures over the store and the analyzer's parts: a service made
    and stopped inside a longer-lived process (the lab all-in-one restarts its analyzer)
    would stay in memory with its whole store, once per restart. Emptying the closures'
    cells leaves the cached functions holding nothing; the app must not serve again."""
    routes = [*app.routes, *(route for router in app.state.routers for route in router.routes)]
    pending = [route.dependant for route in routes if isinstance(route, APIRoute)]
    while pending:
        dependant = pending.pop()
        pending.extend(dependant.dependencies)
        for cell in getattr(dependant.call, "__closure__", None) or ():
            cell.cell_contents = None


async def _bad_request(request: Request, exc: Exception) -> JSONResponse:
    """400 naming the field, where FastAPI would answer 422."""
    assert isinstance(exc, RequestValidationError)  # registered for that class only
    problems = ["{}: {}".format(".".join(str(p) for p in e["loc"][1:]) or e["loc"][0], e["msg"]) for e in exc.errors()]
    return JSONResponse({"detail": "; ".join(problems)}, status_code=400)
