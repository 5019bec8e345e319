"""The API's bodies at the edge: what a probe request and a hint accept, and what they refuse;
and the models that show contract records, generated from the records' dataclasses: what a
record declares is what the API documents, field for field and type for type."""

from __future__ import annotations

from dataclasses import dataclass, fields

import pytest
from pydantic import ValidationError, create_model

from analyzer.api import models as m
from analyzer.api.models import Hint, ProbeRequest, ShipmentBody, Verdict
from analyzer.rootcause.model import HINT_KINDS
from collector.contract.codec import ShipmentParser
from collector.contract.examples import example_health, example_window
from collector.contract.records import PathKey, PathWindow
from collector.contract.shipment import ShipmentBatch


def test_a_probe_request_writes_its_target_address_in_canonical_form_with_defaults():
    request = ProbeRequest(agent="cnty1a", target="2001:DB8:0::0:1", slice="video")
    assert (request.target, request.kind, request.count) == ("2001:db8::1", "stamp", 10)
    assert ProbeRequest(agent="a", target="192.0.2.1", slice="egov", kind="icmp").target == "192.0.2.1"


@pytest.mark.parametrize(
    "change, error",
    [
        ({"target": "core.example"}, "'core.example' is not an IP address"),
        ({"count": 0}, "greater than or equal to 1"),
        ({"count": 1001}, "less than or equal to 1000"),
        ({"agent": ""}, "at least 1 character"),
        ({"kind": "udp"}, "'stamp', 'icmp' or 'trace'"),
        ({"when": "now"}, "Extra inputs are not permitted"),
    ],
)
def test_a_probe_request_refuses_what_no_agent_could_do(change, error):
    with pytest.raises(ValidationError, match=error):
        ProbeRequest(**{"agent": "a", "target": "::1", "slice": "video", **change})


def test_a_hint_takes_only_the_engines_kinds_and_a_confidence_from_0_to_1():
    fields = {"suspects": ["a>b"], "slices": ["video"], "evidence": [], "first_seen_ns": 1, "last_seen_ns": 2}
    assert [Hint(kind=kind, confidence=1.0, **fields).kind for kind in HINT_KINDS] == list(HINT_KINDS)
    with pytest.raises(ValidationError):
        Hint(kind="gremlins", confidence=0.5, **fields)
    with pytest.raises(ValidationError):
        Hint(kind="link-loss", confidence=1.5, **fields)


def test_a_shipment_needs_a_site_and_windows_and_ignores_what_it_does_not_know():
    body = ShipmentBody.model_validate({"site": "a", "windows": [], "agent_version": "9.9"})
    assert (list(body.observations), body.health, body.created_ns) == ([], None, 0)
    with pytest.raises(ValidationError, match="windows"):
        ShipmentBody.model_validate({"site": "a"})


def test_a_verdict_status_is_one_of_the_documented_ones():
    assert Verdict(status="no-policy", reason="no policy for slice x").burn_rates == {}
    with pytest.raises(ValidationError):
        Verdict(status="fine")


def test_the_shipment_body_has_the_batch_fields():
    assert list(m.ShipmentBody.model_fields) == [f.name for f in fields(ShipmentBatch)]
    schema = m.ShipmentBody.model_json_schema()
    assert schema["required"] == ["site", "windows"]
    assert schema["properties"]["windows"]["items"] == {"$ref": "#/$defs/PathWindow"}
    assert list(schema["$defs"]["PathWindow"]["properties"]) == [f.name for f in fields(PathWindow)]
    assert schema["properties"]["health"]["anyOf"][1] == {"type": "null"}


def test_the_shipment_body_documents_an_example_the_analyzer_takes():
    (example,) = m.ShipmentBody.model_json_schema()["examples"]
    shipment = ShipmentParser().from_dict(example)
    assert (shipment.windows, shipment.health) == ((example_window(),), example_health())


def test_a_path_ref_is_a_path_key():
    assert list(m.PathRef.model_fields) == [f.name for f in fields(PathKey)]
    assert m.PathRef(source="a", target="b", slice="video", kind="stamp").source == "a"


def test_a_window_summary_shows_window_fields_with_their_declared_types():
    schema = m.WindowSummary.model_json_schema()["properties"]
    assert (
        {"seq", "sent", "lost_unknown", "path_fingerprint"}
        <= set(schema)
        <= set(PathWindow.__dataclass_fields__) | {"loss_ratio", "rtt_p50_s", "rtt_p99_s", "ipdv_s", "pdv_p99_s"}
    )
    assert schema["sent"]["minimum"] == 0  # a Count, as PathWindow declares it
    assert "minimum" not in schema["seq"]


def test_a_field_added_to_a_record_is_in_its_model():
    @dataclass(frozen=True, slots=True)
    class GrownKey:
        source: str
        target: str
        slice: str
        kind: str
        flow_label: int | None = None

    grown = create_model("GrownRef", **m.contract_fields(GrownKey))
    assert list(grown.model_fields) == ["source", "target", "slice", "kind", "flow_label"]
    assert grown(source="a", target="b", slice="video", kind="stamp").flow_label is None
