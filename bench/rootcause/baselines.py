"""The published localisation methods we compare against, from their papers, on the same rows.

Every baseline sees exactly what our engine sees: the epoch's rows as
`analyzer.rootcause.observations` builds them (a STAMP path split by direction is two rows),
so the probe budget and the direction information are equal. None of them forms
equivalence classes or classifies kinds; each returns components ranked by its own score,
as `Diagnosis` objects with one suspect, kind "link-loss" and all slices, so the harness
scores them exactly as it scores ours.

A row is *failed* for the baselines when its losses are unlikely under background loss
(binomial tail below `FAILED_ROW_ALPHA`): the same per-path evidence a TCP retransmission
gives 007 and a "bad path" gives Tomo, made robust to the 1e-4 background.

- 007 (Arzani et al., NSDI'18): every failed row votes 1/h for each of its h components;
  components are ranked by votes, and those with at least `VOTE_MIN` votes and
  `VOTE_SHARE` of the top vote are reported (the paper's threshold on the vote ranking).
- Tomo / SCFS (Duffield 2006): components on any good row are good; repeatedly take the
  component on the most unexplained failed rows (ties by name: a guess inside a class).
- NetBouncer (Tan et al., NSDI'19): x >= 0 minimising ||y - A x||^2 + lambda * sum(x) with
  y = -log(1 - loss) over all rows, solved by accelerated projected gradient (FISTA with a
  non-negativity projection) on the sparse matrix; components with -expm1(-x) above
  `NETBOUNCER_THRESHOLD` are reported, ranked by x.

The thresholds were set on the tuning seeds (bench/README.md), like ours.
"""

from __future__ import annotations

import numpy as np

from analyzer.rootcause.model import Diagnosis, Epoch
from analyzer.rootcause.observations import Observations, loss_observations
from analyzer.rootcause.significance import binomial_tail

BACKGROUND_PER_LINK = 1e-4
FAILED_ROW_ALPHA = 1e-4
VOTE_MIN = 2.0
VOTE_SHARE = 0.1
NETBOUNCER_LAMBDA = 1.0
NETBOUNCER_THRESHOLD = 0.03
NETBOUNCER_ITERATIONS = 150


def failed_rows(observations: Observations, alpha: float = FAILED_ROW_ALPHA) -> np.ndarray:
    lost = observations.lost
    failed = lost > 0
    if failed.any():
        tails = binomial_tail(lost[failed], observations.sent[failed], observations.background[failed])
        failed[np.flatnonzero(failed)] = tails < alpha
    return failed


def _ranked(observations: Observations, scores: dict[int, float], slices: tuple[str, ...]) -> list[Diagnosis]:
    top = max(scores.values(), default=1.0) or 1.0
    ordered = sorted(scores.items(), key=lambda item: (-item[1], observations.names[item[0]]))
    return [
        Diagnosis("link-loss", (observations.names[c],), slices, round(min(1.0, score / top), 3))
        for c, score in ordered
    ]


def vote_007(
    epoch: Epoch, alpha: float = FAILED_ROW_ALPHA, vote_min: float = VOTE_MIN, vote_share: float = VOTE_SHARE
) -> list[Diagnosis]:
    observations = loss_observations(epoch.paths, BACKGROUND_PER_LINK)
    failed = failed_rows(observations, alpha)
    if not failed.any():
        return []
    lengths = np.diff(observations.matrix.indptr).astype(np.float64)
    votes = observations.matrix.T @ (failed / np.maximum(lengths, 1.0))
    top = float(votes.max())
    chosen = np.flatnonzero((votes >= vote_min) & (votes >= vote_share * top))
    return _ranked(observations, {int(c): float(votes[c]) for c in chosen}, observations.slices)


def tomo_greedy(epoch: Epoch, alpha: float = FAILED_ROW_ALPHA) -> list[Diagnosis]:
    observations = loss_observations(epoch.paths, BACKGROUND_PER_LINK)
    failed = failed_rows(observations, alpha)
    if not failed.any():
        return []
    matrix = observations.matrix
    good_count = matrix.T @ (~failed).astype(np.float64)
    candidates = np.flatnonzero(((matrix.T @ failed.astype(np.float64)) > 0) & (good_count == 0))
    rows_of = {int(c): set(observations.rows_of(int(c)).tolist()) for c in candidates}
    unexplained = set(np.flatnonzero(failed).tolist())
    names = observations.names
    scores: dict[int, float] = {}
    while unexplained and rows_of:
        best = min(rows_of, key=lambda c: (-len(rows_of[c] & unexplained), names[c]))
        covered = rows_of.pop(best) & unexplained
        if not covered:
            break
        scores[best] = float(len(covered))
        unexplained -= covered
    return _ranked(observations, scores, observations.slices)


def netbouncer(
    epoch: Epoch,
    lam: float = NETBOUNCER_LAMBDA,
    threshold: float = NETBOUNCER_THRESHOLD,
    iterations: int = NETBOUNCER_ITERATIONS,
) -> list[Diagnosis]:
    observations = loss_observations(epoch.paths, BACKGROUND_PER_LINK)
    matrix = observations.matrix
    y = -np.log1p(-np.minimum(observations.loss, 0.999))
    x = _nonnegative_lasso(matrix, y, lam, iterations)
    loss = -np.expm1(-x)
    chosen = np.flatnonzero(loss >= threshold)
    return _ranked(observations, {int(c): float(x[c]) for c in chosen}, observations.slices)


def _nonnegative_lasso(matrix, y: np.ndarray, lam: float, iterations: int) -> np.ndarray:
    """FISTA for min ||y - A x||^2 + lam * sum(x), x >= 0."""
    transposed = matrix.T.tocsr()
    columns = matrix.shape[1]
    # Lipschitz constant of the gradient: 2 * largest eigenvalue of A^T A (power iteration)
    v = np.ones(columns) / np.sqrt(columns)
    for _ in range(20):
        w = transposed @ (matrix @ v)
        norm = float(np.linalg.norm(w))
        if norm == 0:
            return np.zeros(columns)
        v = w / norm
    step = 1.0 / (2.0 * norm * 1.05)
    x = np.zeros(columns)
    z = x.copy()
    t = 1.0
    for _ in range(iterations):
        gradient = 2.0 * (transposed @ (matrix @ z - y)) + lam
        x_next = np.maximum(z - step * gradient, 0.0)
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        z = x_next + ((t - 1.0) / t_next) * (x_next - x)
        x, t = x_next, t_next
    return x


BASELINES = {"007": vote_007, "tomo": tomo_greedy, "netbouncer": netbouncer}
