"""The contract's one JSON codec: bodies and records round-trip exactly, every field is
checked by its declared type, and a newer agent's extra fields are ignored."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields

import pytest

from collector.contract.codec import (
    MalformedShipment,
    ShipmentParser,
    _declared_types,
    assemble_body,
    collector_health,
    dumps,
    encode_body,
    observation,
    record_dict,
    window_json,
)
from collector.contract.records import CollectorHealth, FlowId, PathObservation, PathWindow
from tests.analyzer_support import T0, batch, health, window
from tests.analyzer_support import observation as an_observation

OBSERVATION = an_observation(hops=("fd00::1", None, "fd00::2"))


def wire(shipment) -> dict:
    return json.loads(encode_body(shipment))


def test_a_batch_round_trips_through_json():
    original = batch(window(T0 + 1), window(T0 + 2), observations=(OBSERVATION,), health=health())
    body = wire(original)
    assert set(body) == {"site", "created_ns", "windows", "observations", "health"}
    assert body["observations"][0]["hops"] == ["fd00::1", None, "fd00::2"]
    assert ShipmentParser().from_dict(body) == original


def test_parsing_gives_the_encoded_batch_back():
    shipment = batch(window(T0), window(T0, target="edge", lost=10), observations=(an_observation(),), health=health())
    parsed = ShipmentParser().parse(encode_body(shipment))
    assert parsed == shipment
    assert [hash(w) for w in parsed.windows] == [hash(w) for w in shipment.windows]


def test_decoding_ignores_fields_a_newer_agent_added():
    body = wire(batch(window(T0 + 1), observations=(OBSERVATION,), health=health()))
    for record in (body["windows"][0], body["observations"][0], body["health"]):
        record["added_later"] = 1
    assert ShipmentParser().from_dict(body) == batch(window(T0 + 1), observations=(OBSERVATION,), health=health())


def test_records_round_trip_through_their_json():
    assert observation(json.loads(json.dumps(record_dict(OBSERVATION))), "observation") == OBSERVATION
    assert collector_health(json.loads(json.dumps(record_dict(health()))), "health") == health()
    assert ShipmentParser().window(json.loads(window_json(window(T0))), "window") == window(T0)


def test_a_window_on_the_wire_names_its_key_fields_and_round_trips():
    original = dataclasses.replace(window(T0, lost=3), rtt_p99_ns=None, clock_error_ns=7)
    data = json.loads(window_json(original))
    assert data["key"] == {"source": "cnty1a", "target": "core", "slice": "video", "kind": "stamp"}
    assert ShipmentParser().window(data, "window") == original


def test_an_observation_on_the_wire_has_its_silent_hops_as_null_and_round_trips():
    original = PathObservation("cnty1a", "core", "egov", FlowId("icmp", 0xABCDE, 0x4242), ("fd00::1", None), False, 5)
    data = json.loads(dumps(record_dict(original)))
    assert data["hops"] == ["fd00::1", None]
    assert data["flow"] == {"protocol": "icmp", "flow_label": 0xABCDE, "source_port": 0x4242, "destination_port": 0}
    assert observation(data, "observation") == original


def test_the_wire_form_is_compact():
    assert dumps({"a": [1, None]}) == '{"a":[1,null]}'


def test_a_body_assembled_window_by_window_is_the_batch():
    original = batch(window(T0 + 1), window(T0 + 2), observations=(OBSERVATION,), health=health())
    assembled = assemble_body(original, [window_json(w) for w in original.windows])
    assert ShipmentParser().parse(assembled) == original
    later_part = json.loads(assemble_body(original, [window_json(window(T0 + 3))], with_extras=False))
    assert (later_part["observations"], later_part["health"]) == ([], None)


def test_every_window_of_a_path_shares_one_key_object():
    parser = ShipmentParser()
    first = parser.parse(encode_body(batch(window(T0))))
    second = parser.parse(encode_body(batch(window(T0 + 1))))
    assert first.windows[0].key is second.windows[0].key


def test_an_observation_with_a_hop_that_is_not_an_address_is_refused():
    body = wire(batch(window(T0), observations=(an_observation(),)))
    body["observations"][0]["hops"] = ["router-7"]
    with pytest.raises(MalformedShipment, match=r"observations\[0\]\.hops"):
        ShipmentParser().from_dict(body)


def test_a_window_boolean_is_not_taken_for_a_count():
    body = wire(batch(window(T0)))
    body["windows"][0]["sent"] = True
    with pytest.raises(MalformedShipment, match=r"windows\[0\]\.sent: expected a non-negative integer"):
        ShipmentParser().from_dict(body)


@pytest.mark.parametrize(
    "record, where",
    [
        (PathWindow, "windows[0]"),
        (PathObservation, "observations[0]"),
        (CollectorHealth, "health"),
    ],
)
def test_every_field_of_every_record_is_checked(record, where):
    """A list where its type wants anything else: each field, also one added later, is refused by name."""
    for field in fields(record):
        body = wire(batch(window(T0), observations=(an_observation(),), health=health()))
        target = body[where.split("[")[0]]
        (target[0] if isinstance(target, list) else target)[field.name] = [[]]
        with pytest.raises(MalformedShipment) as refused:
            ShipmentParser().from_dict(body)
        assert refused.value.field.startswith(f"{where}.{field.name}"), field.name


def test_a_field_of_a_type_the_codec_cannot_check_is_refused_at_import():
    @dataclass(frozen=True, slots=True)
    class Grown:
        count: int
        tags: frozenset[str]

    with pytest.raises(TypeError, match=r"Grown\.tags"):
        _declared_types(Grown, int)
