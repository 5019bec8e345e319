"""The one JSON codec of the contract: shipment bodies out of an agent, into an analyzer and
into its snapshot, with every record inside them.

Wire form (HTTP POST body, `Content-Type: application/json`): a `ShipmentBatch` is one JSON
object of its fields by name, and so is every record in it (nested records nested, tuples
as arrays); `collector.contract.records` and `collector.contract.shipment` define them all:

    {"site": "cnty1a", "windows": [PathWindow...], "observations": [PathObservation...],
     "health": CollectorHealth | null, "created_ns": 1700000000000000000}

Encoding goes at the agent's pace: windows are encoded one by one (`window_json`) and the
body assembled from them (`assemble_body`), so that no single call holds the GIL for long
(a 5,000-window `json.dumps` takes ~50 ms). `encode_body` does both for a whole batch.

Decoding (`ShipmentParser`) checks every field against the type its dataclass declares, so
that a bad agent's body is refused at the door (`MalformedShipment` naming the field, e.g.
`windows[3].rtt_buckets: expected a list of 13 non-negative integers`) instead of breaking
a verdict later. It is the analyzer's ingest hot path (one call per window at national
scale: ~40,000 windows/s), so it checks with plain `type()` tests over the field names
grouped by type once, at import; builds windows by writing their slots
(`collector.contract.fast_records`); and shares one `PathKey` object per path across the
windows it decodes (less memory in the store, cheaper dictionary look-ups). Fields may grow:
it ignores fields it does not know (a newer agent's), and a field of a type it cannot check
stops the import rather than pass unchecked.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import fields, is_dataclass, replace
from types import NoneType, UnionType
from typing import cast, get_args, get_origin, get_type_hints

from collector.contract.fast_records import builder
from collector.contract.records import (
    RTT_BUCKETS_NS,
    CollectorHealth,
    Count,
    FlowId,
    PathKey,
    PathObservation,
    PathWindow,
)
from collector.contract.shipment import ShipmentBatch

BUCKETS = len(RTT_BUCKETS_NS) + 1  # the finite buckets and +Inf
MAX_KEYS_REMEMBERED = 1_000_000  # distinct paths whose PathKey object is shared; then start afresh

# -- encoding ---------------------------------------------------------------------------------

_ENCODER = json.JSONEncoder(separators=(",", ":"))  # one instance: json.dumps with options builds one per call


def dumps(value: object) -> str:
    """Compact JSON, as it goes on the wire and into the spool."""
    return _ENCODER.encode(value)


def _value_encoder(hint: object) -> Callable[[object], object] | None:
    """How a value of type `hint` becomes JSON-ready, or None where it already is."""
    if isinstance(hint, type) and is_dataclass(hint):
        return _record_encoder(hint)
    origin, args = get_origin(hint), get_args(hint)
    if origin is tuple:
        item = _value_encoder(args[0])
        if item is None:
            return lambda values: list(cast(Iterable[object], values))
        return lambda values: [item(v) for v in cast(Iterable[object], values)]
    if origin is UnionType and NoneType in args:
        (inner,) = (a for a in args if a is not NoneType)
        encode = _value_encoder(inner)
        return None if encode is None else (lambda value: None if value is None else encode(value))
    return None


def _field_encoders(record_type: type) -> tuple[tuple[str, Callable | None], ...]:
    hints = get_type_hints(record_type)
    return tuple((f.name, _value_encoder(hints[f.name])) for f in fields(record_type))


def _record_encoder(record_type: type) -> Callable[[object], dict]:
    """`encode(record) -> dict`: every field by name, values made JSON-ready where they are not.
    Compiled to one dict display (as `fast_records` compiles builders): a comprehension of
    getattr calls takes ~45% longer, and the agent encodes every window this way."""
    namespace: dict[str, object] = {}
    items = []
    for name, encode in _field_encoders(record_type):
        value = f"record.{name}"
        if encode is not None:
            namespace[f"encode_{name}"] = encode
            value = f"encode_{name}({value})"
        items.append(f"{name!r}: {value}")
    exec(f"def encode(record):\n    return {{{', '.join(items)}}}", namespace)
    return cast(Callable[[object], dict], namespace["encode"])


_encoders: dict[type, Callable[[object], dict]] = {}
_encode_window = _encoders[PathWindow] = _record_encoder(PathWindow)
_BATCH_FIELDS = _field_encoders(ShipmentBatch)


def record_dict(record: object) -> dict:
    """A contract record as a JSON-ready dict; `ShipmentParser` decodes it back exactly."""
    encode = _encoders.get(type(record))
    if encode is None:
        encode = _encoders[type(record)] = _record_encoder(type(record))
    return encode(record)


def window_json(window: PathWindow) -> str:
    return dumps(_encode_window(window))


def assemble_body(batch: ShipmentBatch, windows_json: Sequence[str], *, with_extras: bool = True) -> bytes:
    """The wire body of `batch` with the given windows, already encoded one by one by
    `window_json`. `with_extras=False` leaves observations and health out, for the later
    parts of a batch cut into several bodies."""
    if not with_extras:
        batch = replace(batch, observations=(), health=None)
    members = []
    for name, encode in _BATCH_FIELDS:
        if name == "windows":
            text = f"[{','.join(windows_json)}]"
        else:
            value = getattr(batch, name)
            text = dumps(value if encode is None else encode(value))
        members.append(f'"{name}":{text}')
    return f"{{{','.join(members)}}}".encode()


def encode_body(batch: ShipmentBatch) -> bytes:
    """The wire body of a whole batch in one call (tests, tools; the agent assembles its own)."""
    return assemble_body(batch, [window_json(w) for w in batch.windows])


# -- decoding ---------------------------------------------------------------------------------


class MalformedShipment(ValueError):
    """A body the analyzer refuses; `field` says where (e.g. "windows[3].sent")."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


def _declared_types(record_type: type, *types: object) -> dict[str, object]:
    """`record_type`'s fields and their declared types, in order. A field of a type not among
    `types` stops the import here: none may go unchecked."""
    hints = get_type_hints(record_type, include_extras=True)
    declared = {f.name: hints[f.name] for f in fields(record_type)}
    for name, hint in declared.items():
        if hint not in types:
            raise TypeError(f"{record_type.__name__}.{name}: the codec has no check for a {hint}")
    return declared


def _names_by_type(record_type: type, *types: object) -> tuple[tuple[str, ...], ...]:
    """The names of `record_type`'s fields declared with each of `types`, in order."""
    declared = _declared_types(record_type, *types)
    return tuple(tuple(name for name, hint in declared.items() if hint == t) for t in types)


# Each record's field names, grouped by the check their declared type needs.
(_W_COUNTS, _W_INTS, _W_OPTIONAL_INTS, _W_BUCKETS, _W_STRINGS, _W_OPTIONAL_STRINGS, _W_KEYS) = _names_by_type(
    PathWindow, Count, int, int | None, tuple[Count, ...], str, str | None, PathKey
)
_WINDOW_FIELDS = frozenset(PathWindow.__dataclass_fields__)
(_KEY_FIELDS,) = _names_by_type(PathKey, str)
_key_parts = operator.itemgetter(*_KEY_FIELDS)
(_O_STRINGS, _O_INTS, _O_BOOLS, _O_HOPS, _O_FLOWS) = _names_by_type(
    PathObservation, str, int, bool, tuple[str | None, ...], FlowId
)
(_F_STRINGS, _F_INTS) = _names_by_type(FlowId, str, int)
_HEALTH_TYPES = _declared_types(CollectorHealth, str, int, float)

_build_window = builder(PathWindow)  # fields checked by ShipmentParser.window: see fast_records


class ShipmentParser:
    """Decodes bodies and records. One per analyzer (and one per snapshot read), so that every
    window of a path shares its PathKey."""

    def __init__(self) -> None:
        self._keys: dict[tuple, PathKey] = {}

    def parse(self, body: bytes | str) -> ShipmentBatch:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedShipment("", f"the body is not JSON ({exc})") from None
        return self.from_dict(data)

    def from_dict(self, data: object) -> ShipmentBatch:
        """A decoded JSON body (a wire body after `json.loads`) -> batch."""
        if type(data) is not dict:
            raise MalformedShipment("", "expected a JSON object with site, created_ns, windows, observations, health")
        site = data.get("site")
        if type(site) is not str or not site:
            raise MalformedShipment("site", "expected the agent's site name (a non-empty string)")
        created_ns = data.get("created_ns", 0)
        if type(created_ns) is not int:
            raise MalformedShipment("created_ns", "expected an integer (ns since the epoch)")
        windows = data.get("windows")
        if type(windows) is not list:
            raise MalformedShipment("windows", "expected a list of path windows")
        observations = data.get("observations") or []
        if type(observations) is not list:
            raise MalformedShipment("observations", "expected a list of path observations")
        health = data.get("health")
        return ShipmentBatch(
            site=site,
            windows=tuple(self.window(w, f"windows[{i}]") for i, w in enumerate(windows)),
            observations=tuple(observation(o, f"observations[{i}]") for i, o in enumerate(observations)),
            health=None if health is None else collector_health(health, "health"),
            created_ns=created_ns,
        )

    def window(self, data: object, where: str) -> PathWindow:
        """One PathWindow from its JSON object; `where` names it in errors."""
        if type(data) is not dict:
            raise MalformedShipment(where, "expected an object")
        if data.keys() != _WINDOW_FIELDS:
            data = _known_fields(data, _WINDOW_FIELDS, where)
        for name in _W_COUNTS:
            value = data[name]
            if type(value) is not int or value < 0:
                raise MalformedShipment(f"{where}.{name}", f"expected a non-negative integer, got {value!r}")
        for name in _W_INTS:
            if type(data[name]) is not int:
                raise MalformedShipment(f"{where}.{name}", f"expected an integer, got {data[name]!r}")
        for name in _W_OPTIONAL_INTS:
            value = data[name]
            if value is not None and type(value) is not int:
                raise MalformedShipment(f"{where}.{name}", f"expected an integer or null, got {value!r}")
        if data["end_ns"] <= data["start_ns"]:
            raise MalformedShipment(f"{where}.end_ns", "expected a window end after its start")
        for name in _W_BUCKETS:
            buckets = data[name]
            if (
                type(buckets) is not list
                or len(buckets) != BUCKETS
                or any(type(b) is not int or b < 0 for b in buckets)
            ):
                raise MalformedShipment(
                    f"{where}.{name}", f"expected a list of {BUCKETS} non-negative integers (RTT_BUCKETS_S and +Inf)"
                )
            data[name] = tuple(buckets)
        for name in _W_STRINGS:
            if type(data[name]) is not str:
                raise MalformedShipment(f"{where}.{name}", "expected a string")
        for name in _W_OPTIONAL_STRINGS:
            value = data[name]
            if value is not None and type(value) is not str:
                raise MalformedShipment(f"{where}.{name}", "expected a string or null")
        for name in _W_KEYS:
            data[name] = self.key(data[name], where, name)
        return _build_window(data)

    def key(self, data: object, where: str, name: str | None = None) -> PathKey:
        """A PathKey from its JSON object at `where` (in its field `name`, if given): the same
        object for every window of the path. The place is spelled out only for an error:
        this runs once per window."""
        if type(data) is not dict:
            raise MalformedShipment(_place(where, name), f"expected an object with {', '.join(_KEY_FIELDS)}")
        try:
            parts = _key_parts(data)
        except KeyError as exc:
            raise MalformedShipment(f"{_place(where, name)}.{exc.args[0]}", "missing") from None
        key = self._keys.get(parts)
        if key is None:
            for part, value in zip(_KEY_FIELDS, parts):
                if type(value) is not str or not value:
                    raise MalformedShipment(
                        f"{_place(where, name)}.{part}", f"expected a non-empty string, got {value!r}"
                    )
            if len(self._keys) >= MAX_KEYS_REMEMBERED:
                self._keys.clear()
            key = self._keys[parts] = PathKey(*parts)
        return key


def _place(where: str, name: str | None) -> str:
    return where if name is None else f"{where}.{name}"


def _known_fields(data: dict, names: Collection[str], where: str) -> dict:
    """Fields the record has (a newer agent's extras are left out); a missing one is an error."""
    missing = [name for name in names if name not in data]
    if missing:
        raise MalformedShipment(f"{where}.{missing[0]}", "missing")
    return {name: data[name] for name in names}


def observation(data: object, where: str) -> PathObservation:
    """One PathObservation from its JSON object; `where` names it in errors."""
    data = _object(data, PathObservation, where)
    _check_strings_and_ints(data, where, _O_STRINGS, _O_INTS)
    for name in _O_BOOLS:
        if type(data[name]) is not bool:
            raise MalformedShipment(f"{where}.{name}", "expected true or false")
    for name in _O_HOPS:
        hops = data[name]
        if type(hops) is not list or any(h is not None and type(h) is not str for h in hops):
            raise MalformedShipment(f"{where}.{name}", "expected a list of addresses or nulls")
        data[name] = tuple(hops)
    for name in _O_FLOWS:
        flow = _object(data[name], FlowId, f"{where}.{name}")
        _check_strings_and_ints(flow, f"{where}.{name}", _F_STRINGS, _F_INTS)
        data[name] = FlowId(**flow)
    decoded = PathObservation(**data)
    try:
        _ = decoded.fingerprint  # a hop that is not an address fails here, not in /topology
    except ValueError as exc:
        raise MalformedShipment(f"{where}.{_O_HOPS[0]}", str(exc)) from None
    return decoded


def _object(data: object, record_type: type, where: str) -> dict:
    """`data`'s fields of `record_type`, when it is a JSON object that has them all."""
    if type(data) is not dict:
        raise MalformedShipment(where, "expected an object")
    return _known_fields(data, [f.name for f in fields(record_type)], where)


def _check_strings_and_ints(data: dict, where: str, strings: tuple[str, ...], ints: tuple[str, ...]) -> None:
    for name in strings:
        if type(data[name]) is not str:
            raise MalformedShipment(f"{where}.{name}", "expected a string")
    for name in ints:
        if type(data[name]) is not int:
            raise MalformedShipment(f"{where}.{name}", "expected an integer")


def collector_health(data: object, where: str) -> CollectorHealth:
    """One CollectorHealth from its JSON object; `where` names it in errors."""
    if type(data) is not dict:
        raise MalformedShipment(where, "expected an object or null")
    data = _known_fields(data, _HEALTH_TYPES, where)
    for name, value in data.items():
        declared = _HEALTH_TYPES[name]
        if declared is str:
            ok = type(value) is str
        elif declared is float:
            ok = type(value) in (int, float)
        else:
            ok = type(value) is int
        if not ok:
            raise MalformedShipment(f"{where}.{name}", f"expected {'a string' if declared is str else 'a number'}")
    return CollectorHealth(**data)
