"""Running the analyzer: its store from the last snapshot, snapshots while it runs, root-cause
inference, and the API served by uvicorn on an IPv4 or IPv6 socket.

Every command assembles it one way, `AnalyzerService` (`xnetmon analyzer` serves in the
foreground, the all-in-one from a thread, with an agent in the same process feeding it):

    service = AnalyzerService(policies, ("::1", 0), state_dir=..., declared_names=..., token=...,
                              feed=True, interval_s=10)   # store restored if a snapshot is there
    server = service.serve_in_thread()                   # or service.serve(): until Ctrl-C
    ...  Agent(..., sink=InProcessSink(service.feeder.queue))
    service.stop()                                       # API, inference, queued batches, last snapshot

Its parts stand alone too: open_store, SnapshotKeeper (every 30 s, and at stop()),
StoreFeeder, RootCauseRunner (hints once per closed interval), ApiServer.
"""

from __future__ import annotations

import collections
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from analyzer.api.app import create_app, release
from analyzer.api.guarded_h11 import uvicorn_options
from analyzer.exporter import BusLink
from analyzer.gc_tuning import tune_for_long_lived_store
from analyzer.insitu.diagnosis import segment_diagnoses
from analyzer.slice_history import HistorySampler, SliceHistory
from analyzer.store.journal import IntakeJournal, replay
from analyzer.store.memory import WindowStore
from analyzer.store.snapshot import restore_snapshot, save_snapshot
from collector.system.loop_errors import LoopErrors

if TYPE_CHECKING:
    from analyzer.rootcause.model import Epoch

log = logging.getLogger(__name__)

SNAPSHOT_NAME = "analyzer-store.json"
JOURNAL_NAME = "intake-journal"  # analyzer.store.journal: shipments taken since the snapshot
SNAPSHOT_EVERY_S = 30.0
INSITU_LOOKBACK_INTERVALS = 3  # in-situ segment blocks paired this recently feed each epoch's hints


def open_store(state_dir: str | Path | None, policies: Mapping[str, object], **options) -> WindowStore:
    """The store saved in `state_dir` if there is one, else a new one. Raises ValueError
    naming the file if the snapshot there cannot be read (the operator decides: move it away
    to start afresh), rather than silently losing the verdicts' history."""
    if state_dir is not None:
        path = Path(state_dir) / SNAPSHOT_NAME
        if path.exists():
            try:
                store = restore_snapshot(path, policies, **options)
            except OSError as exc:
                raise ValueError(f"cannot read {path}: {exc.strerror}") from None
            log.info("analyzer state restored from %s", path)
            return store
    return WindowStore(policies, **options)


class SnapshotKeeper:
    """Writes the store's snapshot every `every_s` seconds from a thread, and once more at
    `stop()`; also advances the store's clock so that verdicts move while no agent reports.
    An error in either is counted in `errors` (`snapshot`, `intervals`) and the thread goes on."""

    def __init__(
        self,
        store: WindowStore,
        state_dir: str | Path,
        every_s: float = SNAPSHOT_EVERY_S,
        tick_s: float = 1.0,
        errors: LoopErrors | None = None,
        journal: IntakeJournal | None = None,
    ) -> None:
        self.store = store
        self.journal = journal  # truncated by each snapshot
        self.path = Path(state_dir) / SNAPSHOT_NAME
        self.every_s = every_s
        self.tick_s = tick_s
        self.errors = errors if errors is not None else LoopErrors()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xnetmon-analyzer-snapshots", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_snapshot = time.monotonic() + self.every_s
        while not self._stop.wait(self.tick_s):
            with self.errors.survive("intervals", "closing intervals on the clock"):
                self.store.advance(time.time_ns())
            if time.monotonic() >= next_snapshot:
                self.save()
                next_snapshot = time.monotonic() + self.every_s

    @property
    def failures(self) -> int:
        return self.errors.counts().get("snapshot", 0)

    def save(self) -> None:
        # A full disk, or anything else, must not stop the analyzer; the next try may work.
        with self.errors.survive("snapshot", f"writing the analyzer snapshot {self.path}"):
            covered = self.journal.rotate() if self.journal is not None else None
            save_snapshot(self.store, self.path)
            if self.journal is not None and covered is not None:
                self.journal.drop_through(covered)

    def stop(self, *, final_snapshot: bool = True) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if final_snapshot:
            self.save()


class RootCauseRunner:
    """Root-cause inference once per closed interval, in a thread of its own so that ingest
    never waits for it: when the store's `judged_through_ns` moves, the evidence of that
    interval (analyzer.rootcause.evidence) goes to `diagnose` (default: the engine's, with gray loss also
    tested over counts pooled across intervals: analyzer.rootcause.pooling) and
    the diagnoses to a HintTracker, whose current hints `hints()` answers; between epochs,
    a newly paired in-situ segment that lost packets is diagnosed at once (`note_segments`). `last_seconds`
    and `worst_seconds` time one interval's evidence and inference. To see why a hint came or
    did not: `recent` keeps the last `RECENT_EPOCHS` (interval end, diagnoses, seconds) and
    `last_epoch` the latest evidence (only one: at 100,000 paths an epoch holds some 60 MB)."""

    RECENT_EPOCHS = 30

    def __init__(
        self,
        store: WindowStore,
        *,
        declared_names: Mapping[str, str] | None = None,
        diagnose: Callable | None = None,
        poll_s: float | None = None,
        errors: LoopErrors | None = None,
    ) -> None:
        from analyzer.rootcause.evidence import EvidenceBuilder
        from analyzer.rootcause.hints import HintTracker

        if diagnose is None:
            from analyzer.rootcause.pooling import PooledDiagnoser

            diagnose = PooledDiagnoser()  # one per stream of intervals: it pools their counts
        self.store = store
        self.builder = EvidenceBuilder(store, declared_names)
        self.tracker = HintTracker()
        self.diagnose = diagnose
        self.poll_s = poll_s if poll_s is not None else min(0.5, store.interval_s / 10)
        self.epochs = 0
        self.errors = errors if errors is not None else LoopErrors()
        self.last_seconds = 0.0
        self.worst_seconds = 0.0
        self.recent: collections.deque = collections.deque(maxlen=self.RECENT_EPOCHS)
        self.last_epoch: Epoch | None = None
        self.insitu_lookback_ns = INSITU_LOOKBACK_INTERVALS * store.interval_ns
        self._segments_seen = 0  # the segment store's count of losing blocks at the last look
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xnetmon-analyzer-rootcause", daemon=True)
        self._thread.start()

    def hints(self):
        return self.tracker.hints()

    def _run(self) -> None:
        done_through = 0
        while not self._stop.wait(self.poll_s):
            with self.errors.survive("intervals", "closing intervals on the clock"):
                self.store.advance(time.time_ns())
            through = self.store.judged_through_ns
            if through > done_through:
                done_through = through
                self.run_once(through)
            else:
                self.note_segments(time.time_ns())

    def note_segments(self, now_ns: int) -> None:
        """In-situ evidence between epochs: segments name their link directly, so a losing one
        is raised as its blocks are paired, not at the next interval's close (up to an
        interval later: 10 s by default, against blocks of a second). Only new losses can raise
        a hint, and a diagnosis reads every recent segment (~30 ms at the 20,000 kept): none
        is made while none came."""
        segments = self.store.segments
        found = segments.losing_found
        if found == self._segments_seen:
            return
        self._segments_seen = found
        with self.errors.survive("rootcause", "in-situ diagnosis between epochs"):
            diagnoses = segment_diagnoses(segments, now_ns, self.insitu_lookback_ns)
            if diagnoses:
                self.tracker.note(diagnoses, self.open_interval_end(now_ns))

    def open_interval_end(self, now_ns: int) -> int:
        """The end of the interval `now_ns` falls in: a note between epochs is stamped as the
        epoch that closes that interval will stamp it, so that every hint time is an interval
        end (the wall clock runs up to an interval and the lateness grace ahead of the newest
        closed one), and first and last seen compare across notes and epochs."""
        interval_ns = self.store.interval_ns
        return (now_ns // interval_ns + 1) * interval_ns

    @property
    def failures(self) -> int:
        return self.errors.counts().get("rootcause", 0)

    def run_once(self, at_ns: int) -> None:
        started = time.perf_counter()
        diagnoses: tuple = ()
        # A bad epoch must not end inference: the next interval is another try.
        with self.errors.survive("rootcause", f"root-cause inference for the interval ending at {at_ns}"):
            epoch = self.last_epoch = self.builder.build(at_ns)
            # in-situ segments first: direct localisation, kept over an engine hint of the same key
            self._segments_seen = self.store.segments.losing_found  # read before the segments it diagnoses
            direct = segment_diagnoses(self.store.segments, at_ns, self.insitu_lookback_ns)
            inferred = tuple(self.diagnose(epoch))
            diagnoses = (*direct, *inferred)
            self.tracker.update(inferred, at_ns, direct=direct)
        self.epochs += 1
        self.last_seconds = time.perf_counter() - started
        self.worst_seconds = max(self.worst_seconds, self.last_seconds)
        self.recent.append((at_ns, diagnoses, self.last_seconds))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class StoreFeeder:
    """All-in-one mode: the agent's batches go into `queue` (give it to
    `collector.outputs.sinks.InProcessSink`) and a thread of their own ingests them, so the probe
    loop never waits for the store. A full queue makes the sink drop and count batches."""

    def __init__(
        self, store: WindowStore, max_batches: int = 1000, clock=time.time_ns, errors: LoopErrors | None = None
    ) -> None:
        self.store = store
        self.queue: queue.Queue = queue.Queue(maxsize=max_batches)
        self.errors = errors if errors is not None else LoopErrors()
        self._clock = clock
        self._thread = threading.Thread(target=self._run, name="xnetmon-analyzer-feeder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self.queue.get()) is not None:
            try:  # one bad batch must not stop the analyzer
                with self.errors.survive("feeder", f"taking a batch from {batch.site}"):
                    self.store.ingest(batch, self._clock())
            finally:
                self.queue.task_done()

    @property
    def failures(self) -> int:
        return self.errors.counts().get("feeder", 0)

    def join(self) -> None:
        """Wait until every batch queued so far is in the store."""
        self.queue.join()

    def stop(self, timeout: float = 5.0) -> None:
        """Ingest what is queued, then end the thread."""
        self.queue.put(None)
        self._thread.join(timeout)


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket; "::" accepts IPv4 too (v6only off), "" means "::"."""
    host = host.strip("[]") or "::"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6 and host == "::":
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(1024)
    sock.setblocking(False)
    return sock


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The API's certificate chain and private key (PEM files): served over HTTPS."""

    cert: Path
    key: Path

    def check(self) -> None:
        """Raises ValueError naming the files when they do not make a server certificate."""
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot use certificate {self.cert} with key {self.key}: {exc}") from None


def uvicorn_server(app, log_level: str = "warning", tls: TlsFiles | None = None) -> uvicorn.Server:
    """uvicorn as the analyzer runs it: no access log, no lifespan events, HTTPS with `tls`,
    every client held to the default `collector.system.http_limits.HttpLimits`."""
    return uvicorn.Server(
        uvicorn.Config(
            app,
            log_level=log_level,
            access_log=False,
            lifespan="off",
            ssl_certfile=None if tls is None else str(tls.cert),
            ssl_keyfile=None if tls is None else str(tls.key),
            **uvicorn_options(),
        )
    )


class ApiServer:
    """The app served by uvicorn from a daemon thread; `stop()` ends it and closes its sockets.
    `listen` is (host, port), port 0 picking one, or a listening socket."""

    def __init__(
        self,
        app,
        listen: tuple[str, int] | socket.socket,
        *,
        log_level: str = "warning",
        extra_sockets: Sequence[socket.socket] = (),
        tls: TlsFiles | None = None,
        on_exit: Callable[[], None] = lambda: None,
    ) -> None:
        """`extra_sockets`: more listening sockets served by the same app, e.g. one opened
        inside a lab site's namespace so that agents there can ship to this analyzer.
        `on_exit` runs in the server's thread once uvicorn has ended (every request done)."""
        self.socket = listen if isinstance(listen, socket.socket) else listening_socket(*listen)
        self.extra_sockets = list(extra_sockets)
        self.scheme = "http" if tls is None else "https"
        self.server = uvicorn_server(app, log_level, tls)
        self.thread = threading.Thread(
            target=self._serve,
            args=([self.socket, *self.extra_sockets], on_exit),
            name="xnetmon-analyzer-api",
            daemon=True,
        )
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            raise RuntimeError("the analyzer API did not start")

    def _serve(self, sockets: list[socket.socket], on_exit: Callable[[], None]) -> None:
        try:
            self.server.run(sockets=sockets)
        finally:
            on_exit()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()[:2]
        return host, port

    @property
    def url(self) -> str:
        host, port = self.address
        return f"{self.scheme}://[{host}]:{port}" if ":" in host else f"{self.scheme}://{host}:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        for sock in (self.socket, *self.extra_sockets):
            sock.close()

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AnalyzerService:
    """The analyzer, assembled the same way by every command: the store (restored from
    `state_dir`'s snapshot when there is one; `store_options` such as interval_s and
    catch_up_s go to it), the socket its API listens on, a SnapshotKeeper writing to
    `state_dir` (none without one), a StoreFeeder when `feed` (an agent in this process
    ships through its queue), root-cause inference naming traced hops after
    `declared_names` (address -> site), each slice's verdicts sampled into a day's history
    (analyzer.slice_history) for GET /slices/{name}/history, and the API app (writes need `token`; `prober`
    answers POST /probe; `api_options` go to analyzer.api.app.create_app). `diagnose` replaces
    the engine of the root-cause runner (a partition's: analyzer.partial_evidence.EvidenceOutbox);
    `hints_source`, set later, replaces what /hints serves (a combiner's combined inference).

    Raises ValueError when the snapshot cannot be read and OSError when `listen` cannot be
    bound, both before any thread starts."""

    def __init__(
        self,
        policies: Mapping[str, object],
        listen: tuple[str, int],
        *,
        state_dir: str | Path | None = None,
        declared_names: Mapping[str, str] | None = None,
        token: str | None = None,
        prober: Callable | None = None,
        feed: bool = False,
        api_options: Mapping[str, Any] | None = None,
        tls: TlsFiles | None = None,
        diagnose: Callable | None = None,
        **store_options,
    ) -> None:
        tune_for_long_lived_store()
        self.store = open_store(state_dir, policies, **store_options)
        self.journal = IntakeJournal(Path(state_dir) / JOURNAL_NAME) if state_dir is not None else None
        if self.journal is not None:
            replay(self.journal, self.store, time.time_ns())
        self.socket = listening_socket(*listen)
        self.errors = LoopErrors()  # every background loop's, shown by /healthz and /metrics
        self.keeper = (
            SnapshotKeeper(self.store, state_dir, errors=self.errors, journal=self.journal)
            if state_dir is not None
            else None
        )
        self.feeder = StoreFeeder(self.store, errors=self.errors) if feed else None
        self.inference = RootCauseRunner(
            self.store, declared_names=declared_names, diagnose=diagnose, errors=self.errors
        )
        # what /hints serves when not this store's inference (a partitioned analysis' combiner)
        self.hints_source: Callable[[], Any] | None = None
        self.history = SliceHistory(self.store.interval_s)
        self.history_sampler = HistorySampler(self.history, self.store.slice_verdict_map, self.errors)
        self.history_sampler.start()
        self.app = create_app(
            self.store,
            token=token,
            prober=prober,
            hints=lambda: (self.hints_source or self.inference.hints)(),
            site_names=declared_names,
            errors=self.errors,
            journal=self.journal,
            history=self.history,
            bus_link=lambda: self.bus_link() if self.bus_link is not None else None,
            **dict(api_options or {}),  # site_tokens, read_token, openapi, probe_targets: analyzer.api.app
        )
        self.tls = tls
        self._server: ApiServer | None = None
        # the connection of the bus intake feeding the store, for /metrics (BusIntake.link)
        self.bus_link: Callable[[], BusLink | None] | None = None

    def serve_in_thread(self, *, extra_sockets: Sequence[socket.socket] = ()) -> ApiServer:
        """The API from a daemon thread, on its socket and `extra_sockets`, until `stop()`."""
        # FastAPI's caches must not keep the store once nothing is served any more
        self._server = ApiServer(
            self.app, self.socket, extra_sockets=extra_sockets, tls=self.tls, on_exit=lambda: release(self.app)
        )
        return self._server

    def serve(self) -> None:
        """The API in this thread until Ctrl-C or SIGTERM: uvicorn finishes the requests under
        way, then raises the signal again (KeyboardInterrupt) for the caller."""
        uvicorn_server(self.app, tls=self.tls).run(sockets=[self.socket])

    def stop(self, *, final_snapshot: bool = True) -> None:
        """The API first (no new batches), then inference, the batches still queued, and the
        last snapshot. Without `final_snapshot` the store is left as a crash would leave it:
        what came since the last periodic snapshot is not saved (for soak tests of restarts)."""
        if self._server is not None:
            self._server.stop()
        else:
            self.socket.close()
        if self._server is None:
            release(self.app)  # never served (the server's thread releases it as it ends)
        self.inference.stop()
        self.history_sampler.stop()
        if self.feeder is not None:
            self.feeder.stop()
        if self.keeper is not None:
            self.keeper.stop(final_snapshot=final_snapshot)
        if self.journal is not None:
            self.journal.close()
