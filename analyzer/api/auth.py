"""Bearer tokens: writes need the shared or a site's token (analyzer.api.tokens); without any
configured, no token can be right. Every check reads only the headers: routes call it before
they read a byte of the body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

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


class ReadTokenGate:
    """ASGI middleware: every GET and HEAD (the OpenAPI documents included) needs `token`, compared
    in constant time; 401 without it. Writes pass on to their own check. Paths `is_open` says
    yes to pass without it (the console's static files, which hold no data: the page asks for
    the token and sends it on its own reads)."""

    def __init__(self, app: ASGIApp, token: str, is_open: Callable[[str], bool] = lambda path: False) -> None:
        self.app = app
        self.tokens = WriteTokens(shared=token)
        self.is_open = is_open

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and not self.is_open(scope["path"]):
            try:
                if self.tokens.writer(bearer(Request(scope))) is None:
                    raise wrong_token()
            except HTTPException as exc:
                await JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)


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
