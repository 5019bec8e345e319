"""Whether a count of bad events shows an allowed share exceeded, or only cannot rule it out.

Loss and delay-percentile objectives bound a share of events: at most 0.1% of probes lost,
at most 1% of replies above the delay bound (p99). One interval of a lightly probed slice
cannot resolve such a bound: with 160 probes and a 0.1% bound, a single lost probe reads
0.6%, six times the bound, and yet happens in one interval of seven on a path that loses
exactly 0.1%. An interval is therefore found in violation only when its bad events are
unlikely under the bound itself: P(X >= bad) < `SIGNIFICANCE` for X ~ Poisson(events x
allowed share), the binomial's limit for the small shares objectives bound (one-sided: a
share at or below the bound is met however few the events).
"""

from __future__ import annotations

import math

SIGNIFICANCE = 1e-3
_NORMAL_FROM = 500.0  # expected bad events from which the normal approximation is exact enough
_Z = 3.090232  # one-sided normal quantile of SIGNIFICANCE


def shows_excess(bad: int, events: int, allowed_share: float) -> bool:
    """Whether `bad` of `events` show a share of bad events above `allowed_share`."""
    expected = events * allowed_share
    if bad <= expected:
        return False
    if expected <= 0:
        return True  # nothing allowed: one bad event shows it
    if expected >= _NORMAL_FROM:
        return (bad - 0.5 - expected) / math.sqrt(expected) > _Z
    if bad > expected + 8 * math.sqrt(expected) + 10:  # far beyond any tail above SIGNIFICANCE: skip the sum
        return True
    term = math.exp(-expected)
    below = 0.0  # P(X < bad)
    for i in range(bad):
        below += term
        term *= expected / (i + 1)
    return 1.0 - below < SIGNIFICANCE
