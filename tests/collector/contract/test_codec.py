"""The contract's one JSON codec: bodies and records round-trip exactly, every field is
checked by its declared type, and a newer agent's extra fields are ignored. Every test runs
twice: with msgspec checking the windows, and the pure-Python way alone (no msgspec)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields

import pytest

from collector.contract import codec
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


@pytest.fixture(autouse=True, params=["msgspec", "pure-python"])
def decoder(request, monkeypatch) -> str:
    assert codec._wire_decoder is not None, "msgspec is in requirements.lock: the fast way must be there"
    if request.param == "pure-python":
        monkeypatch.setattr(codec, "_wire_decoder", None)
    return request.param


def wire(shipment) -> dict:
    return json.loads(encode_body(shipment))


def test_a_batch_round_trips_through_json():
    original = batch(window(T0 + 1), window(T0 + 2), observations=(OBSERVATION,), health=health())
    body = wire(original)
    assert set(body) == {"site", "created_ns", "windows", "observations", "health", "marked_blocks"}
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


@pytest.mark.parametrize("field", ["observations", "marked_blocks"])
@pytest.mark.parametrize("value", [{}, None, "", 0])
def test_record_lists_that_are_not_a_list_are_refused_even_when_empty(field, value):
    """An empty object was taken for no records (found by schemathesis)."""
    body = wire(batch(window(T0)))
    body[field] = value
    with pytest.raises(MalformedShipment, match=field):
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


# -- bounds: nothing let in can fail later -----------------------------------------------------


def refused(body: dict | bytes | str, match: str) -> None:
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    with pytest.raises(MalformedShipment, match=match):
        ShipmentParser().parse(raw)


def test_an_integer_too_long_for_python_is_refused_as_malformed():
    refused('{"site": "a", "windows": [], "created_ns": ' + "9" * 5000 + "}", "not JSON this analyzer takes")


def test_json_nested_too_deep_is_refused_as_malformed():
    refused("[" * 100_000 + "]" * 100_000, "nested too deep")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(constant):
    body = json.dumps(wire(batch(window(T0), health=health()))).replace(
        '"cpu_seconds_total":', f'"cpu_seconds_total": {constant}, "x":'
    )
    refused(body, f"{constant} is not a number")


@pytest.mark.parametrize(
    "field, value, match",
    [
        ("sent", 10**309, r"windows\[0\]\.sent: expected a non-negative integer up to 2\*\*32"),
        ("rtt_sum_ns", 2**64, r"windows\[0\]\.rtt_sum_ns: expected a non-negative integer up to 2\*\*63-1"),
        ("rtt_p99_ns", -(2**70), r"windows\[0\]\.rtt_p99_ns: expected a 64-bit integer or null"),
        ("target_address", "f" * 256, r"windows\[0\]\.target_address: expected a string of at most 255"),
        ("path_fingerprint", "f" * 256, r"windows\[0\]\.path_fingerprint: expected null or a string of at most 255"),
    ],
)
def test_window_fields_are_bounded(field, value, match):
    body = wire(batch(window(T0)))
    body["windows"][0][field] = value
    refused(body, match)


def test_a_bucket_count_of_ten_to_the_309_is_refused():
    body = wire(batch(window(T0)))
    body["windows"][0]["rtt_buckets"][3] = 10**309
    refused(body, r"windows\[0\]\.rtt_buckets: the histogram holds 1000000000.*\(310 characters\) replies, not the 10")


def test_a_path_name_longer_than_the_bound_is_refused():
    body = wire(batch(window(T0)))
    body["windows"][0]["key"]["target"] = "t" * 256
    refused(body, r"windows\[0\]\.key\.target: expected 1 to 255 characters")


def test_lists_are_bounded():
    body = wire(batch(window(T0)))
    body["windows"] = body["windows"] * 10_001
    refused(body, "windows: expected a list of at most 10000 path windows")
    body = wire(batch(window(T0), observations=(OBSERVATION,)))
    body["observations"][0]["hops"] = ["fd00::1"] * 256
    refused(body, r"observations\[0\]\.hops: expected a list of at most 255")


def test_a_flow_label_beyond_twenty_bits_is_refused():
    body = wire(batch(window(T0), observations=(OBSERVATION,)))
    body["observations"][0]["flow"]["flow_label"] = 1 << 20
    refused(body, r"observations\[0\]\.flow\.flow_label: expected an integer from 0 to 1048575")


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"lost_forward": 100_000}, r"windows\[0\]\.received: received \(10\) and lost \(100000\) add up to more"),
        ({"received": 11}, r"windows\[0\]\.received: received \(11\) and lost \(0\) add up to more than sent \(10\)"),
        ({"reordered": 11}, r"windows\[0\]\.reordered: 11 is more than the 10 replies received"),
        ({"dscp_remarked": 11}, r"windows\[0\]\.dscp_remarked"),
        ({"icmp_errors": 11}, r"windows\[0\]\.icmp_errors: 11 is more than the 10 probes sent"),
        ({"seq": T0 + 100_000}, r"windows\[0\]\.seq: window 170100000 of 10000000000 ns does not start at"),
        ({"end_ns": T0 * 10**10 + 2 * 86_400 * 10**9}, r"windows\[0\]\.end_ns: expected a window end after its start"),
    ],
)
def test_counts_that_do_not_add_up_are_refused(changes, match):
    body = wire(batch(window(T0)))
    body["windows"][0].update(changes)
    refused(body, match)


def test_a_histogram_that_does_not_hold_the_replies_is_refused():
    body = wire(batch(window(T0)))
    body["windows"][0]["rtt_buckets"][0] += 1
    refused(body, r"windows\[0\]\.rtt_buckets: the histogram holds 11 replies, not the 10 received")


# -- the two ways agree ------------------------------------------------------------------------


def test_the_fast_way_is_taken_when_msgspec_is_there(decoder):
    assert ShipmentParser()._fast is (decoder == "msgspec")
    assert ShipmentParser(fast=False)._fast is False


def test_both_ways_give_equal_batches_sharing_keys():
    shipment = batch(*(window(T0 + i, lost=i % 2) for i in range(3)), health=health())
    body = encode_body(shipment)
    parser = ShipmentParser()
    assert parser.parse(body) == ShipmentParser(fast=False).parse(body) == shipment
    again = parser.parse(body)
    assert again.windows[0].key is again.windows[1].key is parser.parse(body).windows[2].key


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(encode_body(batch(window(T0))).decode().encode("utf-16"), id="utf-16"),
        pytest.param(encode_body(batch(window(T0))).replace(b'"site":"', b'"site":"\\ud800'), id="lone-surrogate"),
    ],
)
def test_what_msgspec_refuses_but_json_takes_goes_the_python_way(body):
    assert ShipmentParser().parse(body) == ShipmentParser(fast=False).parse(body)
