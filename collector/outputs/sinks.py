"""Where an agent's windows go: the analyzer in the same process, or one across the network.

The agent loop calls `sink.submit(batch)` once per closed interval and `sink.close()` on
shutdown; sinks know nothing of probes. Counters are in windows, for the exporter and
for `CollectorHealth`:

- `delivered_total`  accepted by the analyzer
- `rejected_total`   refused for good by the analyzer (HTTP 4xx but 401/403), never retried
- `dropped_total`    discarded by the agent (spool full, or the spool could not be written)
- `spool_depth`      waiting to be delivered

and, in in-situ blocks, `marked_blocks_dropped_total`: discarded by the agent the same ways
(or by the spool's own bound on records of blocks alone).

A sink that ships over the network also counts its failed sends by reason
(`ReportsShipFailures.ship_failures`: auth, rejected, unavailable, network), for
`xnet_collector_ship_failures_total`.

The HTTP wire format is described in `collector.contract.codec`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import httpx

from collector.contract.codec import assemble_body, window_json
from collector.contract.shipment import ShipmentBatch
from collector.outputs.spool import DEFAULT_BLOCKS_ONLY_BYTES, DEFAULT_SEGMENT_BYTES, SyncFailed, WindowSpool
from collector.system.loop_errors import LoopErrors

log = logging.getLogger(__name__)

WINDOWS_PATH = "/v1/windows"
MAX_LOGGED_BODY = 500  # characters of an analyzer's refusal worth putting in a log line


@runtime_checkable
class WindowSink(Protocol):
    """A one-way destination for batches."""

    @property
    def delivered_total(self) -> int: ...

    @property
    def dropped_total(self) -> int: ...

    @property
    def rejected_total(self) -> int: ...

    @property
    def spool_depth(self) -> int: ...

    @property
    def marked_blocks_dropped_total(self) -> int: ...

    def submit(self, batch: ShipmentBatch) -> None:
        """Take a batch without waiting on the network; a spooling sink has written it to its
        spool when this returns, so it survives the agent being killed."""

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what can be delivered within `timeout` seconds, then stop."""


class InProcessSink:
    """All-in-one mode: batches go to the analyzer running in this process.

    `deliver` is either a callable, run in the submitting thread (so it must only hand the
    batch on, never block), or a queue (`queue.Queue` or `asyncio.Queue`) that receives the
    batch without waiting; a full queue drops the batch, counted.
    """

    spool_depth = 0  # nothing waits here

    def __init__(self, deliver: Callable[[ShipmentBatch], object] | queue.Queue | asyncio.Queue) -> None:
        self._deliver = deliver
        self.delivered_total = 0
        self.dropped_total = 0
        self.rejected_total = 0
        self.marked_blocks_dropped_total = 0
        self._closed = False

    def submit(self, batch: ShipmentBatch) -> None:
        if self._closed:
            raise RuntimeError("submit() on a closed sink")
        windows = len(batch.windows)
        if hasattr(self._deliver, "put_nowait"):
            try:
                self._deliver.put_nowait(batch)
            except (queue.Full, asyncio.QueueFull):
                log.warning("analyzer queue full: dropped a batch of %d windows from %s", windows, batch.site)
                self.dropped_total += windows
                self.marked_blocks_dropped_total += len(batch.marked_blocks)
                return
        else:
            try:
                self._deliver(batch)
            except Exception:
                # The analyzer's bug must not stop the probes: count it and go on.
                log.exception("in-process analyzer failed on a batch of %d windows from %s", windows, batch.site)
                self.rejected_total += windows
                return
        self.delivered_total += windows

    def close(self, timeout: float = 5.0) -> None:
        self._closed = True


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential retry delays with jitter and a cap."""

    initial_s: float = 0.5
    cap_s: float = 30.0
    multiplier: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0-based). Half of each delay is
        random, so thousands of agents do not all return in step after an analyzer outage."""
        ceiling = min(self.cap_s, self.initial_s * self.multiplier ** min(attempt, 64))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    REJECTED = "rejected"  # refused for good: sending the same body again cannot succeed
    RETRY = "retry"


AUTH_STATUSES = (401, 403)
# Why a send did not deliver: the credentials were refused, the batch was refused for good,
# the destination answered "later" (408, 429, 5xx, anything odd), or no answer came at all.
SHIP_FAILURE_REASONS = ("auth", "rejected", "unavailable", "network")


def classify(status: int) -> Outcome:
    """2xx delivered; 408 and 429 (come back later) and 5xx retried; 401 and 403 retried too:
    a refused token is an operator's mistake (an analyzer started without its token file),
    not a verdict on the data. Any other 4xx rejected. Anything else (1xx, a redirect) is a
    misconfiguration worth retrying: the spool is bounded."""
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if 400 <= status < 500 and status not in (408, 429, *AUTH_STATUSES):
        return Outcome.REJECTED
    return Outcome.RETRY


@runtime_checkable
class ReportsShipFailures(Protocol):
    """A sink that counts its failed deliveries by reason (one of `SHIP_FAILURE_REASONS`)."""

    @property
    def ship_failures(self) -> Mapping[str, int]: ...


@dataclass(frozen=True, slots=True)
class Body:
    """One wire body of a batch as it is spooled: its windows and in-situ blocks counted, and
    its kind (what a destination needs to send it, say a subject, without parsing it)."""

    data: bytes
    windows: int
    blocks: int
    kind: str


SINK_THREADS = ("spool", "ship")  # a SpoolingSink's two threads, as its errors_total counts them
FLUSH_RETRY_S = 1.0  # after a failed fsync: flushed again this often until an fsync succeeds


class SpoolingSink:
    """Ships batches to a destination through an on-disk spool; `HttpSink` and
    `collector.outputs.bus_sink.BusSink` are its two destinations, which say how a batch
    becomes bodies (`_bodies`), how one body is sent (`_post`) and what to close.

    `submit` encodes the batch and writes it to the spool in `spool_dir` before it returns
    (no fsync: see `collector.outputs.spool`), so an accepted batch survives a SIGKILL of the
    agent; it costs the caller ~10 us a window and one write to the page cache. Two threads
    share the spool with it under one lock: the spooling thread flushes what was written to
    the disk (fsync, for a power loss; never under the lock, so a slow disk never holds up
    `submit`), and the shipping thread sends the oldest spooled body until the destination
    takes it. When the destination is away, bodies wait in the spool, at most `max_windows`
    windows (the oldest go first, counted in `dropped_total`), and are delivered in order
    when it returns, including by a new sink on the same `spool_dir` after a restart.
    Batches larger than `max_windows_per_post` are cut into several bodies.

    An error `submit` or either thread meets is logged, counted (`errors_total`: `spool` for
    writing and flushing, `ship` for sending; counted under a lock, as `submit` and the
    spooling thread both count `spool`) and survived: a batch that could not be written
    is counted in `dropped_total`, and the thread carries on with the next flush or send. A
    flush whose fsync failed is counted and logged, and flushed again every `FLUSH_RETRY_S`
    until an fsync succeeds; the records stay spooled and are delivered from the spool. A
    retry does not make durable the records written before the error (Linux reports an
    fsync error once and usually marks the failed pages clean; see
    `collector.outputs.spool`): a power loss may take those not yet delivered.

    Opening the spool reads what a previous run left, so construct the sink before the
    event loop gets busy (or in `asyncio.to_thread`).
    """

    def __init__(
        self,
        endpoint: str,
        spool_dir: str | Path,
        max_windows: int = 100_000,
        *,
        timeout_s: float = 10.0,
        backoff: Backoff = Backoff(),
        max_windows_per_post: int = 5_000,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        max_blocks_only_bytes: int = DEFAULT_BLOCKS_ONLY_BYTES,
    ) -> None:
        self.endpoint = endpoint  # where the bodies go, for log lines
        self.timeout_s = timeout_s
        self.backoff = backoff
        self.max_windows_per_post = max_windows_per_post
        self.delivered_total = 0
        self.rejected_total = 0
        self.ship_failures = dict.fromkeys(SHIP_FAILURE_REASONS, 0)  # sends, not windows
        self._errors = LoopErrors()  # errors each thread survived, by SINK_THREADS
        self._spool = WindowSpool(
            spool_dir, max_windows, segment_bytes=segment_bytes, max_blocks_only_bytes=max_blocks_only_bytes
        )
        self._spool_changed = threading.Condition()  # guards the spool; notified on append and close
        self._unspooled_dropped = 0  # windows lost because the spool could not be written
        self._unspooled_blocks_dropped = 0  # and in-situ blocks
        self._closing = threading.Event()
        self._written = threading.Event()  # set by submit and close: the spooling thread has work
        self._flushing_done = threading.Event()  # every batch submitted before close() is flushed
        self._deadline = float("inf")
        self._away_since: float | None = None  # monotonic time the destination stopped answering
        self._away_reason: str | None = None  # the latest logged of SHIP_FAILURE_REASONS

    def _start(self) -> None:
        """Called by a destination's __init__ once it can send."""
        name = type(self).__name__
        self._spooler = threading.Thread(target=self._flush_loop, name=f"xnetmon-{name}-spool", daemon=True)
        self._thread = threading.Thread(target=self._ship_loop, name=f"xnetmon-{name}", daemon=True)
        self._spooler.start()
        self._thread.start()

    def _post(self, body: bytes, windows: int, kind: str) -> tuple[Outcome, float]:
        """Send one body of `windows` windows, of `kind` (as `_bodies` gave it; "" from an
        older spool); the outcome and how long the destination asked to wait (or 0)."""
        raise NotImplementedError

    def _close_transport(self) -> None:
        """Release the destination's connection; called once by the shipping thread."""

    def _send_timeout(self) -> float:
        """How long one send may take: `timeout_s`, cut to what is left of close()'s deadline."""
        if self._closing.is_set():
            return max(0.1, min(self.timeout_s, self._deadline - time.monotonic()))
        return self.timeout_s

    # -- counters ---------------------------------------------------------------------------

    @property
    def errors_total(self) -> dict[str, int]:
        """Errors each of `SINK_THREADS` survived (a copy)."""
        return {**dict.fromkeys(SINK_THREADS, 0), **self._errors.counts()}

    @property
    def dropped_total(self) -> int:
        return self._spool.dropped_windows_total + self._unspooled_dropped

    @property
    def spool_depth(self) -> int:
        return self._spool.pending_windows

    @property
    def marked_blocks_dropped_total(self) -> int:
        return self._spool.dropped_blocks_total + self._unspooled_blocks_dropped

    @property
    def corrupt_total(self) -> int:
        """Spool lines that could not be read back (a crash mid-write leaves one)."""
        return self._spool.corrupt_records_total

    # -- the caller's side ------------------------------------------------------------------

    def submit(self, batch: ShipmentBatch) -> None:
        if self._closing.is_set():
            raise RuntimeError("submit() on a closed sink")
        spooled = spooled_blocks = 0
        try:
            for body in self._bodies(batch):
                with self._spool_changed:
                    self._spool.append(body.data, body.windows, blocks=body.blocks, kind=body.kind)
                    self._spool_changed.notify_all()
                spooled += body.windows
                spooled_blocks += body.blocks
        except Exception as exc:  # a full disk, or a bug in encoding: the probes go on
            if not isinstance(exc, OSError):
                self._errors.note("spool", exc)
            log.error(
                "could not spool a batch from %s in %s (%s: %s); dropped %d window(s)",
                batch.site,
                self._spool.directory,
                type(exc).__name__,
                exc,
                len(batch.windows) - spooled,
                exc_info=not isinstance(exc, OSError),
            )
            self._unspooled_dropped += len(batch.windows) - spooled
            self._unspooled_blocks_dropped += len(batch.marked_blocks) - spooled_blocks
        finally:
            self._written.set()

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what can be delivered within `timeout` seconds, then stop. What is left
        stays in the spool for the next sink on the same directory."""
        if not self._closing.is_set():
            self._deadline = time.monotonic() + timeout
            self._closing.set()
            self._written.set()
        self._thread.join(timeout + 1.0)
        if self._thread.is_alive():
            log.warning(
                "sink to %s still busy after %.1f s; it stops after the current request", self.endpoint, timeout
            )

    # -- the spooling thread ----------------------------------------------------------------

    def _flush_loop(self) -> None:
        """fsync what submit wrote, as it comes; one flush covers every batch written since
        the last. After a failed fsync (counted, logged once per run of failures) the flush
        is made again every `FLUSH_RETRY_S`, new writes or not, until one succeeds; that
        syncs later writes, not the records written before the error, which stay spooled
        and are delivered from the spool. A last flush once closing."""
        failing = False
        while True:
            self._written.wait(FLUSH_RETRY_S if failing else None)
            self._written.clear()
            closing = self._closing.is_set()
            try:
                with self._spool_changed:
                    pending = self._spool.unsynced()
                pending.flush()
                if failing:
                    log.info("sink to %s flushed its spool %s again", self.endpoint, self._spool.directory)
                failing = False
            except SyncFailed as exc:  # the records stay spooled and are delivered; flushed again later
                with self._spool_changed:
                    self._spool.retry_sync(exc.unsynced)
                self._errors.note("spool", exc)
                if not failing:  # once per run of failures, not every retry
                    spool = self._spool.directory
                    log.error(
                        "sink to %s could not flush its spool %s: %s; its records stay spooled and are delivered, "
                        "but those written before the error may not survive a power loss",
                        self.endpoint,
                        spool,
                        exc,
                    )
                failing = True
            except Exception as exc:  # a bug: counted, and the next write flushes again
                self._errors.note("spool", exc)
                log.exception("sink to %s could not flush its spool %s", self.endpoint, self._spool.directory)
            if closing:
                break
        self._flushing_done.set()
        with self._spool_changed:
            self._spool_changed.notify_all()

    # -- the shipping thread ----------------------------------------------------------------

    def _ship_loop(self) -> None:
        attempt = 0
        try:
            while (head := self._next_head()) is not None:
                record_id, body, windows, kind = head
                try:
                    outcome, retry_after = self._post(body, windows, kind)
                except Exception as exc:  # a destination's bug: the body stays spooled and is tried again
                    self._errors.note("ship", exc)
                    log.exception("sink to %s failed sending a body; retried", self.endpoint)
                    outcome, retry_after = Outcome.RETRY, 0.0
                if outcome is Outcome.RETRY:
                    self._pause(max(self.backoff.delay(attempt), min(retry_after, self.backoff.cap_s)))
                    attempt += 1
                else:
                    attempt = 0
                    with self._spool_changed:
                        self._spool.pop_head(record_id)
        finally:
            self._flushing_done.wait(max(0.0, self._deadline - time.monotonic()) + 1.0)
            with self._spool_changed:
                if self._spool:
                    log.info(
                        "sink to %s stopped with %d window(s) in spool %s",
                        self.endpoint,
                        self._spool.pending_windows,
                        self._spool.directory,
                    )
                try:
                    self._spool.close()
                except Exception as exc:  # e.g. a last fsync the disk refused: counted; the transport still closes
                    self._errors.note("spool", exc)
                    log.error("sink to %s could not close its spool %s: %s", self.endpoint, self._spool.directory, exc)
            self._close_transport()

    def _next_head(self) -> tuple[int, bytes, int, str] | None:
        """(record id, body, windows, kind) of the oldest spooled body, waiting for one to come;
        None once closing and the spool is empty or close()'s deadline has passed."""
        with self._spool_changed:
            while True:
                if self._closing.is_set() and (time.monotonic() >= self._deadline or not self._spool):
                    return None
                try:
                    body = self._spool.head()
                except Exception as exc:  # an unreadable spool: counted, and tried again after a pause
                    self._errors.note("ship", exc)
                    log.exception("sink to %s could not read its spool %s", self.endpoint, self._spool.directory)
                    body = None
                if body is not None and (record_id := self._spool.head_id) is not None:
                    return record_id, body, self._spool.head_windows, self._spool.head_kind
                timeout = None if not self._closing.is_set() else self._deadline - time.monotonic()
                self._spool_changed.wait(timeout if timeout is None else max(0.0, timeout))

    def _pause(self, seconds: float) -> None:
        """Wait `seconds` before the next try, cut short to close()'s deadline."""
        end = time.monotonic() + seconds
        if not self._closing.wait(seconds):
            return
        time.sleep(max(0.0, min(end, self._deadline) - time.monotonic()))

    def _bodies(self, batch: ShipmentBatch) -> Iterator[Body]:
        """Parts of at most `max_windows_per_post` windows, in order, of kind "windows";
        observations, health and in-situ blocks ride with the first part."""
        step = self.max_windows_per_post
        for start in range(0, max(len(batch.windows), 1), step):
            encoded = [window_json(window) for window in batch.windows[start : start + step]]
            first = start == 0
            blocks = len(batch.marked_blocks) if first else 0
            yield Body(assemble_body(batch, encoded, with_extras=first), len(encoded), blocks, "windows")

    def _note_away(self, reason: str, detail: str, level: int = logging.WARNING) -> None:
        """Count a failed send by `reason`; log why once per episode and reason (not per
        retry): the windows stay spooled."""
        self.ship_failures[reason] += 1
        if self._away_since is None:
            self._away_since = time.monotonic()
        if reason != self._away_reason:
            self._away_reason = reason
            log.log(
                level, "%s not taking windows (%s); they wait in spool %s", self.endpoint, detail, self._spool.directory
            )

    def _note_back(self) -> None:
        if self._away_since is not None:
            log.info(
                "%s answers again after %.1f s; %d window(s) to catch up",
                self.endpoint,
                time.monotonic() - self._away_since,
                self._spool.pending_windows,
            )
            self._away_since = None
        self._away_reason = None


class HttpSink(SpoolingSink):
    """Ships batches to an analyzer's `POST {url}/v1/windows`. `transport` is httpx's seam
    for tests."""

    def __init__(
        self,
        url: str,
        token: str,
        spool_dir: str | Path,
        max_windows: int = 100_000,
        *,
        timeout_s: float = 10.0,
        backoff: Backoff = Backoff(),
        max_windows_per_post: int = 5_000,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        max_blocks_only_bytes: int = DEFAULT_BLOCKS_ONLY_BYTES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            url.rstrip("/") + WINDOWS_PATH,
            spool_dir,
            max_windows,
            timeout_s=timeout_s,
            backoff=backoff,
            max_windows_per_post=max_windows_per_post,
            segment_bytes=segment_bytes,
            max_blocks_only_bytes=max_blocks_only_bytes,
        )
        self._client = httpx.Client(
            timeout=timeout_s,
            transport=transport,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "User-Agent": "xnetmon-agent",
            },
        )
        self._start()

    def _close_transport(self) -> None:
        self._client.close()

    def _post(self, body: bytes, windows: int, kind: str) -> tuple[Outcome, float]:
        """POST one body (every kind to the same endpoint); returns the outcome and the
        analyzer's Retry-After in seconds (or 0)."""
        timeout = self._send_timeout()
        try:
            response = self._client.post(self.endpoint, content=body, timeout=timeout)
        except httpx.HTTPError as exc:
            self._note_away("network", f"{type(exc).__name__}: {exc}")
            return Outcome.RETRY, 0.0
        outcome = classify(response.status_code)
        if outcome is Outcome.DELIVERED:
            self._note_back()
            self.delivered_total += windows
        elif response.status_code in AUTH_STATUSES:
            self._note_away(
                "auth",
                f"it refused the agent's token (HTTP {response.status_code}): check the analyzer token in the "
                f"agent's config. Analyzer said: {response.text[:MAX_LOGGED_BODY]}",
                level=logging.ERROR,
            )
        elif outcome is Outcome.RETRY:
            self._note_away("unavailable", f"HTTP {response.status_code}")
            return outcome, _retry_after_seconds(response)
        else:
            self.ship_failures["rejected"] += 1
            self._note_back()
            self.rejected_total += windows
            log.error(
                "analyzer %s rejected a batch of %d window(s) with HTTP %d; dropped, not retried. Analyzer said: %s",
                self.endpoint,
                windows,
                response.status_code,
                response.text[:MAX_LOGGED_BODY],
            )
        return outcome, 0.0


def _retry_after_seconds(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", 0)))
    except ValueError:
        return 0.0  # an HTTP date: rare from an API; the backoff decides
