"""Paths for the tomography building blocks' tests: PathEvidence from component lists, and
column numbers by component name (columns depend on what the process interned first)."""

from __future__ import annotations

from analyzer.rootcause.model import PathEvidence


def path(forward, reverse, sent=1000, lost=0, forward_lost=None, reverse_lost=None, slice_="video") -> PathEvidence:
    return PathEvidence(
        path_id="/".join(forward) + slice_,
        source=forward[0],
        target=forward[-1],
        target_site=forward[-1],
        slice=slice_,
        forward=tuple(forward),
        reverse=tuple(reverse),
        sent=sent,
        lost=lost,
        forward_lost=forward_lost,
        reverse_lost=reverse_lost,
    )


def columns(observations, *names) -> list[int]:
    return [observations.names.index(n) for n in names]
