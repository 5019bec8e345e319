"""Writes need the bearer token; without one configured, no token can be right."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import HTTPException, Request

from analyzer.api import models as m

WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": m.Problem, "description": "missing or wrong bearer token"},
    403: {"model": m.Problem, "description": "writes are disabled: no token configured"},
}


def require_token(request: Request, token: str | None) -> None:
    if token is None:
        raise HTTPException(
            403,
            "writes are disabled: this analyzer runs without a token "
            "(start it with --token-file to accept shipments and probes)",
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise HTTPException(
            401, "missing bearer token: send 'Authorization: Bearer TOKEN'", headers={"WWW-Authenticate": "Bearer"}
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise HTTPException(401, "wrong bearer token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
