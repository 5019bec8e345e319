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


def test_a_two_way_loss_seen_more_on_one_side_names_both_directions() -> None:
    # A county c homed on u and w: echo to u crosses both directions of c-u; STAMP paths
    # split by direction cross one of them and come back by w. The round-trip rows' losses
    # are explained by u>c's stronger rate, and c>u's own rows still lean its way.
    paths = []
    for lost in (3, 2, 2, 3):
        paths.append(path(["c", "c>u", "u"], ["u", "u>c", "c"], sent=600, lost=lost, slice_=f"echo{lost}"))
    for i, lost in enumerate((1, 1, 1)):
        forward = ["c", "c>u", "u", f"u>f{i}", f"f{i}"]
        reverse = [f"f{i}", f"f{i}>w", "w", "w>c", "c"]
        paths.append(path(forward, reverse, sent=600, lost=lost, forward_lost=lost, reverse_lost=0))
    for i, lost in enumerate((1, 1, 1, 4, 3, 6, 6)):
        forward = [f"g{i}", f"g{i}>u", "u", "u>c", "c"]
        reverse = ["c", "c>w", "w", f"w>g{i}", f"g{i}"]
        paths.append(path(forward, reverse, sent=600, lost=lost, forward_lost=lost, reverse_lost=0))
    for i in range(40):  # the rest of the network, clean: through u, and from c by w
        forward = [f"h{i}", f"h{i}>u", "u", f"u>f{i % 3}", f"f{i % 3}"]
        reverse = [f"f{i % 3}", f"f{i % 3}>u", "u", f"u>h{i}", f"h{i}"]
        paths.append(path(forward, reverse, sent=600, lost=0, forward_lost=0, reverse_lost=0))
        forward = ["c", "c>w", "w", f"w>h{i}", f"h{i}"]
        reverse = [f"h{i}", f"h{i}>w", "w", "w>c", "c"]
        paths.append(path(forward, reverse, sent=600, lost=0, forward_lost=0, reverse_lost=0))
    obs = loss_observations(tuple(paths), 1e-4)
    active = np.ones(len(obs.sent), dtype=bool)
    findings = localise_gray(obs, active, 1e-6, 2e-4, 4, opposite=obs.opposite_columns())
    named = sorted(obs.names[c] for f in findings for c in f.columns)
    assert named == ["c>u", "u>c"]
