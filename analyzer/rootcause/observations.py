"""An epoch's paths as a sparse 0/1 matrix: one row per measurement, one column per component.

A measurement ("row") is a set of components and a count of probes sent and lost across
them. A STAMP path whose stateful reflector split the loss into forward and reverse gives
two rows (forward components with the forward losses; reverse components with the reverse
losses out of the probes that reached the reflector), because the split is what tells a
link from its opposite direction. Any other path gives one row over forward and reverse
together. A path whose reverse route is unknown but whose loss was split keeps only its
forward row: reverse losses cannot be placed on unknown components. An unsplit round trip
whose return route is unknown is placed on its forward components only, so what it lost
on the way back is blamed on the way out (the opposite direction of the true culprit).

The agent's host and a reflector service both send and receive, so a pseudo-component
("host:<site>", "service:<target>") found in a path's forward components also joins its
reverse row.

Component names are interned once per process into a growing column space, and the
column array of every (forward, reverse, direction) seen is cached: at national scale an
epoch repeats the previous epoch's routes, and building rows is then a dictionary lookup
per path instead of a walk over ~25 names. Column numbers depend on what the process saw
first, so everything downstream breaks ties by component name, never by column.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from analyzer.rootcause.model import PathEvidence

BOTH, FORWARD, REVERSE = 0, 1, 2
PSEUDO_PREFIXES = ("host:", "service:")
_CACHE_LIMIT = 500_000  # routes remembered; a national epoch has ~200,000 (path, direction) keys


class _Interner:
    """Component name <-> column number, shared by every epoch of the process."""

    def __init__(self) -> None:
        self.columns: dict[str, int] = {}
        self.names: list[str] = []
        self.is_link: list[bool] = []
        self.routes: dict[tuple, tuple[np.ndarray, np.ndarray, int]] = {}
        self.lock = threading.Lock()

    def route(
        self, direction: int, first: tuple[str, ...], second: tuple[str, ...] | None
    ) -> tuple[np.ndarray, np.ndarray, int]:
        key = (direction, first, second)
        found = self.routes.get(key)
        if found is None:
            with self.lock:
                found = self._build(direction, first, second)
                if len(self.routes) > _CACHE_LIMIT:
                    self.routes.clear()
                self.routes[key] = found
        return found

    def _build(
        self, direction: int, first: tuple[str, ...], second: tuple[str, ...] | None
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Columns of a row, how often the row's probes cross each, and its number of links."""
        if direction == FORWARD:
            names = list(first)
        elif direction == REVERSE:  # first: reverse components, second: forward (for its pseudo-components)
            names = list(first) + [c for c in (second or ()) if c.startswith(PSEUDO_PREFIXES)]
        else:  # a round trip crosses the pseudo-components twice, like a node on a symmetric route
            names = list(first) + list(second or ()) + [c for c in first if c.startswith(PSEUDO_PREFIXES)]
        crossings: dict[int, int] = {}
        for name in names:
            column = self._column(name)
            crossings[column] = crossings.get(column, 0) + 1
        columns = sorted(crossings)
        links = sum(crossings[c] for c in columns if self.is_link[c])
        return (
            np.asarray(columns, dtype=np.int32),
            np.asarray([crossings[c] for c in columns], dtype=np.float64),
            links,
        )

    def _column(self, name: str) -> int:
        column = self.columns.get(name)
        if column is None:
            column = len(self.names)
            self.columns[name] = column
            self.names.append(name)
            self.is_link.append(">" in name and not name.startswith(PSEUDO_PREFIXES))
        return column


_INTERNER = _Interner()


@dataclass(frozen=True, slots=True)
class Observations:
    """Rows of one epoch. Arrays are indexed by row; `matrix` is rows x components."""

    names: tuple[str, ...]  # column -> component name
    matrix: sparse.csr_matrix  # 1 where the row's probes crossed the component
    crossings: sparse.csr_matrix  # how many times they crossed it (2: there and back), for rate fitting
    by_column: sparse.csc_matrix
    sent: np.ndarray  # float64
    lost: np.ndarray  # float64
    background: np.ndarray  # expected loss ratio of the row when nothing is wrong
    path: np.ndarray  # int32: index into the epoch's paths
    direction: np.ndarray  # int8: BOTH, FORWARD or REVERSE
    slice_of_row: np.ndarray  # int16: index into `slices`
    slices: tuple[str, ...]

    @property
    def loss(self) -> np.ndarray:
        return np.divide(self.lost, self.sent, out=np.zeros_like(self.lost), where=self.sent > 0)

    def columns_of(self, row: int) -> np.ndarray:
        return self.matrix.indices[self.matrix.indptr[row] : self.matrix.indptr[row + 1]]

    def rows_of(self, column: int) -> np.ndarray:
        return self.by_column.indices[self.by_column.indptr[column] : self.by_column.indptr[column + 1]]

    def column_of(self, name: str) -> int | None:
        column = _INTERNER.columns.get(name)
        return column if column is not None and column < len(self.names) else None

    def opposite_of(self, column: int) -> int | None:
        """The column of the same link's other direction; None for a node or pseudo-component,
        or when the other direction is not in this epoch's columns."""
        if not _INTERNER.is_link[column]:
            return None
        a, b = self.names[column].split(">", 1)
        return self.column_of(f"{b}>{a}")

    def opposite_columns(self) -> np.ndarray:
        """Per column, the column of the same link's other direction, -1 where there is none
        (not a link, or its other direction never seen)."""
        opposite = np.full(len(self.names), -1, dtype=np.int64)
        for column in range(len(self.names)):
            other = self.opposite_of(column)
            if other is not None:
                opposite[column] = other
        return opposite

    def links_both_ways_alike(self, node_column: int) -> tuple[str, ...]:
        """The two directions of a link at this node whose rows together are exactly the
        node's rows, by name (empty when none): a loss on the node and the same loss on both
        directions of that link give every row the same rate, so no probe tells them apart
        (a county whose every path, its own and those towards it, crosses its one uplink)."""
        node = self.names[node_column]
        rows = np.unique(self.rows_of(node_column))
        seen: set[str] = set()
        for column in np.unique(self.matrix[rows].indices).tolist():
            name = self.names[column]
            if not _INTERNER.is_link[column] or name in seen or node not in name.split(">", 1):
                continue
            other = self.opposite_of(column)
            if other is None:
                continue
            seen |= {name, self.names[other]}
            if np.array_equal(np.union1d(self.rows_of(column), self.rows_of(other)), rows):
                return tuple(sorted((name, self.names[other])))
        return ()

    def column_key(self, column: int) -> bytes:
        """Identical keys: the components lie on exactly the same rows (an equivalence class)."""
        return self.rows_of(column).tobytes()


def loss_observations(paths: tuple[PathEvidence, ...], background_per_link: float) -> Observations:
    """Rows for loss tomography (split by direction where the reflector told us)."""
    route = _INTERNER.route
    pieces: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    sent: list[int] = []
    lost: list[int] = []
    links: list[int] = []
    path_of: list[int] = []
    direction: list[int] = []
    slice_names: dict[str, int] = {}
    slice_of: list[int] = []

    def add_row(
        routed: tuple[np.ndarray, np.ndarray, int],
        row_sent: int,
        row_lost: int,
        path_index: int,
        row_direction: int,
        slice_id: int,
    ) -> None:
        columns, crossed, count = routed
        pieces.append(columns)
        counts.append(crossed)
        links.append(count)
        sent.append(row_sent)
        lost.append(row_lost)
        path_of.append(path_index)
        direction.append(row_direction)
        slice_of.append(slice_id)

    for index, p in enumerate(paths):
        if p.sent <= 0:
            continue
        slice_id = slice_names.setdefault(p.slice, len(slice_names))
        if p.forward_lost is not None and p.reverse_lost is not None:
            add_row(route(FORWARD, p.forward, None), p.sent, p.forward_lost, index, FORWARD, slice_id)
            if p.reverse is not None and p.sent > p.forward_lost:
                add_row(
                    route(REVERSE, p.reverse, p.forward),
                    p.sent - p.forward_lost,
                    p.reverse_lost,
                    index,
                    REVERSE,
                    slice_id,
                )
        else:
            add_row(route(BOTH, p.forward, p.reverse), p.sent, p.lost, index, BOTH, slice_id)
    link_counts = np.asarray(links, dtype=np.float64)
    return _assemble(
        pieces,
        counts,
        np.asarray(sent, dtype=np.float64),
        np.asarray(lost, dtype=np.float64),
        1.0 - (1.0 - background_per_link) ** link_counts,
        path_of,
        direction,
        slice_of,
        slice_names,
    )


def round_trip_observations(observations: Observations, indices: np.ndarray, path_count: int) -> Observations:
    """One row per listed path over all its rows together (what an RTT crosses), made from
    the loss rows by a sparse product rather than a second walk over the paths."""
    rows = len(observations.path)
    selector = sparse.csr_matrix((np.ones(rows), (observations.path, np.arange(rows))), shape=(path_count, rows))
    merged = (selector[indices] @ observations.matrix).tocsr()
    merged.data[:] = 1.0
    crossings = (selector[indices] @ observations.crossings).tocsr()
    slice_of_path = np.zeros(path_count, dtype=np.int16)
    slice_of_path[observations.path] = observations.slice_of_row
    zeros = np.zeros(len(indices))
    return Observations(
        names=observations.names,
        matrix=merged,
        crossings=crossings,
        by_column=merged.tocsc(),
        sent=zeros,
        lost=zeros,
        background=zeros,
        path=np.asarray(indices, dtype=np.int32),
        direction=np.full(len(indices), BOTH, dtype=np.int8),
        slice_of_row=slice_of_path[indices],
        slices=observations.slices,
    )


def _assemble(pieces, counts, sent, lost, background, path_of, direction, slice_of, slice_names) -> Observations:
    names = tuple(_INTERNER.names)
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    indptr = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    shape = (len(pieces), len(names))
    matrix = sparse.csr_matrix((np.ones(len(indices)), indices, indptr), shape=shape)
    crossings = sparse.csr_matrix((np.concatenate(counts) if counts else np.zeros(0), indices, indptr), shape=shape)
    return Observations(
        names=names,
        matrix=matrix,
        crossings=crossings,
        by_column=matrix.tocsc(),
        sent=sent,
        lost=lost,
        background=background,
        path=np.asarray(path_of, dtype=np.int32),
        direction=np.asarray(direction, dtype=np.int8),
        slice_of_row=np.asarray(slice_of, dtype=np.int16),
        slices=tuple(slice_names),
    )
