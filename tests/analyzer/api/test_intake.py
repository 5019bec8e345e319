"""Shipment parsing and the fast record builders: the same records as the plain way."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analyzer.api.intake import MalformedShipment, ShipmentParser
from analyzer.sla.series import IntervalStats
from analyzer.store.fast_records import builder
from analyzer.store.memory import window_stats
from collector.contract.records import RTT_BUCKETS_NS, PathWindow
from collector.contract.shipment import decode_batch, dumps, encode_batch
from tests.analyzer_support import T0, batch, health, observation, window


def test_parsing_gives_what_decode_batch_gives():
    shipment = batch(window(T0), window(T0, target="edge", lost=10), observations=(observation(),), health=health())
    body = dumps(encode_batch(shipment))
    parsed = ShipmentParser().parse(body)
    assert parsed == decode_batch(json.loads(body)) == shipment
    assert [hash(w) for w in parsed.windows] == [hash(w) for w in shipment.windows]


def test_every_window_of_a_path_shares_one_key_object():
    parser = ShipmentParser()
    first = parser.parse(dumps(encode_batch(batch(window(T0)))))
    second = parser.parse(dumps(encode_batch(batch(window(T0 + 1)))))
    assert first.windows[0].key is second.windows[0].key


def test_an_observation_with_a_hop_that_is_not_an_address_is_refused():
    body = encode_batch(batch(window(T0), observations=(observation(),)))
    body["observations"][0]["hops"] = ["router-7"]
    with pytest.raises(MalformedShipment, match=r"observations\[0\]\.hops"):
        ShipmentParser().from_dict(body)


def test_a_window_boolean_is_not_taken_for_a_count():
    body = encode_batch(batch(window(T0)))
    body["windows"][0]["sent"] = True
    with pytest.raises(MalformedShipment, match=r"windows\[0\]\.sent: expected a non-negative integer"):
        ShipmentParser().from_dict(body)


def test_the_fast_builder_refuses_records_it_would_build_wrongly():
    @dataclass(frozen=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            assert self.value >= 0

    with pytest.raises(TypeError, match="__post_init__"):
        builder(Checked)
    assert builder(PathWindow)(window(T0).to_dict() | {"key": window(T0).key, "rtt_buckets": window(T0).rtt_buckets}) \
        == window(T0)


optional_ns = st.none() | st.integers(0, 10**10)


@given(sent=st.integers(0, 1000), lost=st.integers(0, 1000), buckets=st.lists(st.integers(0, 100),
       min_size=len(RTT_BUCKETS_NS) + 1, max_size=len(RTT_BUCKETS_NS) + 1), ipdv=optional_ns, pdv=optional_ns,
       owd=optional_ns, clock=optional_ns, level=st.floats(0, 1))
def test_one_window_stats_equal_interval_stats_of_it(sent, lost, buckets, ipdv, pdv, owd, clock, level):
    lost = min(lost, sent)
    fields = window(T0).to_dict() | {
        "key": window(T0).key, "sent": sent, "received": sent - lost, "lost_reverse": lost, "lost_forward": 0,
        "rtt_buckets": tuple(buckets), "ipdv_mean_abs_ns": ipdv, "pdv_p99_ns": pdv, "forward_owd_p99_ns": owd,
        "reverse_owd_p99_ns": owd, "clock_error_ns": clock,
    }
    w = PathWindow(**fields)
    assert window_stats(w, level) == IntervalStats.of([w], level)
