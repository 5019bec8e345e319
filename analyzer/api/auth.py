"""Bearer tokens: writes need the shared or a site's token (analyzer.api.tokens); without any
configured, no token can be right. Every check reads only the headers: routes call it before
they read a byte of the body."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request

from analyzer.api import models as m
from analyzer.api.tokens import Writer, WriteTokens

WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": m.Problem, "description": "missing or wrong bearer token"},
    403: {"model": m.Problem, "description": "writes are disabled (no token configured), or not this token's"},
}


def bearer(request: Request) -> str:
    """The bearer token the request carries, or 401 saying how to send one."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise HTTPException(
            401, "missing bearer token: send 'Authorization: Bearer TOKEN'", headers={"WWW-Authenticate": "Bearer"}
        )
    return given.strip()


def wrong_token() -> HTTPException:
    return HTTPException(401, "wrong bearer token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def require_token(request: Request, token: str | None) -> None:
    """One token (constant-time); None configured: every write refused with 403."""
    require_writer(request, WriteTokens(shared=token))


def require_writer(request: Request, tokens: WriteTokens) -> Writer:
    """Whose token the request carries: the operator's (shared) or a site's."""
    if not tokens.configured:
        raise HTTPException(
            403,
            "writes are disabled: this analyzer runs without a token "
            "(start it with --token-file or --site-tokens to accept shipments and probes)",
        )
    writer = tokens.writer(bearer(request))
    if writer is None:
        raise wrong_token()
    return writer
