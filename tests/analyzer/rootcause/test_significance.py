"""The tail probabilities against closed forms and scipy's own distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analyzer.rootcause.significance import binomial_tail, poisson_tail


def test_binomial_tail_is_the_chance_of_at_least_that_many_losses():
    lost, sent, ratio = np.array([0, 1, 2, 10]), np.array([10, 10, 2, 10]), np.array([0.1, 0.1, 0.5, 0.1])
    got = binomial_tail(lost, sent, ratio)
    assert got[0] == 1.0  # at least none: certain
    assert got[1] == pytest.approx(1 - 0.9**10)
    assert got[2] == pytest.approx(0.25)
    assert got[3] == pytest.approx(1e-10)


def test_a_zero_background_ratio_makes_any_loss_vanishingly_unlikely_not_an_error():
    [tail] = binomial_tail(np.array([1]), np.array([1000]), np.array([0.0]))
    assert 0 < tail < 1e-8


def test_poisson_tail_rounds_fractional_observations_up():
    expected = np.array([2.0, 2.0, 2.0])
    got = poisson_tail(np.array([3, 2.2, 3.0000000001]), expected)
    at_least_3 = 1 - sum(math.exp(-2) * 2**k / math.factorial(k) for k in range(3))
    assert got[0] == pytest.approx(at_least_3)
    assert got[1] == pytest.approx(at_least_3)  # 2.2 losses: at least 3 whole ones
    assert got[2] == pytest.approx(at_least_3)  # float dust above a whole number does not round up


def test_poisson_tail_with_nothing_expected_still_orders_observations():
    low, high = poisson_tail(np.array([1, 5]), np.array([0.0, 0.0]))
    assert 0 < high < low < 1e-10
    assert poisson_tail(np.array([7]), np.array([3.5]))[0] == pytest.approx(stats.poisson.sf(6, 3.5))
