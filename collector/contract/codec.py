"""The one JSON codec of the contract: shipment bodies out of an agent, into an analyzer and
into its snapshot, with every record inside them.

Wire form (HTTP POST body, `Content-Type: application/json`): a `ShipmentBatch` is one JSON
object of its fields by name, and so is every record in it (nested records nested, tuples
as arrays); `collector.contract.records` and `collector.contract.shipment` define them all:

    {"site": "cnty1a", "windows": [PathWindow...], "observations": [PathObservation...],
     "health": CollectorHealth | null, "created_ns": 1700000000000000000,
     "marked_blocks": [MarkedBlock...]}

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

Every input has a bound, so that nothing it lets in can fail later (an integer too large for
a float, a list too long to sum in time): counts at most `MAX_COUNT`, other integers within
64 bits, names at most `MAX_NAME` characters, at most `MAX_WINDOWS` windows and
`MAX_OBSERVATIONS` observations and `MAX_MARKED_BLOCKS` marked blocks a body (each with at
most `MAX_DELAY_MARKS` D timestamps), `MAX_HOPS` hops a trace, finite numbers only; JSON
too deep or with integers too long for Python is refused like any other malformed body. The
counts must add up: received and losses within sent, the RTT histogram holding exactly the
replies, reordered and remarked replies among them, and `seq` numbering the window's place in
time (start = seq x length) as every agent numbers it.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import MISSING, fields, is_dataclass, replace
from types import NoneType, UnionType
from typing import Annotated, Any, cast, get_args, get_origin, get_type_hints

from collector.contract.fast_records import builder, copier
from collector.contract.marked_blocks import DIRECTIONS, MAX_DELAY_MARKS, MarkedBlock
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
# Bounds of what a body may hold. An agent posts at most 5,000 windows a body
# (collector/outputs/sinks.py); a count of 2**32 packets in one window is far beyond any link,
# and sums of such counts over a million paths stay exact in a float.
MAX_WINDOWS = 10_000
MAX_OBSERVATIONS = 10_000
MAX_MARKED_BLOCKS = 10_000
MAX_HOPS = 255  # the IPv6 hop limit
MAX_NAME = 255  # characters of a site, target, slice, kind, address or fingerprint
MAX_COUNT = 2**32
MAX_INT = 2**63 - 1  # times in ns and delays fit in 64 bits, as everywhere else
MAX_WINDOW_NS = 86_400 * 10**9  # a window is at most a day long

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
        batch = replace(batch, observations=(), health=None, marked_blocks=())
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
(_B_STRINGS, _B_INTS, _B_COUNTS, _B_MARKS, _B_BOOLS) = _names_by_type(
    MarkedBlock, str, int, Count, tuple[int, ...], bool
)
# fields an older agent does not send, and what they mean when absent
_B_DEFAULTS = {f.name: f.default for f in fields(MarkedBlock) if f.default is not MISSING}

_INT = {int}
_build_window = builder(PathWindow)  # fields checked by ShipmentParser.window: see fast_records
_copy_window = copier(PathWindow)  # the same from msgspec's checked wire window (`_wire_schema`)
_set_key = {name: getattr(PathWindow, name).__set__ for name in _W_KEYS}  # its wire key -> the shared PathKey


def _wire_schema(msgspec) -> tuple[object, Callable[[object], tuple]]:
    """msgspec's decoder of a whole body, its windows typed and bounded as `ShipmentParser.window`
    checks them (built from the same groups of field names, so a new field of a type neither
    knows stops the import); the rest of the body stays raw JSON for the pure-Python checks.
    With it, the function that reads a wire key's parts."""
    meta = msgspec.Meta
    name = Annotated[str, meta(max_length=MAX_NAME)]
    count = Annotated[int, meta(ge=0, le=MAX_COUNT)]
    kinds: dict[tuple[str, ...], object] = {
        _W_COUNTS: count,
        _W_INTS: Annotated[int, meta(ge=0, le=MAX_INT)],
        _W_OPTIONAL_INTS: Annotated[int, meta(ge=-MAX_INT, le=MAX_INT)] | None,
        _W_BUCKETS: Annotated[tuple[Annotated[int, meta(ge=0)], ...], meta(min_length=BUCKETS, max_length=BUCKETS)],
        _W_STRINGS: name,
        _W_OPTIONAL_STRINGS: name | None,
    }
    key = msgspec.defstruct(
        "_WireKey", [(part, Annotated[str, meta(min_length=1, max_length=MAX_NAME)]) for part in _KEY_FIELDS], gc=False
    )
    kinds[_W_KEYS] = key
    typed = {field: kind for names, kind in kinds.items() for field in names}
    window = msgspec.defstruct("_WireWindow", [(f.name, typed[f.name]) for f in fields(PathWindow)], gc=False)
    body = msgspec.defstruct(
        "_WireBody",
        [
            ("site", name),
            ("windows", Annotated[list[window], meta(max_length=MAX_WINDOWS)]),  # type: ignore[valid-type]
            ("created_ns", int, 0),  # bounded by ShipmentParser._batch, as the rest below
            ("observations", msgspec.Raw, msgspec.Raw()),  # empty: absent
            ("health", msgspec.Raw, msgspec.Raw()),
            ("marked_blocks", msgspec.Raw, msgspec.Raw()),
        ],
    )
    return msgspec.json.Decoder(body), msgspec.structs.astuple


_wire_decoder: Any = None  # msgspec's, when it is installed
_wire_key_parts: Callable[[Any], tuple] = tuple
try:
    import msgspec as _msgspec
except ImportError:  # the pure-Python way alone: the same batches and errors, slower
    pass
else:
    _wire_decoder, _wire_key_parts = _wire_schema(_msgspec)


def _loads(body: bytes | str) -> object:
    try:
        return json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise MalformedShipment("", "the body is JSON nested too deep") from None
    except ValueError as exc:  # not JSON, not UTF-8, NaN, or an integer over Python's 4,300 digits
        raise MalformedShipment("", f"the body is not JSON this analyzer takes ({exc})") from None


class ShipmentParser:
    """Decodes bodies and records. One per analyzer (and one per snapshot read), so that every
    window of a path shares its PathKey."""

    def __init__(self, *, fast: bool = True) -> None:
        self._keys: dict[tuple, PathKey] = {}
        # msgspec checks the windows when it is installed; fast=False keeps to pure Python (tests)
        self._fast = fast and _wire_decoder is not None

    def parse(self, body: bytes | str) -> ShipmentBatch:
        if self._fast:
            batch = self._parse_fast(body)
            if batch is not None:
                return batch
        return self.from_dict(_loads(body))

    def _parse_fast(self, body: bytes | str) -> ShipmentBatch | None:
        """The body through msgspec, which checks the windows' types and bounds in C; None
        when it refuses the body, which then goes the pure-Python way: that way names the
        field in its error, or takes what msgspec is stricter about (a lone surrogate)."""
        try:
            wire = _wire_decoder.decode(body)
        except (_msgspec.DecodeError, ValueError):  # not UTF-8 raises a bare UnicodeDecodeError
            return None
        envelope = {
            "site": wire.site,
            "created_ns": wire.created_ns,
            "windows": wire.windows,
            "observations": _loads(bytes(wire.observations)) if wire.observations else [],
            "health": _loads(bytes(wire.health)) if wire.health else None,
            "marked_blocks": _loads(bytes(wire.marked_blocks)) if wire.marked_blocks else [],
        }
        return self._batch(envelope, self._checked_windows)

    def _checked_windows(self, windows: list) -> tuple[PathWindow, ...]:
        return tuple(self._wire_window(w, f"windows[{i}]") for i, w in enumerate(windows))

    def from_dict(self, data: object) -> ShipmentBatch:
        """A decoded JSON body (a wire body after `json.loads`) -> batch."""
        return self._batch(data, lambda windows: tuple(self.window(w, f"windows[{i}]") for i, w in enumerate(windows)))

    def _batch(self, data: object, decode_windows: Callable[[list], tuple[PathWindow, ...]]) -> ShipmentBatch:
        if type(data) is not dict:
            raise MalformedShipment("", "expected a JSON object with site, created_ns, windows, observations, health")
        site = data.get("site")
        if type(site) is not str or not site or len(site) > MAX_NAME:
            raise MalformedShipment("site", f"expected the agent's site name (1 to {MAX_NAME} characters)")
        created_ns = data.get("created_ns", 0)
        if type(created_ns) is not int or not 0 <= created_ns <= MAX_INT:
            raise MalformedShipment("created_ns", "expected an integer (ns since the epoch)")
        windows = data.get("windows")
        if type(windows) is not list or len(windows) > MAX_WINDOWS:
            raise MalformedShipment("windows", f"expected a list of at most {MAX_WINDOWS} path windows")
        observations = data.get("observations", [])  # absent: none; anything but a list is refused
        if type(observations) is not list or len(observations) > MAX_OBSERVATIONS:
            raise MalformedShipment("observations", f"expected a list of at most {MAX_OBSERVATIONS} observations")
        health = data.get("health")
        blocks = data.get(
            "marked_blocks", []
        )  # absent from agents before in-situ telemetry; anything but a list is refused
        if type(blocks) is not list or len(blocks) > MAX_MARKED_BLOCKS:
            raise MalformedShipment("marked_blocks", f"expected a list of at most {MAX_MARKED_BLOCKS} marked blocks")
        return ShipmentBatch(
            site=site,
            windows=decode_windows(windows),
            observations=tuple(observation(o, f"observations[{i}]") for i, o in enumerate(observations)),
            health=None if health is None else collector_health(health, "health"),
            created_ns=created_ns,
            marked_blocks=tuple(marked_block(b, f"marked_blocks[{i}]") for i, b in enumerate(blocks)),
        )

    def window(self, data: object, where: str) -> PathWindow:
        """One PathWindow from its JSON object; `where` names it in errors."""
        if type(data) is not dict:
            raise MalformedShipment(where, "expected an object")
        if data.keys() != _WINDOW_FIELDS:
            data = _known_fields(data, _WINDOW_FIELDS, where)
        for name in _W_COUNTS:
            value = data[name]
            if type(value) is not int or not 0 <= value <= MAX_COUNT:
                raise MalformedShipment(
                    f"{where}.{name}", f"expected a non-negative integer up to 2**32, got {_shown(value)}"
                )
        for name in _W_INTS:
            value = data[name]
            if type(value) is not int or not 0 <= value <= MAX_INT:
                raise MalformedShipment(
                    f"{where}.{name}", f"expected a non-negative integer up to 2**63-1, got {_shown(value)}"
                )
        for name in _W_OPTIONAL_INTS:
            value = data[name]
            if value is not None and (type(value) is not int or not -MAX_INT <= value <= MAX_INT):
                raise MalformedShipment(f"{where}.{name}", f"expected a 64-bit integer or null, got {_shown(value)}")
        for name in _W_BUCKETS:
            buckets = data[name]
            # Types and the lower bound here, in C loops (this runs per window); the upper bound
            # follows from the histogram summing to `received` (_check_window_arithmetic).
            if (
                type(buckets) is not list
                or len(buckets) != BUCKETS
                or set(map(type, buckets)) != _INT
                or min(buckets) < 0
            ):
                raise MalformedShipment(
                    f"{where}.{name}", f"expected a list of {BUCKETS} non-negative integers (RTT_BUCKETS_S and +Inf)"
                )
            data[name] = tuple(buckets)
        for name in _W_STRINGS:
            value = data[name]
            if type(value) is not str or len(value) > MAX_NAME:
                raise MalformedShipment(f"{where}.{name}", f"expected a string of at most {MAX_NAME} characters")
        for name in _W_OPTIONAL_STRINGS:
            value = data[name]
            if value is not None and (type(value) is not str or len(value) > MAX_NAME):
                raise MalformedShipment(
                    f"{where}.{name}", f"expected null or a string of at most {MAX_NAME} characters"
                )
        _check_window_arithmetic(data.__getitem__, where)
        for name in _W_KEYS:
            data[name] = self.key(data[name], where, name)
        return _build_window(data)

    def _wire_window(self, wire, where: str) -> PathWindow:
        """A window msgspec has checked field by field (`_wire_schema`): the checks across
        its fields, then the record, with the path's shared key."""
        _check_window_arithmetic(wire.__getattribute__, where)
        window = _copy_window(wire)
        for name in _W_KEYS:
            _set_key[name](window, self._shared_key(_wire_key_parts(getattr(wire, name))))
        return window

    def _shared_key(self, parts: tuple) -> PathKey:
        """The one PathKey of these (checked) parts."""
        key = self._keys.get(parts)
        if key is None:
            if len(self._keys) >= MAX_KEYS_REMEMBERED:
                self._keys.clear()
            key = self._keys[parts] = PathKey(*parts)
        return key

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
                if type(value) is not str or not value or len(value) > MAX_NAME:
                    raise MalformedShipment(
                        f"{_place(where, name)}.{part}", f"expected 1 to {MAX_NAME} characters, got {_shown(value)}"
                    )
            key = self._shared_key(parts)
        return key


def _check_window_arithmetic(value: Callable[[str], object], where: str) -> None:
    """The counts of one window must add up as an agent's do (collector/agent/windows.py).
    `value(name)` is a field's value, already of its type and within its bounds."""
    get = cast(Callable[[str], int], value)
    start, end = get("start_ns"), get("end_ns")
    if not 0 < end - start <= MAX_WINDOW_NS:
        raise MalformedShipment(f"{where}.end_ns", "expected a window end after its start, at most a day later")
    sent, received = get("sent"), get("received")
    lost = get("lost_forward") + get("lost_reverse") + get("lost_unknown")
    if received + lost > sent:
        raise MalformedShipment(
            f"{where}.received", f"received ({received}) and lost ({lost}) add up to more than sent ({sent})"
        )
    in_histogram = sum(cast(tuple[int, ...], value("rtt_buckets")))
    if in_histogram != received:
        raise MalformedShipment(
            f"{where}.rtt_buckets", f"the histogram holds {_shown(in_histogram)} replies, not the {received} received"
        )
    for name in ("reordered", "dscp_remarked"):
        if get(name) > received:
            raise MalformedShipment(f"{where}.{name}", f"{get(name)} is more than the {received} replies received")
    if get("icmp_errors") > sent:
        raise MalformedShipment(f"{where}.icmp_errors", f"{get('icmp_errors')} is more than the {sent} probes sent")
    length, seq = end - start, get("seq")
    if seq * length != start:
        raise MalformedShipment(
            f"{where}.seq",
            f"window {seq} of {length} ns does not start at {start}: seq numbers the window's interval "
            "(start_ns / length)",
        )


def _shown(value: object) -> str:
    """A refused value as an error shows it: never the whole of a huge one."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number")


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
    _check_strings_and_ints(data, where, _O_STRINGS, _O_INTS, (0, MAX_INT))
    for name in _O_BOOLS:
        if type(data[name]) is not bool:
            raise MalformedShipment(f"{where}.{name}", "expected true or false")
    for name in _O_HOPS:
        hops = data[name]
        if (
            type(hops) is not list
            or len(hops) > MAX_HOPS
            or any(h is not None and (type(h) is not str or len(h) > MAX_NAME) for h in hops)
        ):
            raise MalformedShipment(f"{where}.{name}", f"expected a list of at most {MAX_HOPS} addresses or nulls")
        data[name] = tuple(hops)
    for name in _O_FLOWS:
        flow = _object(data[name], FlowId, f"{where}.{name}")
        _check_strings_and_ints(flow, f"{where}.{name}", _F_STRINGS, _F_INTS, (0, 0xFFFFF))  # ports, flow label
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


def _check_strings_and_ints(
    data: dict, where: str, strings: tuple[str, ...], ints: tuple[str, ...], int_range: tuple[int, int]
) -> None:
    for name in strings:
        value = data[name]
        if type(value) is not str or len(value) > MAX_NAME:
            raise MalformedShipment(f"{where}.{name}", f"expected a string of at most {MAX_NAME} characters")
    low, high = int_range
    for name in ints:
        value = data[name]
        if type(value) is not int or not low <= value <= high:
            raise MalformedShipment(f"{where}.{name}", f"expected an integer from {low} to {high}")


def collector_health(data: object, where: str) -> CollectorHealth:
    """One CollectorHealth from its JSON object; `where` names it in errors."""
    if type(data) is not dict:
        raise MalformedShipment(where, "expected an object or null")
    data = _known_fields(data, _HEALTH_TYPES, where)
    for name, value in data.items():
        declared = _HEALTH_TYPES[name]
        if declared is str:
            ok = type(value) is str and len(value) <= MAX_NAME
        elif declared is float:  # json.loads was told to refuse NaN and Infinity
            ok = (type(value) is float and 0.0 <= value <= MAX_INT) or (type(value) is int and 0 <= value <= MAX_INT)
        else:
            ok = type(value) is int and 0 <= value <= MAX_INT
        if not ok:
            wanted = f"a string of at most {MAX_NAME} characters" if declared is str else "a number from 0 to 2**63-1"
            raise MalformedShipment(f"{where}.{name}", f"expected {wanted}")
    return CollectorHealth(**data)


def marked_block(data: object, where: str) -> MarkedBlock:
    """One MarkedBlock from its JSON object; `where` names it in errors."""
    if type(data) is dict and not _B_DEFAULTS.keys() <= data.keys():
        data = {**_B_DEFAULTS, **data}
    data = _object(data, MarkedBlock, where)
    _check_strings_and_ints(data, where, _B_STRINGS, _B_INTS, (0, MAX_INT))
    _check_strings_and_ints(data, where, (), _B_COUNTS, (0, MAX_COUNT))
    for name in _B_MARKS:
        marks = data[name]
        if (
            type(marks) is not list
            or len(marks) > MAX_DELAY_MARKS
            or any(type(t) is not int or not 0 <= t <= MAX_INT for t in marks)
        ):
            raise MalformedShipment(f"{where}.{name}", f"expected a list of at most {MAX_DELAY_MARKS} times in ns")
        data[name] = tuple(marks)
    for name in _B_BOOLS:
        if type(data[name]) is not bool:
            raise MalformedShipment(f"{where}.{name}", "expected true or false")
    if data["direction"] not in DIRECTIONS:
        raise MalformedShipment(f"{where}.direction", f"expected one of {', '.join(DIRECTIONS)}")
    if data["colour"] > 1:
        raise MalformedShipment(f"{where}.colour", "expected 0 or 1")
    if data["flow_mon_id"] >= 1 << 20:
        raise MalformedShipment(f"{where}.flow_mon_id", "expected a FlowMonID of 20 bits")
    if not data["first_ns"] <= data["last_ns"]:
        raise MalformedShipment(f"{where}.last_ns", "expected the block's last packet at or after its first")
    return MarkedBlock(**data)
