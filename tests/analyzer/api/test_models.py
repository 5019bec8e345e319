"""The API models that show contract records are generated from the records' dataclasses:
what a record declares is what the API documents, field for field and type for type."""

from __future__ import annotations

from dataclasses import dataclass, fields

from pydantic import create_model

from analyzer.api import models as m
from collector.contract.records import PathKey, PathWindow
from collector.contract.shipment import ShipmentBatch


def test_the_shipment_body_has_the_batch_fields():
    assert list(m.ShipmentBody.model_fields) == [f.name for f in fields(ShipmentBatch)]
    schema = m.ShipmentBody.model_json_schema()
    assert schema["required"] == ["site", "windows"]
    assert schema["properties"]["windows"]["items"]["type"] == "object"
    assert schema["properties"]["health"]["anyOf"][1] == {"type": "null"}


def test_a_path_ref_is_a_path_key():
    assert list(m.PathRef.model_fields) == [f.name for f in fields(PathKey)]
    assert m.PathRef(source="a", target="b", slice="video", kind="stamp").source == "a"


def test_a_window_summary_shows_window_fields_with_their_declared_types():
    schema = m.WindowSummary.model_json_schema()["properties"]
    assert {"seq", "sent", "lost_unknown", "path_fingerprint"} <= set(schema) <= set(PathWindow.__dataclass_fields__) | {
        "loss_ratio", "rtt_p50_s", "rtt_p99_s", "ipdv_s", "pdv_p99_s"}
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
