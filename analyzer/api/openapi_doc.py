"""What FastAPI's OpenAPI document of the API leaves out, added once over the whole document:

- the bearer scheme (`components.securitySchemes.bearer`), and `security` on every operation
  that asks for a token: each that documents a 401 (the writes) and, when reads need a token
  too, every GET (with its 401);
- request bodies described by hand (`openapi_extra`, e.g. POST /v1/windows's `ShipmentBody`)
  carry their nested models under `$defs`; they move to `components.schemas`, where the
  document's references point.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

BEARER = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "the analyzer's token: `--token-file`, "
        "a site's of `--site-tokens`, or for reads `--read-token-file`",
    }
}
READ_REFUSED = {
    "description": "missing or wrong bearer token",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
LOCAL_REFS, COMPONENT_REFS = "#/$defs/", "#/components/schemas/"


def complete_openapi(app: FastAPI, *, reads_need_token: bool) -> None:
    """Make `app.openapi()` answer the completed document (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            app.openapi_schema = completed(document, reads_need_token=reads_need_token)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def completed(document: dict[str, Any], *, reads_need_token: bool) -> dict[str, Any]:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components["securitySchemes"] = BEARER
    for operations in document.get("paths", {}).values():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            if reads_need_token and method == "get":
                responses.setdefault("401", READ_REFUSED)
            if "401" in responses:
                operation["security"] = [{"bearer": []}]
            for content in operation.get("requestBody", {}).get("content", {}).values():
                _hoist_definitions(content.get("schema", {}), schemas)
    return _point_at_components(document)


def _hoist_definitions(schema: dict[str, Any], schemas: dict[str, Any]) -> None:
    for name, definition in schema.pop("$defs", {}).items():
        if schemas.setdefault(name, definition) != definition:
            raise ValueError(f"two different schemas named {name!r} in the API's OpenAPI document")


def _point_at_components(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (COMPONENT_REFS + value[len(LOCAL_REFS) :])
            if key == "$ref" and isinstance(value, str) and value.startswith(LOCAL_REFS)
            else _point_at_components(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_point_at_components(item) for item in node]
    return node
