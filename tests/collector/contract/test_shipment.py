"""The shipment's JSON wire form: round trips, fields a newer agent added, bodies assembled
window by window, and what a malformed body raises."""

from __future__ import annotations

import json

import pytest

from collector.contract.shipment import ShipmentBatch, assemble_body, decode_batch, dumps, encode_batch, window_json
from tests.analyzer_support import T0, batch, health, observation, window

OBSERVATION = observation(hops=("fd00::1", None, "fd00::2"))
HEALTH = health()


def full_batch(*seqs: int) -> ShipmentBatch:
    return batch(*(window(s) for s in seqs), observations=(OBSERVATION,), health=HEALTH)


def test_a_batch_round_trips_through_json():
    original = full_batch(T0, T0 + 1)
    wire = json.loads(json.dumps(encode_batch(original)))
    assert set(wire) == {"site", "created_ns", "windows", "observations", "health"}
    assert wire["observations"][0]["hops"] == ["fd00::1", None, "fd00::2"]
    assert decode_batch(wire) == original


def test_decoding_ignores_fields_a_newer_agent_added():
    wire = encode_batch(full_batch(T0))
    for record in (wire["windows"][0], wire["observations"][0], wire["health"]):
        record["added_later"] = 1
    assert decode_batch(wire) == full_batch(T0)


def test_a_minimal_body_takes_the_defaults():
    decoded = decode_batch({"site": "cnty1a", "windows": []})
    assert decoded == ShipmentBatch("cnty1a", (), (), None, 0)


@pytest.mark.parametrize("body, error", [
    ({"windows": []}, KeyError),
    ({"site": "a", "windows": [{"seq": 1}]}, KeyError),
    ({"site": "a", "windows": [], "health": {"site": "a"}}, TypeError),
])
def test_a_malformed_body_raises_for_the_receiver_to_refuse(body, error):
    with pytest.raises(error):
        decode_batch(body)


def test_a_body_assembled_window_by_window_is_the_encoded_batch():
    original = full_batch(T0, T0 + 1)
    assembled = assemble_body(original, [window_json(w) for w in original.windows])
    assert assembled == dumps(encode_batch(original)).encode()
    later_part = json.loads(assemble_body(original, [window_json(window(T0 + 2))], with_extras=False))
    assert (later_part["observations"], later_part["health"]) == ([], None)
    assert decode_batch(later_part).windows == (window(T0 + 2),)


def test_the_wire_form_is_compact():
    assert dumps({"a": [1, None]}) == '{"a":[1,null]}'
