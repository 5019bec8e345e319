"""The analyzer's HTTP API: shipments in, verdicts, paths, topology and health out.

`create_app(store, token=..., prober=...)` returns a FastAPI app over a `WindowStore`.

- Read-only by default: every GET is open; writes (`POST /v1/windows`, `POST /probe`)
  need `Authorization: Bearer TOKEN`, and without a token configured they are refused
  with 403 (no token can be right), so an analyzer started without one only shows.
- Bad input gets a 4xx whose `detail` names the field or value: 400 malformed (also for
  query and body validation, where FastAPI would say 422), 401 missing or wrong token,
  404 unknown slice, 413 body over `max_body_bytes`.
- `GET /paths` refuses unknown `slice`, `src` or `dst` values with 400 and the known
  names, rather than answering an empty list that looks like "no such paths".
- `GET /hints` answers what `hints()` returns (objects with the fields of `api_models.Hint`,
  e.g. analyzer.service.RootCauseRunner.hints); without it the list is empty. `/slices` and
  `/slices/{name}` carry the hints that affect each slice.
- `POST /probe` runs `prober(request)` (sync or async; it returns a JSON-ready dict and
  raises ValueError for a request it cannot run) when the analyzer runs next to an agent;
  otherwise 503.
"""

from __future__ import annotations

import hmac
import inspect
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from analyzer.api import models as m
from analyzer.exporter import AnalyzerSnapshot, analyzer_registry
from analyzer.store.memory import WindowStore
from analyzer.topology import Topology
from collector.contract.codec import MalformedShipment, ShipmentParser
from collector.contract.records import PathKey, PathWindow

MAX_BODY_BYTES = 32 << 20  # an agent posts at most 5,000 windows (~4 MB) at a time
WORST_PATHS = 5
MAX_NAMES_IN_ERROR = 20

_WRITE_ERRORS = {
    401: {"model": m.Problem, "description": "missing or wrong bearer token"},
    403: {"model": m.Problem, "description": "writes are disabled: no token configured"},
}


def create_app(store: WindowStore, *, token: str | None, prober: Callable | None = None,
               hints: Callable[[], Iterable] | None = None, clock: Callable[[], int] = time.time_ns,
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    app = FastAPI(
        title="xnetmon analyzer",
        summary="Per-slice SLA verdicts of an IPv6 extranet from the agents' path windows.",
        version="1",
    )
    parser = ShipmentParser()

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = ["{}: {}".format(".".join(str(p) for p in e["loc"][1:]) or e["loc"][0], e["msg"])
                    for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(problems)}, status_code=400)

    def require_token(request: Request) -> None:
        if token is None:
            raise HTTPException(403, "writes are disabled: this analyzer runs without a token "
                                     "(start it with --token-file to accept shipments and probes)")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise HTTPException(401, "missing bearer token: send 'Authorization: Bearer TOKEN'",
                                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(401, "wrong bearer token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})

    # -- writes -----------------------------------------------------------------------------

    @app.post(
        "/v1/windows", response_model=m.WindowsAccepted, summary="Take an agent's shipment of path windows",
        description="The body is collector/contract/shipment.py's JSON. Windows already received are ignored "
                    "(delivery is at least once), so an agent may always send again.",
        responses={**_WRITE_ERRORS, 400: {"model": m.Problem, "description": "malformed body; the field is named"},
                   413: {"model": m.Problem, "description": "body too large"}},
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": m.ShipmentBody.model_json_schema()}}}},
    )
    async def post_windows(request: Request) -> m.WindowsAccepted:
        try:
            require_token(request)
            body = await _read_body(request, max_body_bytes)
            result = await run_in_threadpool(_parse_and_ingest, parser, store, body, clock)
        except HTTPException:
            store.note_rejected()
            raise
        return m.WindowsAccepted(**asdict(result))

    @app.post(
        "/probe", response_model=m.ProbeResponse, summary="Run an on-demand probe from a named agent",
        responses={**_WRITE_ERRORS, 400: {"model": m.Problem, "description": "bad request"},
                   503: {"model": m.Problem, "description": "no agent can run probes from this analyzer"}},
    )
    async def post_probe(request: Request, probe: m.ProbeRequest) -> m.ProbeResponse:
        require_token(request)
        if prober is None:
            raise HTTPException(503, "no agent can run probes from this analyzer "
                                     "(only the all-in-one monitor, xnetmon run, has one)")
        known = store.slice_names()
        if known and probe.slice not in known:
            raise HTTPException(400, f"slice: unknown slice {probe.slice!r} (slices are: {_names(known)})")
        try:
            if inspect.iscoroutinefunction(prober):
                result = await prober(probe)
            else:
                result = await run_in_threadpool(prober, probe)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return m.ProbeResponse(request=probe, result=dict(result))

    # -- reads ------------------------------------------------------------------------------

    def current_hints() -> list[m.Hint]:
        return [m.Hint.model_validate(h, from_attributes=True) for h in (hints() if hints else ())]

    def hints_of(slice_name: str, found: list[m.Hint]) -> list[m.Hint]:
        return [h for h in found if slice_name in h.slices]

    @app.get("/slices", response_model=list[m.SliceSummary],
             summary="Every slice: SLA status, budget, worst path, root-cause hints")
    def list_slices() -> list[m.SliceSummary]:
        now = clock()
        found = current_hints()
        summaries = []
        for name in store.slice_names():
            verdict = _verdict(store.slice_verdict(name, now))
            windows = store.latest_windows(name)
            worst = max(windows, key=_badness, default=None)
            summaries.append(m.SliceSummary(
                name=name, status=verdict.status, since_ns=verdict.since_ns,
                error_budget_remaining=verdict.error_budget_remaining, burn_rates=verdict.burn_rates,
                paths=len(store.path_keys(name)), worst_path=None if worst is None else _path_summary(worst),
                hints=hints_of(name, found),
            ))
        return summaries

    @app.get("/slices/{name}", response_model=m.SliceDetail,
             summary="One slice: verdict, objectives, worst paths, root-cause hints",
             responses={404: {"model": m.Problem, "description": "unknown slice; the known ones are listed"}})
    def get_slice(name: str) -> m.SliceDetail:
        known = store.slice_names()
        if name not in known:
            raise HTTPException(404, f"unknown slice {name!r} (slices are: {_names(known) or 'none yet'})")
        windows = store.latest_windows(name)
        lossy = sorted((w for w in windows if w.lost), key=lambda w: (w.loss_ratio, w.lost), reverse=True)
        slowest = sorted((w for w in windows if w.rtt_p99_ns is not None), key=lambda w: w.rtt_p99_ns, reverse=True)
        return m.SliceDetail(
            name=name, verdict=_verdict(store.slice_verdict(name, clock())), paths=len(store.path_keys(name)),
            worst_by_loss=[_path_summary(w) for w in lossy[:WORST_PATHS]],
            worst_by_p99=[_path_summary(w) for w in slowest[:WORST_PATHS]],
            hints=hints_of(name, current_hints()),
        )

    @app.get("/paths", response_model=m.PathList, summary="Paths with their verdicts, newest window and fingerprint",
             responses={400: {"model": m.Problem, "description": "unknown filter value; the known ones are listed"}})
    def list_paths(
        slice: str | None = Query(None, description="only this slice"),
        src: str | None = Query(None, description="only paths probed from this site"),
        dst: str | None = Query(None, description="only paths to this target"),
        limit: int = Query(1000, ge=1, le=100_000, description="at most this many paths"),
    ) -> m.PathList:
        keys = store.path_keys()
        for label, value, names in (("slice", slice, store.slice_names()), ("src", src, {k.source for k in keys}),
                                    ("dst", dst, {k.target for k in keys})):
            if value is not None and value not in names:
                raise HTTPException(400, f"{label}: no path has {label} {value!r} (known: {_names(names) or 'none'})")
        chosen = sorted(
            (k for k in keys if (slice is None or k.slice == slice) and (src is None or k.source == src)
             and (dst is None or k.target == dst)),
            key=lambda k: (k.slice, k.source, k.target, k.kind),
        )
        now = clock()
        return m.PathList(total=len(chosen), paths=[_path_detail(store, k, now) for k in chosen[:limit]])

    @app.get("/hints", response_model=list[m.Hint], summary="Root-cause hints, newest first",
             description="From the root-cause analysis, once per closed interval; empty when it does not run.",
             responses={400: {"model": m.Problem, "description": "unknown kind"}})
    def list_hints(
        slice: str | None = Query(None, description="only hints affecting this slice"),
        kind: str | None = Query(None, description=f"one of: {', '.join(m.HINT_KINDS)}"),
        since: int | None = Query(None, description="only hints last seen at or after this time (ns)"),
    ) -> list[m.Hint]:
        if kind is not None and kind not in m.HINT_KINDS:
            raise HTTPException(400, f"kind: unknown hint kind {kind!r} (kinds are: {', '.join(m.HINT_KINDS)})")
        return sorted(
            (h for h in current_hints() if (slice is None or slice in h.slices) and (kind is None or h.kind == kind)
             and (since is None or h.last_seen_ns >= since)),
            key=lambda h: h.last_seen_ns, reverse=True,
        )

    @app.get("/topology", response_model=m.Topology, summary="Nodes and links from the latest traced paths")
    def get_topology() -> m.Topology:
        observations = store.observations()
        topology = Topology.from_observations(observations)
        return m.Topology(
            nodes=[m.TopologyNode(id=node, role=role) for node, role in sorted(topology.nodes.items())],
            links=[m.TopologyLink(a=link.a, b=link.b, hidden_hops=link.hidden_hops,
                                  paths=[m.PathUse(**asdict(use)) for use in uses])
                   for link, uses in sorted(topology.links.items(), key=lambda item: (item[0].a, item[0].b))],
            observations=len(observations),
        )

    @app.get("/healthz", response_model=m.Health, summary="Liveness, store figures, agents seen and their health")
    def healthz() -> m.Health:
        return m.Health(
            status="ok", writes=token is not None, store=store.stats(),
            agents=[m.AgentHealth(site=a.site, last_batch_ns=a.last_batch_ns,
                                  health=None if a.health is None else asdict(a.health)) for a in store.agents()],
        )

    # Prometheus scrapes the same server: the verdicts as metrics, rendered per scrape.
    def metrics_snapshot() -> AnalyzerSnapshot:
        return AnalyzerSnapshot(
            verdicts=[v for v in store.slice_verdicts(clock()) if v is not None],
            counters=store.stats(),
            hints=list(hints()) if hints is not None else [],
        )

    registry = analyzer_registry(metrics_snapshot)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


# -- helpers -------------------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body of {declared} bytes is over the limit of {limit} bytes: "
                                 "send fewer windows per request")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"body over the limit of {limit} bytes: send fewer windows per request")
    return bytes(body)


def _parse_and_ingest(parser: ShipmentParser, store: WindowStore, body: bytes, clock: Callable[[], int]):
    try:
        batch = parser.parse(body)
    except MalformedShipment as exc:
        raise HTTPException(400, f"malformed shipment: {exc}") from None
    return store.ingest(batch, clock())


def _names(names: Iterable[str]) -> str:
    names = sorted(names)
    shown = ", ".join(names[:MAX_NAMES_IN_ERROR])
    return shown + (f" and {len(names) - MAX_NAMES_IN_ERROR} more" if len(names) > MAX_NAMES_IN_ERROR else "")


def _badness(window: PathWindow) -> tuple:
    return (window.loss_ratio, window.rtt_p99_ns or 0)


def _seconds(ns: int | None) -> float | None:
    return None if ns is None else ns / 1e9


def _window_summary(w: PathWindow) -> m.WindowSummary:
    return m.WindowSummary(
        seq=w.seq, start_ns=w.start_ns, end_ns=w.end_ns, sent=w.sent, received=w.received,
        lost_forward=w.lost_forward, lost_reverse=w.lost_reverse, lost_unknown=w.lost_unknown,
        loss_ratio=w.loss_ratio, rtt_p50_s=_seconds(w.rtt_p50_ns), rtt_p99_s=_seconds(w.rtt_p99_ns),
        ipdv_s=_seconds(w.ipdv_mean_abs_ns), pdv_p99_s=_seconds(w.pdv_p99_ns), path_fingerprint=w.path_fingerprint,
    )


def _ref(key: PathKey) -> m.PathRef:
    return m.PathRef(source=key.source, target=key.target, slice=key.slice, kind=key.kind)


def _path_summary(w: PathWindow) -> m.PathSummary:
    return m.PathSummary(path=_ref(w.key), target_address=w.target_address, latest=_window_summary(w))


def _path_detail(store: WindowStore, key: PathKey, now: int) -> m.PathDetail:
    latest = store.latest_window(key)
    traced = store.observation(key.source, key.target, key.slice)
    return m.PathDetail(
        path=_ref(key), target_address=None if latest is None else latest.target_address,
        verdict=_verdict(store.path_verdict(key, now)),
        latest=None if latest is None else _window_summary(latest),
        fingerprint=traced.fingerprint if traced else (latest.path_fingerprint if latest else None),
        traced_ns=traced.observed_ns if traced else None,
    )


def _verdict(verdict) -> m.Verdict:
    """An analyzer.sla.verdicts.SlaVerdict as the API shows it; None (no policy) as status no-policy."""
    if verdict is None:
        return m.Verdict(status="no-policy", reason="no SLA policy names this slice (see --policies)")
    return m.Verdict(
        status=verdict.status, since_ns=verdict.since_ns, evaluated_ns=verdict.evaluated_ns,
        error_budget_remaining=verdict.error_budget_remaining, burn_rates=dict(verdict.burn_rates),
        objectives=[m.Objective(name=o.name, bound=o.bound, percentile=o.percentile, observed=o.observed, met=o.met)
                    for o in verdict.objectives],
        intervals=verdict.intervals,
    )
