"""Several reflector processes on one port (SO_REUSEPORT), so the reflector scales with cores.

One Python process answers on one core at most (the GIL), so `ReflectorPool` runs one
`Reflector` in this process and `workers - 1` more in spawned child processes, every one
of them binding the same address and port with SO_REUSEPORT. The kernel gives each
datagram to one socket of the group by a hash of its addresses and ports: all requests of
one sender's socket reach the same worker while the group is unchanged, so a stateful
session (sender address, port and SSID) lives in one worker, whose sequence numbering
and replay window see every request of the session. Budgets are split: each worker
holds 1/workers of the per-prefix and global rates and bursts, so the sum is the configured
budget while a prefix's senders spread over the workers (a single sender socket gets
1/workers of its prefix's budget: the conservative side).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import signal
from multiprocessing.connection import Connection

from collector.reflector.session_reflector import Reflector, ReflectorConfig, ReflectorStats
from collector.wire.stamp_reflect import TlvStats

MAX_WORKERS = 64
WORKER_START_S = 30.0  # a spawned worker imports the package and binds within this time
WORKER_STOP_S = 10.0  # how long a stop waits for a worker's counters


def worker_config(config: ReflectorConfig, workers: int) -> ReflectorConfig:
    """One worker's share: the same sockets (shared port) with 1/workers of every budget."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers: expected 1..{MAX_WORKERS}, got {workers}")

    def share(value: float) -> float:
        return value / workers

    def share_burst(value: int) -> int:
        return max(1, value // workers)

    return dataclasses.replace(
        config,
        reuse_port=workers > 1 or config.reuse_port,
        rate_limit_pps=share(config.rate_limit_pps),
        rate_burst=share_burst(config.rate_burst),
        global_rate_limit_pps=share(config.global_rate_limit_pps),
        global_rate_burst=share_burst(config.global_rate_burst),
    )


def merged(stats: list[ReflectorStats]) -> ReflectorStats:
    """The counters of every worker added up."""
    total = ReflectorStats()
    for part in stats:
        for f in dataclasses.fields(ReflectorStats):
            if f.name == "malformed":
                total.malformed.update(part.malformed)
            elif f.name == "tlv":
                for name in TlvStats.__slots__:
                    setattr(total.tlv, name, getattr(total.tlv, name) + getattr(part.tlv, name))
            else:
                setattr(total, f.name, getattr(total, f.name) + getattr(part, f.name))
    return total


def _serve_worker(config: ReflectorConfig, ready: Connection, stop: Connection) -> None:
    """A child worker: answer until the parent says stop (or goes away), then send the counters."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    try:
        reflector = Reflector(config).start()
    except OSError as exc:
        ready.send(("error", str(exc)))
        return
    ready.send(("ready", None))
    try:
        stop.recv()  # a stop, or EOFError once the parent is gone
    except (EOFError, OSError):
        pass
    finally:
        reflector.stop()
        try:
            ready.send(("stats", reflector.stats))
        except OSError:
            pass


class ReflectorPool:
    """`workers` reflectors sharing one port; a context manager like `Reflector`."""

    def __init__(self, config: ReflectorConfig, workers: int) -> None:
        self.workers = workers
        self.config = worker_config(config, workers)
        self.local = Reflector(self.config)
        self._children: list[tuple[multiprocessing.process.BaseProcess, Connection, Connection]] = []
        self._child_stats: list[ReflectorStats] = []
        self.worker_errors = 0  # children that gave no counters at stop

    def start(self) -> ReflectorPool:
        self.local.start()
        # Port 0 resolved by the first bind; the others join its group.
        shared = dataclasses.replace(self.config, port=self.local.port)
        context = multiprocessing.get_context("spawn")  # no fork of a process with running threads
        try:
            for _ in range(self.workers - 1):
                ready_parent, ready_child = context.Pipe()
                stop_child, stop_parent = context.Pipe(duplex=False)
                process = context.Process(
                    target=_serve_worker, args=(shared, ready_child, stop_child), name="stamp-reflector-worker"
                )
                process.start()
                ready_child.close()
                stop_child.close()
                self._children.append((process, ready_parent, stop_parent))
                if not ready_parent.poll(WORKER_START_S):
                    raise OSError(f"a reflector worker did not start within {WORKER_START_S:g} s")
                kind, detail = ready_parent.recv()
                if kind != "ready":
                    raise OSError(f"a reflector worker could not bind: {detail}")
        except (OSError, EOFError):
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.local.stop()
        for _process, _ready, stop in self._children:
            try:
                stop.send("stop")
            except OSError:
                pass
        for process, ready, stop in self._children:
            stats = None
            try:
                if ready.poll(WORKER_STOP_S):
                    kind, detail = ready.recv()
                    stats = detail if kind == "stats" else None
            except (EOFError, OSError):
                pass
            if stats is None:
                self.worker_errors += 1
            else:
                self._child_stats.append(stats)
            process.join(WORKER_STOP_S)
            if process.is_alive():
                process.kill()
                process.join()
            ready.close()
            stop.close()
        self._children.clear()

    def __enter__(self) -> ReflectorPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self.local.port

    @property
    def addresses(self) -> list[tuple]:
        return self.local.addresses

    @property
    def stats(self) -> ReflectorStats:
        """Every worker's counters added up: this process's live, the children's as of their stop."""
        return merged([self.local.stats, *self._child_stats])

    def serve_forever(self) -> None:
        self.local.serve_forever()
