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
- `body_grace_s`, `min_body_rate`: once the head is in, the body must have arrived
  `body_grace_s` plus one second per `min_body_rate` bytes received after the head: a body
  that trickles in (slow POST) is answered 408 and cut off, one that keeps up that average
  may take as long as its size needs. (The body limit is the route's; the agent's server
  reads no bodies: it answers from the head and closes.)
- `send_grace_s`, `min_send_rate`: the same bound on the way out. Once a response's bytes
  wait for a client that does not take them (the server's buffer or the kernel's is full),
  the client must take them within `send_grace_s` plus one second per `min_send_rate` bytes
  taken since: one that reads a byte a second is cut off (the connection aborted, its
  buffered response dropped, counted in `RESPONSES_CUT_OFF`), one that keeps up that
  average may take as long as the response's size needs.

`responses_cut_off_family` is the one definition of `xnet_collector_http_responses_cut_off_total`,
which every collector-side /metrics renders (the agent's, `xnetmon flows collect`'s).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily


@dataclass(frozen=True, slots=True)
class HttpLimits:
    header_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    max_connections: int = 256
    max_header_bytes: int = 16 << 10
    body_grace_s: float = 10.0
    min_body_rate: int = 500  # bytes/s, as Apache's mod_reqtimeout: far below any real link
    send_grace_s: float = 10.0
    min_send_rate: int = 500  # bytes/s, as for bodies

    def __post_init__(self) -> None:
        if not (
            self.header_timeout_s > 0 and self.keep_alive_s > 0 and self.body_grace_s > 0 and self.send_grace_s > 0
        ):
            raise ValueError(f"HTTP timeouts must be positive: {self}")
        if self.max_connections < 1 or self.max_header_bytes < 1024 or min(self.min_body_rate, self.min_send_rate) < 1:
            raise ValueError(f"HTTP limits too small to serve anyone: {self}")

    def body_time_s(self, received: int) -> float:
        """How long after its head a body may have taken once `received` of its bytes are in."""
        return self.body_grace_s + received / self.min_body_rate

    def send_time_s(self, taken: int) -> float:
        """How long a client may keep a response waiting once `taken` of its waiting bytes are out."""
        return self.send_grace_s + taken / self.min_send_rate


class CutOffResponses:
    """Responses cut off because their client did not read them; servers in several threads add."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0

    def add(self) -> None:
        with self._lock:
            self._total += 1

    @property
    def total(self) -> int:
        return self._total


DEFAULT_HTTP_LIMITS = HttpLimits()
RESPONSES_CUT_OFF = CutOffResponses()  # by every server of this process: its /metrics shows it


def responses_cut_off_family() -> CounterMetricFamily:
    family = CounterMetricFamily(
        "xnet_collector_http_responses_cut_off_total",
        "Responses of this process's HTTP server (/metrics, /flows/top) cut off because the client did not read "
        "them at the server's send bounds (collector/system/http_limits.py).",
    )
    family.add_metric([], RESPONSES_CUT_OFF.total)
    return family
