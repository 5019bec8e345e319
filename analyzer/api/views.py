"""The store's windows, paths and verdicts as the API shows them, and the name lists that
refusals show."""

from __future__ import annotations

from collections.abc import Iterable

from analyzer.api import models as m
from analyzer.store.memory import WindowStore
from collector.contract.records import PathKey, PathWindow

MAX_NAMES_IN_ERROR = 20


def listed(names: Iterable[str]) -> str:
    names = sorted(names)
    shown = ", ".join(names[:MAX_NAMES_IN_ERROR])
    return shown + (f" and {len(names) - MAX_NAMES_IN_ERROR} more" if len(names) > MAX_NAMES_IN_ERROR else "")


def _seconds(ns: int | None) -> float | None:
    return None if ns is None else ns / 1e9


def window_summary(w: PathWindow) -> m.WindowSummary:
    return m.WindowSummary(
        seq=w.seq,
        start_ns=w.start_ns,
        end_ns=w.end_ns,
        sent=w.sent,
        received=w.received,
        lost_forward=w.lost_forward,
        lost_reverse=w.lost_reverse,
        lost_unknown=w.lost_unknown,
        loss_ratio=w.loss_ratio,
        rtt_p50_s=_seconds(w.rtt_p50_ns),
        rtt_p99_s=_seconds(w.rtt_p99_ns),
        ipdv_s=_seconds(w.ipdv_mean_abs_ns),
        pdv_p99_s=_seconds(w.pdv_p99_ns),
        path_fingerprint=w.path_fingerprint,
    )


def path_ref(key: PathKey) -> m.PathRef:
    return m.PathRef(source=key.source, target=key.target, slice=key.slice, kind=key.kind)


def path_summary(w: PathWindow) -> m.PathSummary:
    return m.PathSummary(path=path_ref(w.key), target_address=w.target_address, latest=window_summary(w))


def path_detail(store: WindowStore, key: PathKey, now: int, judged: object = None) -> m.PathDetail:
    """The path as /paths shows it; `judged` is its verdict when the caller judged every path at
    once (store.path_verdicts), else it is asked for here."""
    latest = store.latest_window(key)
    traced = store.observation(key.source, key.target, key.slice)
    return m.PathDetail(
        path=path_ref(key),
        target_address=None if latest is None else latest.target_address,
        verdict=verdict(judged if judged is not None else store.path_verdict(key, now)),
        latest=None if latest is None else window_summary(latest),
        fingerprint=traced.fingerprint if traced else (latest.path_fingerprint if latest else None),
        traced_ns=traced.observed_ns if traced else None,
    )


def verdict(found) -> m.Verdict:
    """An analyzer.sla.verdicts.SlaVerdict as the API shows it; None (no policy) as status no-policy."""
    if found is None:
        return m.Verdict(status="no-policy", reason="no SLA policy names this slice (see --policies)")
    return m.Verdict(
        status=found.status,
        since_ns=found.since_ns,
        evaluated_ns=found.evaluated_ns,
        error_budget_remaining=found.error_budget_remaining,
        burn_rates=dict(found.burn_rates),
        objectives=[
            m.Objective(name=o.name, bound=o.bound, percentile=o.percentile, observed=o.observed, met=o.met)
            for o in found.objectives
        ],
        intervals=found.intervals,
        warming=found.warming,
    )
