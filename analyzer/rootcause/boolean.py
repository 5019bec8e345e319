"""Boolean tomography: the fewest component classes that explain every bad row.

The greedy set cover of Tomo / SCFS (Duffield, "Network tomography of binary network
performance characteristics", IEEE Trans. Inf. Theory 2006; Dhamdhere et al.,
"NetDiagnoser", CoNEXT 2007): a component that lies on a good row is good; among the rest,
repeatedly take the one on the most still-unexplained bad rows. Two choices differ from
the textbook version:

- components that lie on exactly the same rows cannot be told apart by end-to-end
  measurement, so the cover picks equivalence classes, never one member of a class;
- ties between classes that cover the same unexplained rows go to the class with more bad
  rows in all (more evidence that it is broken), then the smaller footprint (the more
  specific explanation), then the name, so the result never depends on the order paths
  arrived in; before all of these, a real component (node or link) wins over a
  pseudo-component ("host:", "service:") that covers as many: the agent's host and a
  reflector are blamed only for what no real component explains;
- `cover_all_then_per_slice` first explains what it can with every slice's good rows as
  evidence, and only then, slice by slice, what is left: a fault of every slice is found
  once with all its evidence, and a fault of one slice is not cleared by the healthy rows
  of the others.

The same cover serves loss (bad: the row lost nearly everything), delay (bad: the RTT
stepped up) and path changes (bad: the route changed), each with its own bad/good rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analyzer.rootcause.observations import PSEUDO_PREFIXES, Observations


@dataclass(frozen=True, slots=True)
class Cover:
    """One class chosen by the cover and the bad rows it explains."""

    columns: tuple[int, ...]  # the equivalence class, ordered by name
    rows: np.ndarray  # bad rows it explains (first come in the greedy order)
    all_bad_rows: np.ndarray  # every bad row through the class
    good_rows: int  # good rows through the class (within tolerance)


def equivalence_classes(observations: Observations, columns) -> list[tuple[int, ...]]:
    """Group columns lying on exactly the same rows; each class ordered by name."""
    groups: dict[bytes, list[int]] = {}
    for column in columns:
        groups.setdefault(observations.column_key(int(column)), []).append(int(column))
    names = observations.names
    return sorted((tuple(sorted(g, key=names.__getitem__)) for g in groups.values()), key=lambda cls: names[cls[0]])


def greedy_cover(
    observations: Observations,
    bad: np.ndarray,
    good: np.ndarray,
    good_tolerance: int = 0,
    allowed: np.ndarray | None = None,
) -> list[Cover]:
    """Explain the rows where `bad` is set with classes on at most `good_tolerance` good rows.

    `bad` and `good` are boolean row masks (a row may be neither: ambiguous rows neither
    need explaining nor clear anyone). `allowed`, a boolean column mask, limits candidates:
    a class is one when any of its members is allowed, so a member that is not allowed stays
    in a class it cannot be told from, but is never chosen on its own.
    """
    if not bad.any():
        return []
    matrix = observations.matrix
    bad_count = matrix.T @ bad.astype(np.float64)
    good_count = matrix.T @ good.astype(np.float64)
    candidate = (bad_count > 0) & (good_count <= good_tolerance)
    columns = np.flatnonzero(candidate)
    if len(columns) == 0:
        return []
    names = observations.names
    classes = equivalence_classes(observations, columns)
    if allowed is not None:
        classes = [cls for cls in classes if allowed[list(cls)].any()]
    bad_rows_of = {}
    footprint = {}
    # a class of pseudo-components only: a mixed class is as real as its nodes and links
    pseudo = {cls: all(names[c].startswith(PSEUDO_PREFIXES) for c in cls) for cls in classes}
    for cls in classes:
        rows = observations.rows_of(cls[0])
        bad_rows_of[cls] = rows[bad[rows]]
        footprint[cls] = len(rows)
    unexplained = bad.copy()
    chosen: list[Cover] = []
    while unexplained.any():
        best, best_key = None, None
        for cls in classes:
            covered = int(unexplained[bad_rows_of[cls]].sum())
            if covered == 0:
                continue
            key = (-covered, pseudo[cls], -len(bad_rows_of[cls]), footprint[cls], names[cls[0]])
            if best_key is None or key < best_key:
                best, best_key = cls, key
        if best is None:
            break
        rows = bad_rows_of[best]
        explained = rows[unexplained[rows]]
        unexplained[rows] = False
        chosen.append(Cover(best, explained, rows, int(good_count[best[0]])))
        classes.remove(best)
    return chosen


def cover_all_then_per_slice(
    observations: Observations,
    bad: np.ndarray,
    good: np.ndarray,
    good_tolerance: int = 0,
    allowed: np.ndarray | None = None,
) -> list[tuple[int, ...]]:
    """Classes explaining `bad` rows: across slices first, then per slice for the rest
    (`allowed` as in `greedy_cover`)."""
    chosen = greedy_cover(observations, bad, good, good_tolerance, allowed)
    left = bad.copy()
    for cover in chosen:
        left[cover.all_bad_rows] = False
    classes = {cover.columns for cover in chosen}
    for slice_id in np.unique(observations.slice_of_row[left]):
        in_slice = observations.slice_of_row == slice_id
        classes.update(
            c.columns for c in greedy_cover(observations, left & in_slice, good & in_slice, good_tolerance, allowed)
        )
    return sorted(classes, key=lambda columns: observations.names[columns[0]])
