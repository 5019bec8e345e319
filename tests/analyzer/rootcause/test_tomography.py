"""The tomography building blocks on their own: rows, equivalence classes, the greedy
cover, and loss-rate fitting with explaining away."""

from __future__ import annotations

import numpy as np

from analyzer.rootcause.boolean import equivalence_classes, greedy_cover
from analyzer.rootcause.lossrate import localise_gray
from analyzer.rootcause.model import PathEvidence
from analyzer.rootcause.observations import BOTH, FORWARD, REVERSE, loss_observations


def path(forward, reverse, sent=1000, lost=0, forward_lost=None, reverse_lost=None, slice_="video") -> PathEvidence:
    return PathEvidence(path_id="/".join(forward) + slice_, source=forward[0], target=forward[-1],
                        target_site=forward[-1], slice=slice_, forward=tuple(forward), reverse=tuple(reverse),
                        sent=sent, lost=lost, forward_lost=forward_lost, reverse_lost=reverse_lost)


def columns(observations, *names) -> list[int]:
    return [observations.names.index(n) for n in names]


def test_split_loss_gives_two_rows_and_pseudo_components_join_the_return_row() -> None:
    stamp = path(["host:a", "a", "a>b", "b", "service:b"], ["b", "b>a", "a"], sent=100, lost=7,
                 forward_lost=3, reverse_lost=4)
    echo = path(["host:a", "a", "a>b", "b"], ["b", "b>a", "a"], sent=100, lost=5)
    obs = loss_observations((stamp, echo), 1e-4)
    assert obs.direction.tolist() == [FORWARD, REVERSE, BOTH]
    assert obs.sent.tolist() == [100, 97, 100] and obs.lost.tolist() == [3, 4, 5]
    returning = {obs.names[c] for c in obs.columns_of(1)}
    assert returning == {"b", "b>a", "a", "host:a", "service:b"}
    # a round trip crosses the agent's host and both end nodes twice
    echo_row = obs.crossings.getrow(2)
    crossed = {obs.names[c]: v for c, v in zip(echo_row.indices, echo_row.data)}
    assert crossed["host:a"] == 2 and crossed["a"] == 2 and crossed["a>b"] == 1


def test_components_on_the_same_rows_form_one_class() -> None:
    paths = (path(["a", "a>r", "r", "r>b", "b"], ["b", "b>r", "r", "r>a", "a"]),
             path(["c", "c>r", "r", "r>b", "b"], ["b", "b>r", "r", "r>c", "c"]))
    obs = loss_observations(paths, 1e-4)
    classes = equivalence_classes(obs, columns(obs, "r>b", "b>r", "b", "a>r"))
    named = sorted(tuple(obs.names[c] for c in cls) for cls in classes)
    assert named == [("a>r",), ("b", "b>r", "r>b")]


def test_greedy_cover_explains_failed_rows_with_a_component_on_no_good_row() -> None:
    paths = (path(["a", "a>x", "x", "x>b", "b"], ["b", "b>x", "x", "x>a", "a"], lost=1000),
             path(["c", "c>x", "x", "x>b", "b"], ["b", "b>x", "x", "x>c", "c"], lost=1000),
             path(["c", "c>x", "x", "x>d", "d"], ["d", "d>x", "x", "x>c", "c"], lost=0))
    obs = loss_observations(paths, 1e-4)
    bad = obs.loss >= 0.98
    covers = greedy_cover(obs, bad, ~bad)
    assert [tuple(obs.names[c] for c in cover.columns) for cover in covers] == [("b", "b>x", "x>b")]
    assert sorted(covers[0].rows.tolist()) == [0, 1]


def test_loss_rate_fit_blames_the_lossy_link_not_the_neighbours_sharing_its_paths() -> None:
    paths = []
    for source in ("a", "c", "e"):
        for target, lossy in (("b", True), ("d", False)):
            forward = [source, f"{source}>x", "x", f"x>{target}", target]
            reverse = [target, f"{target}>x", "x", f"x>{source}", source]
            paths.append(path(forward, reverse, lost=30 if lossy else 1, forward_lost=30 if lossy else 1,
                              reverse_lost=0))
    obs = loss_observations(tuple(paths), 1e-4)
    findings = localise_gray(obs, np.ones(len(obs.sent), dtype=bool), alpha=1e-6, min_rate=2e-4, min_excess=4)
    assert [tuple(obs.names[c] for c in f.columns) for f in findings] == [("x>b",)]
    assert abs(findings[0].rate - 0.03) < 0.003
    assert findings[0].p_value < 1e-20
