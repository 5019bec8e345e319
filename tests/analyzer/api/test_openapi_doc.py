"""The API's OpenAPI document says what a client must know: which operations take the bearer
token, and every field of a shipment's windows, observations and health; every reference in
it resolves."""

from __future__ import annotations

from typing import Any

from tests.api_support import Api


def document(**options) -> dict[str, Any]:
    response = Api(openapi=True, **options).get("/openapi.json", headers={"Authorization": "Bearer r"})
    assert response.status_code == 200
    return response.json()


def secured(doc: dict[str, Any]) -> set[str]:
    return {
        f"{method.upper()} {path}"
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
        if operation.get("security") == [{"bearer": []}]
    }


def test_the_bearer_scheme_is_declared_and_applied_to_the_writes():
    doc = document()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert secured(doc) == {"POST /v1/windows", "POST /probe"}


def test_with_a_read_token_every_operation_needs_the_bearer():
    doc = document(read_token="r")
    every = {f"{method.upper()} {path}" for path, operations in doc["paths"].items() for method in operations}
    assert secured(doc) == every
    assert all("401" in operations["get"]["responses"] for operations in doc["paths"].values() if "get" in operations)


def test_a_shipments_records_are_described_field_by_field():
    doc = document()
    body = doc["paths"]["/v1/windows"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["windows"]["items"] == {"$ref": "#/components/schemas/PathWindow"}
    schemas = doc["components"]["schemas"]
    window = schemas["PathWindow"]
    assert window["properties"]["sent"] == {"type": "integer", "minimum": 0, "title": "Sent"}
    assert window["properties"]["key"] == {"$ref": "#/components/schemas/PathKey"}
    assert {"key", "seq", "start_ns", "end_ns", "sent", "received"} <= set(window["required"])
    assert schemas["PathObservation"]["properties"]["flow"] == {"$ref": "#/components/schemas/FlowId"}
    assert "spool_depth" in schemas["CollectorHealth"]["properties"]


def test_every_reference_resolves():
    doc = document()

    def refs(node: Any):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for item in node:
                yield from refs(item)

    found = set(refs(doc))
    assert "#/components/schemas/PathWindow" in found
    assert {ref.removeprefix("#/components/schemas/") for ref in found} <= set(doc["components"]["schemas"])
