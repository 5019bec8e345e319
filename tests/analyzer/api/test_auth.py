"""The write check (analyzer.api.auth) on an app of its own: 403 while no token is configured,
401 for a missing or wrong bearer token with the header that says which, through for the right
one, and the two refusals in the OpenAPI document."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request

from analyzer.api.auth import WRITE_ERRORS, require_token
from tests.api_support import call

TOKEN = "s3cret"


def writable(token: str | None) -> FastAPI:
    """One write endpoint behind the check."""
    app = FastAPI()

    @app.post("/write", responses=WRITE_ERRORS)
    def guarded_write(request: Request) -> dict:
        require_token(request, token)
        return {"written": True}

    return app


def write(app: FastAPI, authorization: str | None) -> tuple[int, str, str | None]:
    """(status, detail or "", WWW-Authenticate) of one write."""
    response = call(app, "POST", "/write", headers={} if authorization is None else {"Authorization": authorization})
    return response.status_code, response.json().get("detail", ""), response.headers.get("www-authenticate")


@pytest.mark.parametrize("authorization", [f"Bearer {TOKEN}", f"bearer {TOKEN}"])
def test_the_right_bearer_token_writes_whatever_the_schemes_case(authorization):
    assert write(writable(TOKEN), authorization) == (200, "", None)


@pytest.mark.parametrize("authorization", [None, "", TOKEN, f"Basic {TOKEN}", "Bearer"])
def test_a_missing_bearer_token_is_401_saying_how_to_send_one(authorization):
    assert write(writable(TOKEN), authorization) == (
        401,
        "missing bearer token: send 'Authorization: Bearer TOKEN'",
        "Bearer",
    )


@pytest.mark.parametrize("authorization", ["Bearer s3cre", "Bearer s3cret2", "Bearer S3CRET"])
def test_a_wrong_bearer_token_is_401_invalid_token(authorization):
    assert write(writable(TOKEN), authorization) == (401, "wrong bearer token", 'Bearer error="invalid_token"')


@pytest.mark.parametrize("authorization", [None, f"Bearer {TOKEN}"])
def test_without_a_token_configured_every_write_is_403(authorization):
    status, detail, challenge = write(writable(None), authorization)
    assert (status, challenge) == (403, None)
    assert detail == (
        "writes are disabled: this analyzer runs without a token "
        "(start it with --token-file or --site-tokens to accept shipments and probes)"
    )


def test_the_openapi_document_names_both_refusals():
    responses = call(writable(TOKEN), "GET", "/openapi.json").json()["paths"]["/write"]["post"]["responses"]
    assert responses["401"]["description"] == "missing or wrong bearer token"
    assert responses["403"]["description"] == "writes are disabled (no token configured), or not this token's"
    assert responses["401"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
