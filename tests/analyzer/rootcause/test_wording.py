"""How diagnoses read: suspect classes in a sentence, loss percentages, the ambiguity discount."""

from __future__ import annotations

import pytest

from analyzer.rootcause.wording import ambiguity, describe, percent


def test_up_to_three_suspects_are_all_named_and_more_are_counted():
    assert describe(("a>b",)) == "a>b"
    assert describe(("a>b", "b", "b>c")) == "a>b = b = b>c"
    assert describe(("a>b", "b", "b>c", "c")) == "a>b (and 3 components probes cannot tell from it)"


@pytest.mark.parametrize(
    "ratio, shown",
    [
        (0.0, "0%"),
        (1.0, "100%"),
        (0.25, "25%"),
        (0.1, "10%"),
        (0.0999, "10.0%"),
        (0.034, "3.4%"),
        (0.01, "1.0%"),
        (0.0042, "0.42%"),
        (0.0001, "0.01%"),
    ],
)
def test_percentages_keep_the_digits_that_matter(ratio, shown):
    assert percent(ratio) == shown


def test_each_member_probes_cannot_split_costs_a_quarter():
    assert [ambiguity(n) for n in (1, 2, 3, 5)] == [1.0, 0.8, pytest.approx(2 / 3), 0.5]
