"""GET /slices and /slices/{name}: each slice's verdict, worst paths and root-cause hints."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from analyzer.api import models as m
from analyzer.api.context import ApiContext
from analyzer.api.views import listed, path_summary, verdict
from collector.contract.records import PathWindow

WORST_PATHS = 5


def router(api: ApiContext) -> APIRouter:
    routes = APIRouter()
    store = api.store

    @routes.get(
        "/slices",
        response_model=list[m.SliceSummary],
        summary="Every slice: SLA status, budget, worst path, root-cause hints",
    )
    def list_slices() -> list[m.SliceSummary]:
        found = api.current_hints()
        summaries = []
        for name, judged in store.slice_verdict_map(api.clock()).items():  # every verdict in one pass
            current = verdict(judged)
            windows = store.latest_windows(name)
            worst = max(windows, key=_badness, default=None)
            summaries.append(
                m.SliceSummary(
                    name=name,
                    status=current.status,
                    since_ns=current.since_ns,
                    error_budget_remaining=current.error_budget_remaining,
                    burn_rates=current.burn_rates,
                    paths=len(store.path_keys(name)),
                    worst_path=None if worst is None else path_summary(worst),
                    hints=_hints_of(name, found),
                )
            )
        return summaries

    @routes.get(
        "/slices/{name}",
        response_model=m.SliceDetail,
        summary="One slice: verdict, objectives, worst paths, root-cause hints",
        responses={404: {"model": m.Problem, "description": "unknown slice; the known ones are listed"}},
    )
    def get_slice(name: str) -> m.SliceDetail:
        known = store.slice_names()
        if name not in known:
            raise HTTPException(404, f"unknown slice {name!r} (slices are: {listed(known) or 'none yet'})")
        windows = store.latest_windows(name)
        lossy = sorted((w for w in windows if w.lost), key=lambda w: (w.loss_ratio, w.lost), reverse=True)
        slowest = sorted(
            (w for w in windows if w.rtt_p99_ns is not None), key=lambda w: w.rtt_p99_ns or 0, reverse=True
        )
        return m.SliceDetail(
            name=name,
            verdict=verdict(store.slice_verdict(name, api.clock())),
            paths=len(store.path_keys(name)),
            worst_by_loss=[path_summary(w) for w in lossy[:WORST_PATHS]],
            worst_by_p99=[path_summary(w) for w in slowest[:WORST_PATHS]],
            hints=_hints_of(name, api.current_hints()),
        )

    return routes


def _badness(window: PathWindow) -> tuple:
    return (window.loss_ratio, window.rtt_p99_ns or 0)


def _hints_of(slice_name: str, found: list[m.Hint]) -> list[m.Hint]:
    return [h for h in found if slice_name in h.slices]
