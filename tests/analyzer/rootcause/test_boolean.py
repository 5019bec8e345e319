"""Boolean tomography on its own: components on the same rows form one class, the greedy cover
explains failed rows with a class on no good row, and a one-slice fault is found slice by slice."""

from __future__ import annotations

from analyzer.rootcause.boolean import cover_all_then_per_slice, equivalence_classes, greedy_cover
from analyzer.rootcause.observations import loss_observations
from tests.analyzer.rootcause.tomography_support import columns, path


def test_components_on_the_same_rows_form_one_class() -> None:
    paths = (
        path(["a", "a>r", "r", "r>b", "b"], ["b", "b>r", "r", "r>a", "a"]),
        path(["c", "c>r", "r", "r>b", "b"], ["b", "b>r", "r", "r>c", "c"]),
    )
    obs = loss_observations(paths, 1e-4)
    classes = equivalence_classes(obs, columns(obs, "r>b", "b>r", "b", "a>r"))
    named = sorted(tuple(obs.names[c] for c in cls) for cls in classes)
    assert named == [("a>r",), ("b", "b>r", "r>b")]


def test_greedy_cover_explains_failed_rows_with_a_component_on_no_good_row() -> None:
    paths = (
        path(["a", "a>x", "x", "x>b", "b"], ["b", "b>x", "x", "x>a", "a"], lost=1000),
        path(["c", "c>x", "x", "x>b", "b"], ["b", "b>x", "x", "x>c", "c"], lost=1000),
        path(["c", "c>x", "x", "x>d", "d"], ["d", "d>x", "x", "x>c", "c"], lost=0),
    )
    obs = loss_observations(paths, 1e-4)
    bad = obs.loss >= 0.98
    covers = greedy_cover(obs, bad, ~bad)
    assert [tuple(obs.names[c] for c in cover.columns) for cover in covers] == [("b", "b>x", "x>b")]
    assert sorted(covers[0].rows.tolist()) == [0, 1]


def test_a_fault_of_one_slice_is_not_cleared_by_the_healthy_rows_of_the_others() -> None:
    routes = (
        (["a", "a>x", "x", "x>b", "b"], ["b", "b>x", "x", "x>a", "a"]),
        (["c", "c>x", "x", "x>b", "b"], ["b", "b>x", "x", "x>c", "c"]),
    )
    paths = tuple(
        path(f, r, lost=1000 if slice_ == "video" else 0, slice_=slice_)
        for slice_ in ("video", "egov")
        for f, r in routes
    )
    paths += (path(["c", "c>x", "x", "x>d", "d"], ["d", "d>x", "x", "x>c", "c"]),)  # video through x, healthy
    obs = loss_observations(paths, 1e-4)
    bad = obs.loss >= 0.98
    assert greedy_cover(obs, bad, ~bad) == []  # egov's good rows clear every component
    classes = cover_all_then_per_slice(obs, bad, ~bad)
    assert [tuple(obs.names[c] for c in cls) for cls in classes] == [("b", "b>x", "x>b")]
