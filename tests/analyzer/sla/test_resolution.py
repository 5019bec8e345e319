"""Whether bad events show an allowed share exceeded (analyzer/sla/resolution.py), against scipy."""

from __future__ import annotations

import pytest
from scipy import stats

from analyzer.sla.resolution import SIGNIFICANCE, shows_excess


@pytest.mark.parametrize("events", [10, 160, 1_000, 16_000, 1_000_000])
@pytest.mark.parametrize("share", [0.001, 0.01, 0.05])
def test_matches_the_poisson_tail(events, share):
    expected = events * share
    for bad in range(int(expected) + 1, int(expected + 10 * expected**0.5 + 15)):
        tail = stats.poisson.sf(bad - 1, expected)
        if abs(tail - SIGNIFICANCE) > 0.0005:  # the normal approximation may differ right at the edge
            assert shows_excess(bad, events, share) == (tail < SIGNIFICANCE), (bad, tail)


def test_at_or_below_the_share_never_shows_excess():
    assert not shows_excess(0, 0, 0.001)
    assert not shows_excess(1, 1000, 0.001)
    assert not shows_excess(10, 100, 0.1)


def test_the_lab_video_slices_single_lost_probe_shows_nothing_three_do():
    assert not shows_excess(1, 160, 0.001)
    assert not shows_excess(2, 160, 0.001)
    assert shows_excess(3, 160, 0.001)


def test_nothing_allowed_one_bad_event_shows_it():
    assert shows_excess(1, 1000, 0.0)
