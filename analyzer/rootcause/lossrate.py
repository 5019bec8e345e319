"""Loss-rate tomography for gray loss: which classes carry a loss rate above background.

Model (NetBouncer, Tan et al., NSDI'19): a row's success rate is the product of its
components' success rates, so y = -log(1 - loss) is additive, y_row = sum of x_component,
and the rates are the non-negative least-squares solution of y = A x. Choices here:

1. Candidates first. A component is a candidate only when the rows through it lost
   significantly more than background predicts (one-sided Poisson tail of the summed
   losses below the per-component alpha, and an excess rate of at least `min_rate`). Columns
   elsewhere are fixed at zero, which keeps the system to the few hundred columns near the
   trouble. Every component crossed is tested, so the per-component alpha is the epoch's
   `epoch_alpha` shared among them (Bonferroni), capped at `alpha`: at national scale ~20,000
   components at 1e-6 each raised a false alarm on ~4 healthy epochs in 1,000; on the lab's
   hundred the cap holds.
2. Equivalence classes are one column each (identical columns make NNLS arbitrary).
3. A round-trip row crosses a node or the agent's host twice, so its design entry is 2.
   Rows with the same candidate classes and crossings are summed before fitting (sent and lost
   are sufficient statistics), and each is weighted by the inverse standard deviation of
   -log(1 - p_hat), sqrt(n (1 - p) / p), so a row of 10,000 probes counts more than one of 100.
4. Explaining away: the fit spreads loss over neighbours that share rows with the culprit.
   Every class the fit keeps must still be significant given the others (its rows' losses
   against background plus what the other classes' rates predict). The least significant
   failing class is dropped and the fit redone until all pass (after `_MAX_REFITS` fits,
   all failing classes go at once, which bounds the time on a badly tangled epoch).
5. Both directions of a link (`opposite`, when given): a gray loss on a link usually hits
   both directions alike, and rows through either direction together hold nearly twice the
   excess of each alone against less than twice its background. Each link is then tested a
   second time over the rows through either direction (one more test per link in the
   Bonferroni count), and both directions are candidates when that is significant; in the
   fit, a class whose opposite direction is kept passes on the two directions' rows together
   (everything else explained away) when its own rows lean the same way (the tail of its
   rows, or of those not crossing the opposite, below `PAIR_SUPPORT_ALPHA`), so the clean
   direction of a one-way loss is not named with it. Its rows not crossing the opposite
   count on their own because the round-trip rows crossing both are explained by the
   opposite's rate: a two-way loss seen more on one side had its other side dropped.
6. At most `MAX_CANDIDATES` candidates, the most significant: a loss on a core link makes
   every component sharing many of its paths significant, and the culprit is always among
   the strongest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, sparse

from analyzer.rootcause.boolean import equivalence_classes
from analyzer.rootcause.observations import Observations
from analyzer.rootcause.significance import poisson_tail

MAX_CANDIDATES = 300  # bounds the fit when a busy core link makes hundreds of neighbours significant
_MAX_REFITS = 8  # then every class still failing is dropped at once
# a direction passing on its link's two directions together must lean that way on its own rows
PAIR_SUPPORT_ALPHA = 1e-2


@dataclass(frozen=True, slots=True)
class GrayFinding:
    columns: tuple[int, ...]  # the equivalence class
    rate: float  # estimated loss ratio of the class
    p_value: float  # its losses given background and the other findings
    rows: np.ndarray  # active rows through the class
    lost: float  # losses on those rows
    expected: float  # what background and the other findings explain of them


def component_alpha(tested: int, alpha: float, epoch_alpha: float) -> float:
    """The significance each of `tested` components is held to, so that a healthy epoch raises
    a false finding with probability at most `epoch_alpha` (and no component above `alpha`)."""
    return min(alpha, epoch_alpha / max(tested, 1))


def candidate_columns(
    observations: Observations,
    active: np.ndarray,
    alpha: float,
    min_rate: float,
    min_excess: float,
    epoch_alpha: float,
    opposite: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Columns whose active rows lost significantly more than background (or, with
    `opposite`, whose link's rows in either direction did: see the module's 5.), the most
    significant `MAX_CANDIDATES` of them, and the per-component alpha they were held to."""
    weight = active.astype(np.float64)
    lost_rows = observations.lost * weight
    expected_rows = observations.sent * observations.background * weight
    sent_rows = observations.sent * weight
    matrix_t = observations.matrix.T
    lost, expected, sent = matrix_t @ lost_rows, matrix_t @ expected_rows, matrix_t @ sent_rows
    tested = int(np.count_nonzero(sent))
    pairs = None
    if opposite is not None:
        first = np.flatnonzero(opposite > np.arange(len(opposite)))  # each link once
        either = _either_direction(observations.matrix, first, opposite[first]).T
        pair_lost, pair_expected, pair_sent = either @ lost_rows, either @ expected_rows, either @ sent_rows
        tested += int(np.count_nonzero(pair_sent))
        pairs = (first, opposite[first], pair_lost, pair_expected, pair_sent)
    alpha = component_alpha(tested, alpha, epoch_alpha)
    tail_of = dict(zip(*_significant(lost, expected, sent, min_rate, min_excess, alpha)))
    if pairs is not None:
        first, second, pair_lost, pair_expected, pair_sent = pairs
        for link, tail in zip(*_significant(pair_lost, pair_expected, pair_sent, min_rate, min_excess, alpha)):
            for column in (int(first[link]), int(second[link])):
                if lost[column] > expected[column]:
                    tail_of[column] = min(tail_of.get(column, 1.0), tail)
    maybe = np.asarray(sorted(tail_of), dtype=np.int64)
    if len(maybe) > MAX_CANDIDATES:
        tails = np.asarray([tail_of[c] for c in maybe.tolist()])
        keep = np.lexsort((maybe, tails))[:MAX_CANDIDATES]
        maybe = np.sort(maybe[keep])
    return maybe, alpha


def _significant(
    lost: np.ndarray, expected: np.ndarray, sent: np.ndarray, min_rate: float, min_excess: float, alpha: float
) -> tuple[list[int], list[float]]:
    """Indices whose losses exceed background by the minimum excess and rate, at `alpha`."""
    excess = lost - expected
    maybe = np.flatnonzero((excess >= min_excess) & (excess >= min_rate * sent))
    if len(maybe) == 0:
        return [], []
    tails = poisson_tail(lost[maybe], expected[maybe])
    significant = tails < alpha
    return maybe[significant].tolist(), tails[significant].tolist()


def _either_direction(matrix: sparse.csr_matrix, one: np.ndarray, other: np.ndarray) -> sparse.csr_matrix:
    """Rows x links: 1 where the row crosses the link in either direction (`one`, `other`)."""
    links = np.arange(len(one))
    pick = sparse.csr_matrix(
        (np.ones(2 * len(one)), (np.concatenate([one, other]), np.concatenate([links, links]))),
        shape=(matrix.shape[1], len(one)),
    )
    either = (matrix @ pick).tocsr()
    either.data[:] = 1.0
    return either


def localise_gray(
    observations: Observations,
    active: np.ndarray,
    alpha: float,
    min_rate: float,
    min_excess: float,
    allowed: np.ndarray | None = None,
    epoch_alpha: float = 1.0,
    opposite: np.ndarray | None = None,
) -> list[GrayFinding]:
    """Gray-loss findings; `allowed` (a boolean column mask) as in `boolean.greedy_cover`:
    a class is a candidate when any of its members is allowed. `alpha` caps the per-component
    significance, `epoch_alpha` is shared among the components tested (see the module's 1.);
    `opposite` (`Observations.opposite_columns`) tests links in both directions too (5.)."""
    columns, alpha = candidate_columns(observations, active, alpha, min_rate, min_excess, epoch_alpha, opposite)
    if len(columns) == 0:
        return []
    classes = equivalence_classes(observations, columns)
    if allowed is not None:
        classes = [cls for cls in classes if allowed[list(cls)].any()]
        if not classes:
            return []
    opposite_class = None if opposite is None else _opposite_classes(classes, opposite)
    representative = np.asarray([cls[0] for cls in classes])
    sub = observations.crossings[:, representative].tocsr()
    sub.sort_indices()
    rows = np.flatnonzero(active & (np.diff(sub.indptr) > 0))
    if len(rows) == 0:
        return []
    groups: dict[tuple, int] = {}
    group_of_row = np.empty(len(rows), dtype=np.int64)
    indices, data, indptr = sub.indices, sub.data, sub.indptr
    for i, row in enumerate(rows.tolist()):
        start, end = indptr[row], indptr[row + 1]
        key = (indices[start:end].tobytes(), data[start:end].tobytes())
        group_of_row[i] = groups.setdefault(key, len(groups))
    design = np.zeros((len(groups), len(classes)))
    for (columns, crossed), g in groups.items():
        design[g, np.frombuffer(columns, dtype=indices.dtype)] = np.frombuffer(crossed, dtype=data.dtype)
    sent = np.bincount(group_of_row, observations.sent[rows], len(groups))
    lost = np.bincount(group_of_row, observations.lost[rows], len(groups))
    # background of a group: the sent-weighted mean of its rows' background ratios
    background = np.bincount(group_of_row, observations.sent[rows] * observations.background[rows], len(groups)) / sent
    observed = np.minimum(lost / sent, 0.999)
    y = -np.log1p(-observed) + np.log1p(-background)
    p = np.maximum(observed, np.maximum(background, 1.0 / sent))
    weight = np.sqrt(sent * (1.0 - p) / p)
    keep = np.ones(len(classes), dtype=bool)
    for _ in range(_MAX_REFITS):
        x = np.zeros(len(classes))
        if keep.any():
            x[keep], _ = optimize.nnls(design[:, keep] * weight[:, None], y * weight, maxiter=50 * len(classes))
        tails, own = _explained_away(design, x, sent, lost, background)
        if opposite_class is not None:
            both, own_rows = _pair_tails(design, x, sent, lost, background, opposite_class)
            leaning = np.minimum(tails, own_rows) < PAIR_SUPPORT_ALPHA
            tails = np.where(leaning, np.minimum(tails, both), tails)
        failing = keep & ((x <= 0) | (tails >= alpha) | (own < min_rate))
        if not failing.any():
            break
        worst = max(np.flatnonzero(failing), key=lambda i: (x[i] <= 0, tails[i], -own[i]))
        keep[worst] = False
    else:
        keep &= ~failing
    findings = []
    group_rows: list[list[int]] = [[] for _ in groups]
    for i, row in enumerate(rows.tolist()):
        group_rows[group_of_row[i]].append(row)
    for i in np.flatnonzero(keep).tolist():
        members = np.flatnonzero(design[:, i])
        class_rows = np.sort(np.concatenate([np.asarray(group_rows[g], dtype=np.int64) for g in members]))
        others = x.copy()
        others[i] = 0.0
        expected = float(np.sum(sent[members] * (1 - (1 - background[members]) * np.exp(-(design[members] @ others)))))
        findings.append(
            GrayFinding(
                classes[i], float(-np.expm1(-x[i])), float(tails[i]), class_rows, float(lost[members].sum()), expected
            )
        )
    return findings


def _opposite_classes(classes: list[tuple[int, ...]], opposite: np.ndarray) -> np.ndarray:
    """Per class, the class holding the other direction of one of its links (-1: none)."""
    class_of = {c: i for i, cls in enumerate(classes) for c in cls}
    out = np.full(len(classes), -1, dtype=np.int64)
    for i, cls in enumerate(classes):
        for column in cls:
            other = class_of.get(int(opposite[column]), i)
            if other != i:
                out[i] = other
                break
    return out


def _pair_tails(
    design: np.ndarray,
    x: np.ndarray,
    sent: np.ndarray,
    lost: np.ndarray,
    background: np.ndarray,
    opposite_class: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per class whose opposite direction is kept too: the tail probability of the losses on
    rows through either, given everything but the two of them, and of the losses on its own
    rows that do not cross the opposite (1 elsewhere). The second is how a direction leans
    on its own: a round-trip row crosses both, and the opposite's rate explains its losses
    away, so the tail over all its rows hid a weaker direction of a two-way loss."""
    total = design @ x
    tails = np.ones(len(x))
    own_rows = np.ones(len(x))
    for i in np.flatnonzero((x > 0) & (opposite_class >= 0)):
        j = opposite_class[i]
        if x[j] <= 0:
            continue
        members = (design[:, i] > 0) | (design[:, j] > 0)
        without = total[members] - design[members, i] * x[i] - design[members, j] * x[j]
        tails[i] = _losses_beyond(members, without, sent, lost, background)[0]
        alone = (design[:, i] > 0) & (design[:, j] == 0)
        if alone.any():
            own_rows[i] = _losses_beyond(alone, total[alone] - design[alone, i] * x[i], sent, lost, background)[0]
    return tails, own_rows


def _explained_away(
    design: np.ndarray, x: np.ndarray, sent: np.ndarray, lost: np.ndarray, background: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per class: the tail probability of its rows' losses given everything but itself,
    and the excess loss ratio left for it to explain."""
    total = design @ x
    tails = np.ones(len(x))
    own = np.zeros(len(x))
    for i in np.flatnonzero(x > 0):
        members = design[:, i] > 0
        tails[i], excess = _losses_beyond(members, total[members] - x[i], sent, lost, background)
        own[i] = excess / float(sent[members].sum())
    return tails, own


def _losses_beyond(
    members: np.ndarray, without: np.ndarray, sent: np.ndarray, lost: np.ndarray, background: np.ndarray
) -> tuple[float, float]:
    """The `members` rows' losses against what background and the loss rates `without` (per
    member row: the rates of the classes still counted) predict: the tail probability of
    as many, and the losses beyond the prediction."""
    expected = float(np.sum(sent[members] * (1 - (1 - background[members]) * np.exp(-without))))
    observed = float(lost[members].sum())
    return float(poisson_tail(np.asarray([observed]), np.asarray([expected]))[0]), observed - expected
