"""The agent's side of the bus: windows, observations and health published to JetStream.

One more destination of `collector.outputs.sinks.SpoolingSink`, so the spool, its bound,
the retries and the order are the HTTP sink's: each spooled body is published and the
stream's ack awaited before the next one goes, so a path's windows enter the stream in
order; while the bus is unreachable they wait in the spool. A body re-sent after a lost
ack carries the same message id (`collector.bus.subjects.message_id`) and is stored once.

nats-py is asyncio: the connection lives in an event loop on a thread of its own, and the
shipping thread hands it one publish at a time. The client reconnects for ever by itself,
the first connection included.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.errors import MaxPayloadError

from collector.bus.connection import BusEndpoint, bus_event_loop
from collector.bus.subjects import check_site, message_id, subject
from collector.contract.codec import encode_body
from collector.contract.shipment import ShipmentBatch
from collector.outputs.sinks import Backoff, Body, Outcome, SpoolingSink
from collector.outputs.spool import DEFAULT_BLOCKS_ONLY_BYTES, DEFAULT_SEGMENT_BYTES

log = logging.getLogger(__name__)

MAX_ERRORS_LOGGED = 20  # errors the server sends (a refused subject, ...) logged; then only counted


class BusSink(SpoolingSink):
    """Publishes the batches of `site` to the bus at `endpoint`, through the spool in `spool_dir`."""

    def __init__(
        self,
        endpoint: BusEndpoint,
        site: str,
        spool_dir: str | Path,
        max_windows: int = 100_000,
        *,
        timeout_s: float = 10.0,
        backoff: Backoff = Backoff(),
        max_windows_per_post: int = 5_000,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        max_blocks_only_bytes: int = DEFAULT_BLOCKS_ONLY_BYTES,
    ) -> None:
        self.site = check_site(site)  # before the spool is opened: a bad name leaves nothing behind
        super().__init__(
            "bus " + ",".join(endpoint.servers),
            spool_dir,
            max_windows,
            timeout_s=timeout_s,
            backoff=backoff,
            max_windows_per_post=max_windows_per_post,
            segment_bytes=segment_bytes,
            max_blocks_only_bytes=max_blocks_only_bytes,
        )
        self.bus = endpoint
        self.duplicates_total = 0  # bodies the stream already held (an ack lost earlier)
        self.server_errors_total = 0  # errors the server reported on the connection
        self._loop = bus_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, name="xnetmon-bus-loop", daemon=True)
        self._loop_thread.start()
        self._client: Client | None = None
        self._connecting: asyncio.Future | None = None
        self._spool_closed = False
        self._start()

    def _bodies(self, batch: ShipmentBatch) -> Iterator[Body]:
        """Window bodies, then the observations and the health, each a body of its own: a
        subject carries one kind, which each body's record keeps. The in-situ blocks ride with
        the first of them, once."""
        marked = batch.marked_blocks
        if batch.windows:
            yield from super()._bodies(replace(batch, observations=(), health=None))
            marked = ()
        if batch.observations:
            body = encode_body(replace(batch, windows=(), health=None, marked_blocks=marked))
            yield Body(body, 0, len(marked), "observations")
            marked = ()
        if batch.health is not None or marked:
            body = encode_body(replace(batch, windows=(), observations=(), marked_blocks=marked))
            yield Body(body, 0, len(marked), "health")

    def _post(self, body: bytes, windows: int, kind: str) -> tuple[Outcome, float]:
        kind = kind or _spooled_kind(body, windows)
        timeout = self._send_timeout()
        future = asyncio.run_coroutine_threadsafe(self._publish(kind, body, timeout), self._loop)
        try:
            duplicate = future.result(timeout + 1.0)
        except MaxPayloadError:
            log.error("bus refused a body of %d bytes as too large: lower max_windows_per_post", len(body))
            self.ship_failures["rejected"] += 1
            self.rejected_total += windows
            return Outcome.REJECTED, 0.0
        except Exception as exc:  # unreachable, no ack in time, no stream yet: all worth a retry
            future.cancel()
            self._note_away("network", f"{type(exc).__name__}: {exc}")
            return Outcome.RETRY, 0.0
        self._note_back()
        self.delivered_total += windows
        self.duplicates_total += duplicate
        return Outcome.DELIVERED, 0.0

    async def _publish(self, kind: str, body: bytes, timeout: float) -> bool:
        client = await asyncio.wait_for(asyncio.shield(self._connected()), timeout)
        ack = await client.jetstream().publish(
            subject(kind, self.site),
            body,
            timeout=timeout,
            headers={"Nats-Msg-Id": message_id(kind, self.site, body)},
        )
        return bool(ack.duplicate)

    def _connected(self) -> asyncio.Future:
        """The connection: one attempt at a time, retrying until the server answers; a new
        one once an attempt failed for good or the client closed (the server refused it)."""
        attempt = self._connecting
        if attempt is None or (attempt.done() and (attempt.exception() is not None or attempt.result().is_closed)):
            attempt = self._connecting = asyncio.ensure_future(self._connect())
        return attempt

    async def _connect(self) -> Client:
        self._client = await nats.connect(**self.bus.connect_options(), error_cb=self._on_error)
        return self._client

    async def _on_error(self, exc: Exception) -> None:
        if self._closing.is_set() and self._spool_closed:
            return  # TLS teardown noise while closing
        self.server_errors_total += 1
        if self.server_errors_total <= MAX_ERRORS_LOGGED:
            log.warning("bus connection of site %s: %s: %s", self.site, type(exc).__name__, exc)

    def _close_transport(self) -> None:
        self._spool_closed = True

        async def close() -> None:
            if self._connecting is not None and not self._connecting.done():
                self._connecting.cancel()
            if self._client is not None:
                await self._client.close()

        try:
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5.0)
        except Exception as exc:  # the spool is closed already: nothing is lost
            log.warning("closing the bus connection of site %s: %s", self.site, exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join(5.0)


def _spooled_kind(body: bytes, windows: int) -> str:
    """The subject kind of a body an older agent spooled without one: read from the body."""
    return "windows" if windows else ("observations" if json.loads(body)["observations"] else "health")
