"""The store's persistence: a `WindowStore`'s state to a JSON file and back, so that an
analyzer restart resumes its verdicts instead of starting them afresh.

`save_snapshot(store, path)` writes atomically (a crash leaves the previous snapshot
whole). Kept: trackers, dedup state, open intervals, each path's newest window,
observations, agents, counters; the rest of a path's history is not (views restart from
the newest window). `restore_snapshot(path, policies, **options)` builds a store from it
with today's policies; a tracker whose state no longer fits its policy starts afresh.

Records are written in the contract's wire form and read back by its decoder
(`collector.contract.codec`), checked as a shipment's are. A snapshot is the store's own
state, so this module reads and writes the store's internals (`analyzer.store.memory`'s
path and slice states); no other module does.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path

from analyzer.sla.path_trackers import PathTracker
from analyzer.store.memory import AgentSeen, WindowStore
from collector.contract.codec import ShipmentParser, collector_health, dumps, observation, record_dict
from collector.contract.records import PathKey
from collector.system.files import write_atomically

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = "xnetmon-analyzer-store"
SNAPSHOT_VERSION = 1
# What a part of the wrong shape raises while it is read (a list where a mapping belongs,
# a word where a number does, a key to a path the file does not hold...).
_DAMAGE = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, ZeroDivisionError)


def save_snapshot(store: WindowStore, path: str | os.PathLike) -> int:
    """Write `store`'s state to `path`; returns the bytes written."""
    text = snapshot_text(store)
    write_atomically(path, text)
    return len(text)


def snapshot_text(store: WindowStore) -> str:
    """`store`'s state in the snapshot format (a file's content, or a bus checkpoint's)."""
    with store._lock:
        state = _state(store)
    # Encoding happens outside the lock: ingest goes on meanwhile.
    return dumps(state)


def restore_snapshot(path: str | os.PathLike, policies: Mapping[str, object] | None = None, **options) -> WindowStore:
    """A store from `save_snapshot`'s file, with today's `policies` and `options` (as for
    the `WindowStore` constructor). Trackers continue where they were (status, budget,
    since); a tracker whose state no longer fits its policy starts afresh, logged.
    Raises OSError or ValueError (with the file's name) if the file cannot be used."""
    name = str(path)
    state = _parsed(Path(path).read_bytes(), name)
    options.setdefault("interval_s", _saved_interval(state, name))
    _check_interval(state, options["interval_s"], name)
    try:
        store = WindowStore(policies, **options)  # the saved interval_s may be damaged too
    except _DAMAGE as exc:
        raise ValueError(f"{name}: damaged snapshot ({type(exc).__name__}: {exc})") from None
    _load_named(store, state, name)
    return store


def restore_into(store: WindowStore, text: str | bytes, name: str) -> None:
    """Load a snapshot's `text` into `store`, which must hold nothing yet (an analyzer whose
    state comes from the bus once it has connected, while its API already answers).
    Raises ValueError naming `name` if the snapshot cannot be used; `store` is then unchanged."""
    state = _parsed(text, name)
    _check_interval(state, store.interval_s, name)
    with store._lock:
        if store._paths or store._agents or store._observations:
            raise ValueError(f"{name}: the store holds windows already; a snapshot goes into an empty one")
        _load_named(store, state, name)


def _parsed(text: str | bytes, name: str) -> dict:
    try:
        state = json.loads(text)
    except (ValueError, RecursionError) as exc:  # not JSON, not text, or nested past the parser
        raise ValueError(f"{name}: not a store snapshot ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"{name}: not an xnetmon analyzer snapshot")
    if state.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"{name}: snapshot version {state.get('version')}, this analyzer reads {SNAPSHOT_VERSION}")
    return state


def _saved_interval(state: dict, name: str) -> float:
    saved_interval = state.get("interval_s")
    if (
        isinstance(saved_interval, bool)
        or not isinstance(saved_interval, int | float)
        or not 0 < saved_interval < math.inf
    ):
        raise ValueError(f"{name}: damaged snapshot (interval_s: expected a positive number, got {saved_interval!r})")
    return saved_interval


def _check_interval(state: dict, interval_s: float, name: str) -> None:
    saved_interval = _saved_interval(state, name)
    if interval_s != saved_interval:
        raise ValueError(
            f"{name}: saved with {saved_interval} s intervals, not {interval_s} s; "
            "its verdicts cannot continue at another interval"
        )


def _load_named(store: WindowStore, state: dict, name: str) -> None:
    try:
        _load(store, state)
    except _DAMAGE as exc:
        raise ValueError(f"{name}: damaged snapshot ({type(exc).__name__}: {exc})") from None


def _state(store: WindowStore) -> dict:
    # Taken under the store's lock: trackers and the open intervals change with every ingest.
    return {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "interval_s": store.interval_s,
        "judged_through_ns": store._judged_through_ns,
        "slices": [
            {
                "name": s.name,
                "closed_upto": s.closed_upto,
                "expected": [record_dict(p.key) for p in s.expected],
                "tracker": None if s.tracker is None else s.tracker.to_state(),
                "pending": [record_dict(w) for windows, _ in s.pending.values() for w in windows],
            }
            for s in store._slices.values()
        ],
        "paths": [
            {
                "key": record_dict(p.key),
                "max_seq": p.max_seq,
                "seen_mask": p.seen_mask,
                "fed": p.fed,
                "last_seen_ns": p.last_seen_ns,
                "latest": None if p.latest is None else record_dict(p.latest),
                "tracker": None if p.tracker is None else p.tracker.to_state(),
            }
            for p in store._paths.values()
        ],
        "observations": [record_dict(o) for o in store._observations.values()],
        "agents": [
            {
                "site": a.site,
                "last_batch_ns": a.last_batch_ns,
                "health": None if a.health is None else record_dict(a.health),
            }
            for a in store._agents.values()
        ],
        "counters": dict(store.counters),
    }


def _load(store: WindowStore, state: dict) -> None:
    decode = ShipmentParser()  # one PathKey object per path, shared by its windows
    for i, entry in enumerate(state["paths"]):
        key = decode.key(entry["key"], f"paths[{i}].key")
        path = store._new_path(key)
        path.max_seq, path.seen_mask, path.fed = entry["max_seq"], entry["seen_mask"], entry["fed"]
        path.last_seen_ns = entry["last_seen_ns"]
        if entry["latest"] is not None:
            path.latest = decode.window(entry["latest"], f"paths[{i}].latest")
            path.interval = path.latest.start_ns // store.interval_ns
            path.recent.append(path.latest)
        path.tracker = _restored_tracker(store, path.tracker, entry["tracker"], store.policies.get(key.slice), key)
    for i, entry in enumerate(state["slices"]):
        slice_state = store._slice(entry["name"])
        slice_state.closed_upto = entry["closed_upto"]
        expected = (store._paths.get(decode.key(k, f"slices[{i}].expected")) for k in entry["expected"])
        slice_state.expected = frozenset(p for p in expected if p is not None)
        slice_state.tracker = _restored_tracker(store, slice_state.tracker, entry["tracker"], slice_state.policy)
        for j, data in enumerate(entry["pending"]):
            window = decode.window(data, f"slices[{i}].pending[{j}]")
            number = window.start_ns // store.interval_ns
            path = store._paths[window.key]
            windows, paths = slice_state.pending.setdefault(number, ([], []))
            windows.append(window)
            paths.append(path)
            if window.seq != path.max_seq:  # the newest is there already
                path.recent.append(window)
    for path in store._paths.values():  # history oldest first, as ingest leaves it
        ordered = sorted(path.recent, key=lambda w: w.seq)
        path.recent.clear()
        path.recent.extend(ordered)
    for i, data in enumerate(state["observations"]):
        seen = observation(data, f"observations[{i}]")
        store._observations[(seen.source, seen.target, seen.slice)] = seen
    for i, entry in enumerate(state["agents"]):
        health = None if entry["health"] is None else collector_health(entry["health"], f"agents[{i}].health")
        store._agents[entry["site"]] = AgentSeen(entry["site"], entry["last_batch_ns"], health)
    store._judged_through_ns = state["judged_through_ns"]
    for name, value in state["counters"].items():
        if name in store.counters:
            store.counters[name] = value


def _restored_tracker(store: WindowStore, fresh, saved: dict | None, policy, key: PathKey | None = None):
    if policy is None or saved is None:
        return fresh
    try:
        if isinstance(fresh, PathTracker):  # a row of its slice's columns
            fresh.restore(saved)
            return fresh
        return store.tracker_type.from_state(saved, policy)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("SLA state of %s does not fit its policy any more (%s); it starts afresh", key or policy, exc)
        return fresh
