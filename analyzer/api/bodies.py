"""Request bodies read with a bound: streamed, and given up as soon as they pass their limit.

Every write route checks the token first and reads its body only then, through `read_body`,
so an anonymous or oversized body is answered without being held in memory. A body that
trickles in is cut off by the server (analyzer/api/guarded_h11.py), which answers 408 itself.
"""

from __future__ import annotations

from typing import TypeVar

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

M = TypeVar("M", bound=BaseModel)


def too_large(limit: int, declared: str | None = None) -> HTTPException:
    size = "body" if declared is None else f"body of {declared} bytes"
    return HTTPException(413, f"{size} is over the limit of {limit} bytes: send less per request")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 as soon as it is known to pass `limit` bytes (by its Content-Length,
    or while it streams in)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large(limit, declared)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large(limit)
    except ClientDisconnect:  # gone, or cut off for being too slow: a refusal like any other, not a 500
        raise HTTPException(408, "the connection ended before the body did") from None
    return bytes(body)


async def read_model(request: Request, model: type[M], limit: int) -> M:
    """The body as `model`, with its errors as FastAPI gives them (400 naming the field)."""
    body = await read_body(request, limit)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
