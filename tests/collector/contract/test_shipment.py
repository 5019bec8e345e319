"""The shipment record: what leaves an agent together, and its defaults. Its wire form is
tested with its codec (tests/collector/contract/test_codec.py)."""

from __future__ import annotations

import dataclasses

import pytest

from collector.contract.shipment import ShipmentBatch
from tests.analyzer_support import T0, health, observation, window


def test_a_batch_needs_only_a_site_and_its_windows():
    batch = ShipmentBatch("cnty1a", (window(T0),))
    assert (batch.observations, batch.health, batch.created_ns) == ((), None, 0)


def test_a_batch_keeps_its_windows_in_order_and_is_frozen():
    batch = ShipmentBatch("cnty1a", (window(T0), window(T0 + 1)), (observation(),), health(), 7)
    assert [w.seq for w in batch.windows] == [T0, T0 + 1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        batch.site = "elsewhere"  # type: ignore[misc]
