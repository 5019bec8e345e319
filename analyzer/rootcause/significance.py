"""Tail probabilities that decide whether losses exceed background.

Losses of one row are binomial (n probes, background ratio p); summed over many rows they
are close to Poisson with the summed expectation, which is what the aggregate tests use.
The thresholds themselves live in `EngineConfig`; these are plain vectorised functions.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def binomial_tail(lost: np.ndarray, sent: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """P(X >= lost) for X ~ Binomial(sent, ratio), elementwise."""
    return np.asarray(stats.binom.sf(np.asarray(lost) - 1, np.asarray(sent), np.clip(ratio, 1e-12, 1.0)))


def poisson_tail(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """P(X >= observed) for X ~ Poisson(expected), elementwise (observed may be fractional)."""
    observed = np.ceil(np.asarray(observed, dtype=np.float64) - 1e-9)
    return np.asarray(stats.poisson.sf(observed - 1, np.maximum(np.asarray(expected, dtype=np.float64), 1e-12)))
