"""What an agent ships to an analyzer, and its JSON wire form.

One `ShipmentBatch` carries the windows an agent closed (usually one interval's worth),
the paths it traced meanwhile and its own health. On the wire (HTTP POST body,
`Content-Type: application/json`) a batch is one JSON object:

    {
      "site": "cnty1a",                         # the agent's site name
      "created_ns": 1700000000000000000,        # when the agent made the batch (wall clock, ns)
      "windows": [PathWindow.to_dict(), ...],   # oldest first
      "observations": [PathObservation.to_dict(), ...],
      "health": {CollectorHealth fields} | null
    }

Delivery is at least once: an agent that crashed or lost a response sends a batch again,
and a spool that overflowed may resend a batch without its oldest windows. A receiver
therefore deduplicates windows by (key, seq) (`seq` is stable across agent restarts: it
numbers wall-clock-aligned windows); observations and health are snapshots, and a repeat
of one is harmless. A batch too large for one request arrives as several bodies, in
order; only the first carries the observations and health.

Fields may grow: `decode_batch` ignores fields of a window, observation or health that it
does not know, so an analyzer can be upgraded after its agents.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collector.contract.records import CollectorHealth, PathObservation, PathWindow

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


@dataclass(frozen=True, slots=True)
class ShipmentBatch:
    """Windows, traced paths and health that leave an agent together."""

    site: str
    windows: tuple[PathWindow, ...]
    observations: tuple[PathObservation, ...] = ()
    health: CollectorHealth | None = None
    created_ns: int = 0


def encode_batch(batch: ShipmentBatch) -> dict:
    """The batch as a JSON-ready dict (the POST body)."""
    return {
        "site": batch.site,
        "created_ns": batch.created_ns,
        "windows": [w.to_dict() for w in batch.windows],
        "observations": [o.to_dict() for o in batch.observations],
        "health": None if batch.health is None else dataclasses.asdict(batch.health),
    }


def decode_batch(body: dict) -> ShipmentBatch:
    """The inverse of `encode_batch`; raises KeyError/TypeError/ValueError on a malformed body."""
    health = body.get("health")
    return ShipmentBatch(
        site=body["site"],
        windows=tuple(PathWindow.from_dict(_known(PathWindow, w)) for w in body["windows"]),
        observations=tuple(PathObservation.from_dict(_known(PathObservation, o))
                           for o in body.get("observations", ())),
        health=None if health is None else CollectorHealth(**_known(CollectorHealth, health)),
        created_ns=body.get("created_ns", 0),
    )


def _known(record_type: type[DataclassInstance], data: dict) -> dict:
    """The fields of `data` that `record_type` has: a newer agent's extras are left out."""
    return {name: value for name, value in data.items() if name in record_type.__dataclass_fields__}


_ENCODER = json.JSONEncoder(separators=(",", ":"))  # one instance: json.dumps with options builds one per call


def dumps(value: object) -> str:
    """Compact JSON, as it goes on the wire and into the spool."""
    return _ENCODER.encode(value)


def window_json(window: PathWindow) -> str:
    return dumps(window.to_dict())


def assemble_body(batch: ShipmentBatch, windows_json: Sequence[str], *, with_extras: bool = True) -> bytes:
    """The wire body of `batch` with the given windows, already encoded one by one (so that
    no single call holds the GIL for long: a 5,000-window `json.dumps` takes ~50 ms).
    `with_extras=False` leaves observations and health out, for the later parts of a batch
    cut into several bodies. Equals `dumps(encode_batch(...))` for the same windows."""
    observations = [o.to_dict() for o in batch.observations] if with_extras else []
    health = dataclasses.asdict(batch.health) if with_extras and batch.health is not None else None
    return (
        f'{{"site":{dumps(batch.site)},"created_ns":{dumps(batch.created_ns)},'
        f'"windows":[{",".join(windows_json)}],'
        f'"observations":{dumps(observations)},"health":{dumps(health)}}}'
    ).encode()
