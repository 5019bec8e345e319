"""What the lab created and which faults are active, kept as JSON under /run.

The record is written *before* each thing is created, so `lab down` (or the next
`lab up`) can always remove a half-built lab, and it never removes anything that the
record does not name. Active faults in the record are the ground truth that root-cause
tests compare the analyzer's hints against.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path("/run/xnetmon/lab")


def state_dir() -> Path:
    return Path(os.environ.get("XNETMON_LAB_STATE_DIR", DEFAULT_DIR))


@dataclass(slots=True)
class Process:
    """A background process the lab started (load generator, delay forwarder, ...)."""

    pid: int
    started: int | None  # /proc start time, so a recycled pid is never signalled
    site: str
    argv: list[str]
    purpose: str


@dataclass(slots=True)
class Fault:
    id: str
    kind: str
    started_at: str  # ISO 8601 UTC
    params: dict[str, Any]
    summary: str
    # How to take it back: these commands in order, then these processes stopped (a delay
    # rule goes before its forwarder, so no packet is left waiting). Link state, routes and
    # queue rates are not undone but recomputed from the faults that remain.
    undo: list[list[str]] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        data = dict(data)
        data["processes"] = [Process(**p) for p in data.get("processes", [])]
        return cls(**data)


@dataclass(slots=True)
class LabState:
    topology: str  # name or path as given to `lab up`, for status and re-loading
    topology_yaml: str  # the exact text used, so down/heal work even if the file changes
    namespaces: list[str] = field(default_factory=list)
    prefix: str = "xl-"  # of the namespace names
    complete: bool = False
    up_seconds: float | None = None
    faults: list[Fault] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)
    next_fault: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> LabState:
        data = json.loads(text)
        data["faults"] = [Fault.from_json(f) for f in data.get("faults", [])]
        data["processes"] = [Process(**p) for p in data.get("processes", [])]
        return cls(**data)

    def fault(self, fault_id: str) -> Fault | None:
        return next((f for f in self.faults if f.id == fault_id), None)

    def new_fault_id(self, kind: str) -> str:
        fault_id = f"{kind}-{self.next_fault}"
        self.next_fault += 1
        return fault_id


class StateStore:
    """The state file plus a lock, so two `xnetmon lab` commands never interleave."""

    def __init__(self, directory: Path | None = None):
        self.directory = directory or state_dir()
        self.path = self.directory / "state.json"
        self.logs = self.directory / "logs"

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def load(self) -> LabState | None:
        try:
            return LabState.from_json(self.path.read_text())
        except FileNotFoundError:
            return None

    def save(self, state: LabState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(state.to_json())
        os.replace(tmp, self.path)  # atomic: a crash leaves the old record or the new one

    def clear(self) -> None:
        """Forget the lab: the record and the logs of its background processes."""
        self.path.unlink(missing_ok=True)
        shutil.rmtree(self.logs, ignore_errors=True)
