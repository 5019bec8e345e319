"""Sample values written as prometheus_client's floatToGoString writes them: one at a time,
and every count of a scrape in bulk."""

from __future__ import annotations

import math
import random

import pytest
from prometheus_client.utils import floatToGoString

from collector.outputs.prometheus.sample_values import count_texts, number, value_texts

EDGES = [0, 1, 7, 999_999, 1_000_000, 1_000_001, 1_200_000, 2_500_010, 123_456_789, 10**15, 10**15 + 1]
EDGES += [2**53 - 1, 2**53, 2**53 + 1, 10**16, 10**17, 10**17 + 3, 10**100, -1, -999_999, -(2**53) - 1]


@pytest.mark.parametrize(
    "value",
    [0, 1, 7, 999_999, 1_000_000, 1_000_001, 123_456_789, 2**53 + 1, 10**17, -3, 0.0, 0.001031, 1e-9, 1e-5, 999_999.5]
    + [1e6, 1.5e6, -2.5, -999_999.9, -1e6, -1e7]
    + [math.inf, -math.inf, math.nan],
)
def test_a_number_is_written_as_prometheus_client_writes_it(value: float):
    assert number(value) == floatToGoString(value)


def test_counts_in_bulk_are_written_as_prometheus_client_writes_them():
    rng = random.Random(18)
    counts = EDGES + [rng.randrange(10**digits, 10 ** (digits + 1)) for digits in range(18) for _ in range(300)]
    counts += [rng.randrange(1, 10**6) * 10**zeros for zeros in range(12) for _ in range(50)]  # trailing zeros
    texts = count_texts(counts * 2)  # repeated: each written once
    assert set(texts) == set(counts)
    wrong = {count: text for count, text in texts.items() if text != floatToGoString(count).encode()}
    assert wrong == {}
    assert texts[1_000_000] == b"1e+06" and texts[2_500_010] == b"2.50001e+06" and texts[7] == b"7.0"
    assert count_texts([]) == {}


def test_values_one_by_one_are_written_as_prometheus_client_writes_them():
    values = [0.004321, 1e-05, 2.5e6, 7, 10**17, 0.004321, -1.5]
    assert value_texts(values) == tuple(floatToGoString(v).encode() for v in values)
