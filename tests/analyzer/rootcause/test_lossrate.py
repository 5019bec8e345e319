"""Loss-rate tomography on its own: the fit with explaining away blames the lossy link, not
the neighbours sharing its paths."""

from __future__ import annotations

import numpy as np

from analyzer.rootcause.lossrate import localise_gray
from analyzer.rootcause.observations import loss_observations
from tests.analyzer.rootcause.tomography_support import path


def test_loss_rate_fit_blames_the_lossy_link_not_the_neighbours_sharing_its_paths() -> None:
    paths = []
    for source in ("a", "c", "e"):
        for target, lossy in (("b", True), ("d", False)):
            forward = [source, f"{source}>x", "x", f"x>{target}", target]
            reverse = [target, f"{target}>x", "x", f"x>{source}", source]
            paths.append(
                path(forward, reverse, lost=30 if lossy else 1, forward_lost=30 if lossy else 1, reverse_lost=0)
            )
    obs = loss_observations(tuple(paths), 1e-4)
    findings = localise_gray(obs, np.ones(len(obs.sent), dtype=bool), alpha=1e-6, min_rate=2e-4, min_excess=4)
    assert [tuple(obs.names[c] for c in f.columns) for f in findings] == [("x>b",)]
    assert abs(findings[0].rate - 0.03) < 0.003
    assert findings[0].p_value < 1e-20
