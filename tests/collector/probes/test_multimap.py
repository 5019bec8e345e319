"""OneOrMany: one value held as itself, several as a list, and back to one on removal."""

from __future__ import annotations

import pytest

from collector.probes.multimap import OneOrMany


def test_values_come_back_in_the_order_added_and_a_key_without_any_has_none():
    found: OneOrMany[str, int] = OneOrMany()
    assert found.get("a") == ()
    found.add("a", 1)
    assert list(found.get("a")) == [1]
    found.add("a", 2)
    found.add("a", 3)
    found.add("b", 4)
    assert list(found.get("a")) == [1, 2, 3] and list(found.get("b")) == [4]


def test_removing_goes_back_to_one_value_then_to_none():
    found: OneOrMany[str, str] = OneOrMany()
    for value in ("x", "y"):
        found.add("k", value)
    found.remove("k", "x")
    assert list(found.get("k")) == ["y"]
    found.remove("k", "y")
    assert found.get("k") == ()
    with pytest.raises(KeyError):
        found.remove("k", "y")
