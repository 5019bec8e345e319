"""Running the analyzer: its store from the last snapshot, snapshots while it runs, and
the API served by uvicorn on an IPv4 or IPv6 socket.

`xnetmon analyzer` uses these, and so can the all-in-one monitor:

    store = open_store(state_dir, policies)          # restored if a snapshot is there
    keeper = SnapshotKeeper(store, state_dir)        # every 30 s, and at stop()
    feeder = StoreFeeder(store)                      # all-in-one: Agent(..., sink=InProcessSink(feeder.queue))
    inference = RootCauseRunner(store)               # hints once per closed interval
    server = ApiServer(create_app(store, token=..., hints=inference.hints), ("::1", 0))   # serves from a thread
    ...
    server.stop(); inference.stop(); feeder.stop(); keeper.stop()
"""

from __future__ import annotations

import collections
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import uvicorn

from analyzer.store.memory import WindowStore
from analyzer.store.snapshot import restore_snapshot, save_snapshot

log = logging.getLogger(__name__)

SNAPSHOT_NAME = "analyzer-store.json"
SNAPSHOT_EVERY_S = 30.0


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
    `stop()`; also advances the store's clock so that verdicts move while no agent reports."""

    def __init__(self, store: WindowStore, state_dir: str | Path, every_s: float = SNAPSHOT_EVERY_S,
                 tick_s: float = 1.0) -> None:
        self.store = store
        self.path = Path(state_dir) / SNAPSHOT_NAME
        self.every_s = every_s
        self.tick_s = tick_s
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xnetmon-analyzer-snapshots", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_snapshot = time.monotonic() + self.every_s
        while not self._stop.wait(self.tick_s):
            self.store.advance(time.time_ns())
            if time.monotonic() >= next_snapshot:
                self.save()
                next_snapshot = time.monotonic() + self.every_s

    def save(self) -> None:
        try:
            save_snapshot(self.store, self.path)
        except OSError as exc:  # a full disk must not stop the analyzer; the next try may work
            self.failures += 1
            log.error("could not write the analyzer snapshot %s: %s", self.path, exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.save()


class RootCauseRunner:
    """Root-cause inference once per closed interval, in a thread of its own so that ingest
    never waits for it: when the store's `judged_through_ns` moves, the evidence of that
    interval (analyzer.rootcause.evidence) goes to `diagnose` (default: the engine's) and
    the diagnoses to a HintTracker, whose current hints `hints()` answers. `last_seconds`
    and `worst_seconds` time one interval's evidence and inference. To see why a hint came or
    did not: `recent` keeps the last `RECENT_EPOCHS` (interval end, diagnoses, seconds) and
    `last_epoch` the latest evidence (only one: at 100,000 paths an epoch holds some 60 MB)."""

    RECENT_EPOCHS = 30

    def __init__(self, store: WindowStore, *, declared_names: Mapping[str, str] | None = None,
                 diagnose: Callable | None = None, poll_s: float | None = None) -> None:
        from analyzer.rootcause.evidence import EvidenceBuilder
        from analyzer.rootcause.hints import HintTracker

        if diagnose is None:
            from analyzer.rootcause.engine import diagnose
        self.store = store
        self.builder = EvidenceBuilder(store, declared_names)
        self.tracker = HintTracker()
        self.diagnose = diagnose
        self.poll_s = poll_s if poll_s is not None else min(0.5, store.interval_s / 10)
        self.epochs = 0
        self.failures = 0
        self.last_seconds = 0.0
        self.worst_seconds = 0.0
        self.recent: collections.deque = collections.deque(maxlen=self.RECENT_EPOCHS)
        self.last_epoch = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xnetmon-analyzer-rootcause", daemon=True)
        self._thread.start()

    def hints(self):
        return self.tracker.hints()

    def _run(self) -> None:
        done_through = 0
        while not self._stop.wait(self.poll_s):
            self.store.advance(time.time_ns())
            through = self.store.judged_through_ns
            if through > done_through:
                done_through = through
                self.run_once(through)

    def run_once(self, at_ns: int) -> None:
        started = time.perf_counter()
        diagnoses = ()
        try:
            epoch = self.last_epoch = self.builder.build(at_ns)
            diagnoses = tuple(self.diagnose(epoch))
            self.tracker.update(diagnoses, at_ns)
        except Exception:  # a bad epoch must not end inference: the next interval is another try
            self.failures += 1
            log.exception("root-cause inference failed for the interval ending at %d", at_ns)
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

    def __init__(self, store: WindowStore, max_batches: int = 1000, clock=time.time_ns) -> None:
        self.store = store
        self.queue: queue.Queue = queue.Queue(maxsize=max_batches)
        self.failures = 0
        self._clock = clock
        self._thread = threading.Thread(target=self._run, name="xnetmon-analyzer-feeder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self.queue.get()) is not None:
            try:
                self.store.ingest(batch, self._clock())
            except Exception:  # one bad batch must not stop the analyzer
                self.failures += 1
                log.exception("the analyzer could not take a batch from %s", batch.site)
            finally:
                self.queue.task_done()

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


class ApiServer:
    """The app served by uvicorn from a daemon thread; `stop()` ends it. Port 0 picks one."""

    def __init__(self, app, listen: tuple[str, int], *, log_level: str = "warning",
                 extra_sockets: Sequence[socket.socket] = ()) -> None:
        """`extra_sockets`: more listening sockets served by the same app, e.g. one opened
        inside a lab site's namespace so that agents there can ship to this analyzer."""
        self.socket = listening_socket(*listen)
        self.extra_sockets = list(extra_sockets)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket, *self.extra_sockets]},
                                       name="xnetmon-analyzer-api", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            raise RuntimeError("the analyzer API did not start")

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()[:2]
        return host, port

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        for sock in (self.socket, *self.extra_sockets):
            sock.close()

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
