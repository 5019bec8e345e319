"""The bounds every HTTP server of xnetmon holds a client to (the analyzer's API under
uvicorn, the agent's /metrics under wsgiref), so that a slow or greedy client costs a
connection for a bounded time and never the server:

- `header_timeout_s`: the request line and headers must have arrived this long after the
  connection opened or its previous response went out; a client that dribbles them
  (slowloris) is cut off then.
- `keep_alive_s`: an idle connection between requests is closed after this.
- `max_connections`: connections served at once; beyond it the server answers 503 (uvicorn)
  or closes the new connection at once (wsgiref), and what is served goes on.
- `max_header_bytes`: request line and headers together (uvicorn answers 400 beyond it;
  wsgiref keeps the standard library's own bounds: 64 KiB a line, 100 header lines).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HttpLimits:
    header_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    max_connections: int = 256
    max_header_bytes: int = 16 << 10

    def __post_init__(self) -> None:
        if not (self.header_timeout_s > 0 and self.keep_alive_s > 0):
            raise ValueError(f"HTTP timeouts must be positive: {self}")
        if self.max_connections < 1 or self.max_header_bytes < 1024:
            raise ValueError(f"HTTP limits too small to serve anyone: {self}")


DEFAULT_HTTP_LIMITS = HttpLimits()
