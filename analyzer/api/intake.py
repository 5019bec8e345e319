"""Shipment bodies in, `ShipmentBatch`es out: the analyzer's side of `collector.contract.shipment`.

`parse_shipment` does the work of `collector.contract.shipment.decode_batch` and also checks every
field's type, so that a bad agent's body is refused at the door (HTTP 400 naming the field,
e.g. `windows[3].rtt_buckets: expected a list of 13 non-negative integers`) instead of
breaking a verdict later. It is the hot path of ingest (one call per window at national
scale: ~40,000 windows/s), so it checks with plain `type()` tests rather than a pydantic
model per window, and shares one `PathKey` object per path across all its windows (less
memory in the store, cheaper dictionary look-ups).

As `decode_batch` does, it ignores fields a newer agent added.
"""

from __future__ import annotations

import json

from analyzer.store.fast_records import builder
from collector.contract.records import RTT_BUCKETS_NS, CollectorHealth, FlowId, PathKey, PathObservation, PathWindow
from collector.contract.shipment import ShipmentBatch

BUCKETS = len(RTT_BUCKETS_NS) + 1  # the finite buckets and +Inf

# PathWindow fields by the check they need.
_COUNTS = ("sent", "received", "lost_forward", "lost_reverse", "lost_unknown", "duplicates", "reordered",
           "dscp_remarked", "icmp_errors")
_TIMES = ("seq", "start_ns", "end_ns", "rtt_sum_ns")
_OPTIONAL_INTS = ("rtt_min_ns", "rtt_p50_ns", "rtt_p90_ns", "rtt_p99_ns", "rtt_max_ns", "ipdv_mean_abs_ns",
                  "pdv_p99_ns", "forward_owd_p50_ns", "reverse_owd_p50_ns", "forward_owd_p99_ns",
                  "reverse_owd_p99_ns", "clock_error_ns", "reflector_hop_limit", "reply_hop_limit")
_WINDOW_FIELDS = frozenset(PathWindow.__dataclass_fields__)
_KEY_FIELDS = ("source", "target", "slice", "kind")
_HEALTH_FIELDS = CollectorHealth.__dataclass_fields__
MAX_KEYS_REMEMBERED = 1_000_000  # distinct paths whose PathKey object is shared; then start afresh


_build_window = builder(PathWindow)  # fields checked here: see analyzer.store.fast_records


class MalformedShipment(ValueError):
    """A body the analyzer refuses; `field` says where (e.g. "windows[3].sent")."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


class ShipmentParser:
    """Parses bodies; one per analyzer, so that every window of a path shares its PathKey."""

    def __init__(self) -> None:
        self._keys: dict[tuple, PathKey] = {}

    def parse(self, body: bytes | str) -> ShipmentBatch:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedShipment("", f"the body is not JSON ({exc})") from None
        return self.from_dict(data)

    def from_dict(self, data: object) -> ShipmentBatch:
        """A decoded JSON body (as `collector.contract.shipment.encode_batch` makes it) -> batch."""
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
            windows=tuple(self._window(w, i) for i, w in enumerate(windows)),
            observations=tuple(_observation(o, i) for i, o in enumerate(observations)),
            health=None if health is None else _health(health),
            created_ns=created_ns,
        )

    def _window(self, data: object, index: int) -> PathWindow:
        if type(data) is not dict:
            raise MalformedShipment(f"windows[{index}]", "expected an object")
        where = f"windows[{index}]"
        if data.keys() != _WINDOW_FIELDS:
            data = _known_fields(data, _WINDOW_FIELDS, where)
        for name in _COUNTS:
            value = data[name]
            if type(value) is not int or value < 0:
                raise MalformedShipment(f"{where}.{name}", f"expected a non-negative integer, got {value!r}")
        for name in _TIMES:
            if type(data[name]) is not int:
                raise MalformedShipment(f"{where}.{name}", f"expected an integer, got {data[name]!r}")
        for name in _OPTIONAL_INTS:
            value = data[name]
            if value is not None and type(value) is not int:
                raise MalformedShipment(f"{where}.{name}", f"expected an integer or null, got {value!r}")
        if data["end_ns"] <= data["start_ns"]:
            raise MalformedShipment(f"{where}.end_ns", "expected a window end after its start")
        buckets = data["rtt_buckets"]
        if type(buckets) is not list or len(buckets) != BUCKETS or any(type(b) is not int or b < 0 for b in buckets):
            raise MalformedShipment(f"{where}.rtt_buckets", f"expected a list of {BUCKETS} non-negative integers "
                                    "(RTT_BUCKETS_S and +Inf)")
        data["rtt_buckets"] = tuple(buckets)
        if type(data["target_address"]) is not str:
            raise MalformedShipment(f"{where}.target_address", "expected a string")
        fingerprint = data["path_fingerprint"]
        if fingerprint is not None and type(fingerprint) is not str:
            raise MalformedShipment(f"{where}.path_fingerprint", "expected a string or null")
        data["key"] = self._key(data["key"], where)
        return _build_window(data)

    def _key(self, data: object, where: str) -> PathKey:
        if type(data) is not dict:
            raise MalformedShipment(f"{where}.key", "expected an object with source, target, slice, kind")
        try:
            parts = (data["source"], data["target"], data["slice"], data["kind"])
        except KeyError as exc:
            raise MalformedShipment(f"{where}.key.{exc.args[0]}", "missing") from None
        key = self._keys.get(parts)
        if key is None:
            for name, value in zip(_KEY_FIELDS, parts):
                if type(value) is not str or not value:
                    raise MalformedShipment(f"{where}.key.{name}", f"expected a non-empty string, got {value!r}")
            if len(self._keys) >= MAX_KEYS_REMEMBERED:
                self._keys.clear()
            key = self._keys[parts] = PathKey(*parts)
        return key


def _known_fields(data: dict, fields: frozenset | dict, where: str) -> dict:
    """Fields the record has (a newer agent's extras are left out); a missing one is an error."""
    missing = [name for name in fields if name not in data]
    if missing:
        raise MalformedShipment(f"{where}.{missing[0]}", "missing")
    return {name: data[name] for name in fields}


def _observation(data: object, index: int) -> PathObservation:
    where = f"observations[{index}]"
    if type(data) is not dict:
        raise MalformedShipment(where, "expected an object")
    data = _known_fields(data, PathObservation.__dataclass_fields__, where)
    for name in ("source", "target", "slice"):
        if type(data[name]) is not str:
            raise MalformedShipment(f"{where}.{name}", "expected a string")
    if type(data["observed_ns"]) is not int:
        raise MalformedShipment(f"{where}.observed_ns", "expected an integer")
    if type(data["reached"]) is not bool:
        raise MalformedShipment(f"{where}.reached", "expected true or false")
    hops = data["hops"]
    if type(hops) is not list or any(h is not None and type(h) is not str for h in hops):
        raise MalformedShipment(f"{where}.hops", "expected a list of addresses or nulls")
    flow = data["flow"]
    if type(flow) is not dict:
        raise MalformedShipment(f"{where}.flow", "expected an object")
    flow = _known_fields(flow, FlowId.__dataclass_fields__, f"{where}.flow")
    if type(flow["protocol"]) is not str:
        raise MalformedShipment(f"{where}.flow.protocol", "expected a string")
    for name in ("flow_label", "source_port", "destination_port"):
        if type(flow[name]) is not int:
            raise MalformedShipment(f"{where}.flow.{name}", "expected an integer")
    try:
        data["flow"] = flow
        observation = PathObservation.from_dict(data)
        observation.fingerprint  # noqa: B018 - a hop that is not an address fails here, not in /topology
    except ValueError as exc:
        raise MalformedShipment(f"{where}.hops", str(exc)) from None
    return observation


def _health(data: object) -> CollectorHealth:
    if type(data) is not dict:
        raise MalformedShipment("health", "expected an object or null")
    data = _known_fields(data, _HEALTH_FIELDS, "health")
    for name, value in data.items():
        if name == "site":
            ok = type(value) is str
        elif name == "cpu_seconds_total":
            ok = type(value) in (int, float)
        else:
            ok = type(value) is int
        if not ok:
            raise MalformedShipment(f"health.{name}", f"expected {'a string' if name == 'site' else 'a number'}")
    return CollectorHealth(**data)
