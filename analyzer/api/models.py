"""The analyzer API's request and response bodies (pydantic: the edge, and the OpenAPI docs).

Times are integer nanoseconds since the epoch (`*_ns`), delays seconds (`*_s`), loss and
budget ratios 0..1, as everywhere in xnetmon.

The models that show the contract's records (`ShipmentBody`, `PathRef`, `WindowSummary`)
are generated from their dataclasses (`contract_fields`): a field added to a record is in
the API with the record's type, and a field of the record named here that goes away stops
the import.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
from collections.abc import Mapping, Sequence
from types import NoneType, UnionType
from typing import Any, Literal, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from analyzer.rootcause.model import HINT_KINDS
from collector.contract.codec import encode_body
from collector.contract.examples import EXAMPLE_KEY, example_health, example_window
from collector.contract.records import PathKey, PathWindow
from collector.contract.shipment import ShipmentBatch

Status = Literal["ok", "at-risk", "breached", "no-data", "no-policy"]


class Problem(BaseModel):
    detail: str = Field(description="what was wrong, naming the field or value at fault")


class WindowsAccepted(BaseModel):
    """What the analyzer did with one shipment."""

    accepted: int = Field(description="new windows taken (late ones included)")
    duplicates: int = Field(description="windows seen before (delivery is at least once) and ignored")
    stale: int = Field(description="windows older than the path's dedup horizon (64 intervals) and ignored")
    late: int = Field(
        description="accepted after their slice's interval had closed: in path views, not the slice verdict"
    )
    future: int = Field(
        description="starting more than 5 minutes after the analyzer's clock (a wrong agent clock) and ignored"
    )
    refused: int = Field(
        description="of a slice without an SLA policy, or of a new path beyond the store's bound: refused, counted"
    )
    observations: int
    health: bool = Field(description="whether the shipment carried the agent's health")


def _json_type(hint: Any) -> Any:
    """A contract type as the API documents it: records are JSON objects of their fields
    (`record_model`), tuples arrays."""
    if dataclasses.is_dataclass(hint):
        return record_model(hint)  # type: ignore[arg-type]  # a record class, not an instance
    origin, args = get_origin(hint), get_args(hint)
    if origin is tuple:
        return list[_json_type(args[0])]  # type: ignore[misc]  # built at run time, for pydantic
    if origin is UnionType and NoneType in args:
        (inner,) = (a for a in args if a is not NoneType)
        return _json_type(inner) | None
    return hint


def contract_fields(
    record_type: type, names: Sequence[str] | None = None, *, descriptions: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """`create_model` field definitions for a contract record's fields (all of them, or
    `names` in that order) with the record's declared types and defaults."""
    hints = get_type_hints(record_type, include_extras=True)
    declared = {f.name: f for f in dataclasses.fields(record_type)}
    descriptions = descriptions or {}
    definitions = {}
    for name in declared if names is None else names:
        default = declared[name].default
        definitions[name] = (
            _json_type(hints[name]),
            Field(... if default is dataclasses.MISSING else default, description=descriptions.get(name)),
        )
    return definitions


@functools.cache
def record_model(record_type: type) -> type[BaseModel]:
    """A contract record as a model of all its fields, records within it nested the same
    way, named after the record, so the OpenAPI document describes every field of a body."""
    return create_model(
        record_type.__name__,
        __doc__=f"`{record_type.__name__}` of collector/contract/, an object of its fields by name.",
        **contract_fields(record_type),
    )


# The OpenAPI example of a body: one window and the agent's health, as an agent ships them.
_EXAMPLE_SHIPMENT = ShipmentBatch(
    EXAMPLE_KEY.source, (example_window(),), health=example_health(), created_ns=example_health().observed_ns
)
ShipmentBody = create_model(
    "ShipmentBody",
    __doc__="The agent -> analyzer batch: `ShipmentBatch` (collector/contract/shipment.py) in the wire form of "
    "collector/contract/codec.py. Windows, observations and health are `PathWindow`, `PathObservation` "
    "and `CollectorHealth` of collector/contract/records.py, each an object of its fields by name; "
    "fields the analyzer does not know are ignored.",
    __config__=ConfigDict(json_schema_extra={"examples": [json.loads(encode_body(_EXAMPLE_SHIPMENT))]}),
    **contract_fields(ShipmentBatch),
)


class Objective(BaseModel):
    name: str = Field(description="IETF network-slice objective, e.g. two-way-delay-percentile")
    bound: float = Field(description="seconds for delays; highest loss ratio; lowest available share")
    percentile: float | None = None
    observed: float | None = Field(description="the latest interval's value; null when nothing to judge")
    met: bool | None


class Verdict(BaseModel):
    status: Status
    reason: str | None = Field(None, description="why there is no verdict (no-policy)")
    since_ns: int | None = Field(None, description="when the current status began")
    evaluated_ns: int | None = None
    error_budget_remaining: float | None = Field(None, description="1 untouched, 0 or below spent")
    burn_rates: dict[str, float] = Field(default_factory=dict, description="lookback window -> burn rate")
    objectives: list[Objective] = []
    intervals: int | None = Field(None, description="intervals the verdict has judged")
    warming: bool = Field(False, description="the burn lookbacks are not yet filled: a fresh slice or path")


PathRef = create_model(
    "PathRef",
    **contract_fields(PathKey, descriptions={"source": "the probing site", "kind": "probe kind: stamp | icmp"}),
)

WindowSummary = create_model(
    "WindowSummary",
    __doc__="A path's newest window.",
    **contract_fields(
        PathWindow, ("seq", "start_ns", "end_ns", "sent", "received", "lost_forward", "lost_reverse", "lost_unknown")
    ),
    loss_ratio=(float, ...),
    rtt_p50_s=(float | None, ...),
    rtt_p99_s=(float | None, ...),
    ipdv_s=(float | None, ...),
    pdv_p99_s=(float | None, ...),
    **contract_fields(PathWindow, ("path_fingerprint",)),
)


class PathSummary(BaseModel):
    path: PathRef
    target_address: str
    latest: WindowSummary


class Hint(BaseModel):
    """A root-cause hint (docs/architecture.md, "The data that flows"), from analyzer.rootcause."""

    kind: Literal[HINT_KINDS]  # type: ignore[valid-type]
    suspects: list[str] = Field(description="links (a>b) or nodes; several when probes cannot tell them apart")
    slices: list[str] = Field(description="affected slices")
    confidence: float = Field(ge=0, le=1)
    evidence: list[str] = Field(description="which paths, which numbers")
    first_seen_ns: int
    last_seen_ns: int


class SliceSummary(BaseModel):
    name: str
    status: Status
    since_ns: int | None
    error_budget_remaining: float | None
    burn_rates: dict[str, float]
    paths: int = Field(description="paths known in the slice")
    worst_path: PathSummary | None = Field(description="highest loss in its newest window, then highest p99 RTT")
    hints: list[Hint] = Field(default_factory=list, description="current root-cause hints affecting the slice")


class SliceDetail(BaseModel):
    name: str
    verdict: Verdict
    paths: int
    worst_by_loss: list[PathSummary] = Field(description="paths with loss in their newest window, worst first")
    worst_by_p99: list[PathSummary] = Field(description="paths by p99 RTT of their newest window, worst first")
    hints: list[Hint] = Field(
        default_factory=list, description="current root-cause hints affecting the slice, most confident first"
    )


class PathDetail(BaseModel):
    path: PathRef
    target_address: str | None
    verdict: Verdict
    latest: WindowSummary | None
    fingerprint: str | None = Field(description="of the latest traced hop list (else the newest window's)")
    traced_ns: int | None = Field(description="when that trace finished")


class PathList(BaseModel):
    total: int = Field(description="paths matching the filters (the list may be cut at `limit`)")
    paths: list[PathDetail]


class TopologyNode(BaseModel):
    id: str = Field(description="a site name (as root-cause hints name it) or a hop address")
    role: Literal["site", "router", "target"] = Field(
        description="site: an agent traces from it; target: a reached trace ends there; router: otherwise"
    )


class PathUse(BaseModel):
    source: str
    target: str
    slice: str
    fingerprint: str


class TopologyLink(BaseModel):
    a: str = Field(description="the end nearer the probing site")
    b: str
    hidden_hops: int = Field(description="silent hops (*) between a and b")
    paths: list[PathUse]


class TopologyResponse(BaseModel):
    nodes: list[TopologyNode]
    links: list[TopologyLink]
    observations: int = Field(description="traced paths the picture is made of")


class SliceHistoryPoint(BaseModel):
    at_ns: int
    status: Status
    error_budget_remaining: float | None
    burn_rates: dict[str, float] = Field(description="lookback window -> burn rate")
    observed: dict[str, float | None] = Field(description="objective -> its latest observed value")


class SliceHistory(BaseModel):
    name: str
    range: str
    step_s: float = Field(description="at most one point per step")
    points: list[SliceHistoryPoint] = Field(description="oldest first")


class MapNode(BaseModel):
    id: str = Field(description="a site name (as root-cause hints name it) or a hop address")
    role: str = Field(description="core | province | city | county where declared, else site | router | target")
    declared: bool = Field(description="in the declared topology")
    traced: bool = Field(description="on a traced path")


class MapLink(BaseModel):
    a: str = Field(description="the end first by name: a physical link has no direction")
    b: str
    declared: bool = Field(description="in the declared topology (else seen only on traced paths)")
    cost: int | None = Field(description="the declared cost (routing prefers the lowest); null when not declared")
    hidden_hops: int = Field(description="silent hops (*) between a and b on the traces")
    paths: list[PathUse] = Field(description="traced paths crossing the link, either direction")


class MapRoute(BaseModel):
    source: str
    target: str
    slice: str
    hops: list[str] = Field(description="the traced path's nodes from its source, named; * for a silent hop")


class MapResponse(BaseModel):
    nodes: list[MapNode]
    links: list[MapLink]
    routes: list[MapRoute] = Field(description="each traced path, hop by hop")


class AgentHealth(BaseModel):
    site: str
    last_batch_ns: int = Field(description="when this analyzer last received a shipment from it")
    health: dict | None = Field(description="its latest CollectorHealth (collector/contract/records.py)")


class LoopError(BaseModel):
    count: int = Field(description="errors this background component met and survived")
    last_ns: int = Field(description="when the latest happened")
    last: str = Field(description="the latest error's type and words")


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="degraded: a background loop met errors (see errors)")
    writes: bool = Field(description="whether shipments and probes are accepted (a token is configured)")
    store: dict[str, int]
    agents: list[AgentHealth]
    errors: dict[str, LoopError] = Field(
        default_factory=dict, description="by component (snapshot, intervals, rootcause, feeder, ...)"
    )


class ProbeRequest(BaseModel):
    """An on-demand probe from a named agent."""

    model_config = ConfigDict(extra="forbid")

    agent: str = Field(min_length=1, description="the site whose agent sends the probes")
    target: str = Field(description="the address to probe (an IP address, not a name)")
    kind: Literal["stamp", "icmp", "trace"] = Field(
        "stamp", description="stamp or icmp (echo): `count` probes; trace: an mtr-style report of one flow"
    )
    slice: str = Field(min_length=1, description="the slice whose marking the probes carry")
    count: int = Field(10, ge=1, le=1000, description="probe packets to send; for trace, rounds of its report")

    @field_validator("target")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return ipaddress.ip_address(value).compressed
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None


class ProbeResponse(BaseModel):
    request: ProbeRequest
    result: dict = Field(
        description="what the agent's probe reported: {summary: ...} for stamp and icmp, {trace: ...} for trace"
    )


class SegmentBlockView(BaseModel):
    """One block of one marked flow across one segment (analyzer.insitu.segments)."""

    slice: str
    flow_mon_id: int
    segment: str = Field(description="a>b for a link, span or end-to-end; the site for a node")
    kind: Literal["link", "node", "span", "end-to-end"]
    upstream: str = Field(description="the upstream counting point, site/link/direction")
    downstream: str
    first_ns: int = Field(description="the block's first packet at the upstream point")
    upstream_packets: int
    downstream_packets: int
    lost: int = Field(description="upstream - downstream (negative: duplicated on the way)")
    delay_ns: float | None = Field(description="mean one-way delay of the block's D-marked packets")
    delay_samples: int
    seen_ns: int = Field(description="when the analyzer paired the block")
    loss_known: bool = Field(
        description="false: a counting point's capture socket dropped packets during the block, so its loss "
        "and delay are unknown (not in the segment's totals)"
    )


class SegmentSummary(BaseModel):
    """A segment's totals over the flows of one slice, since the analyzer started."""

    slice: str
    segment: str
    kind: Literal["link", "node", "span", "end-to-end"]
    packets: int
    lost: int
    duplicated: int
    blocks: int
    unknown_blocks: int = Field(
        description="blocks left out of the figures above: a counting point's capture dropped packets in them"
    )
    loss_ratio: float
    last_delay_ns: float | None
    clock_note: str = Field(
        "one-way delays assume the two points' clocks agree: exact in the lab (one host clock), "
        "elsewhere off by the sum of both agents' clock errors"
    )


class Segments(BaseModel):
    segments: list[SegmentSummary]
    blocks: list[SegmentBlockView] = Field(description="the newest matching blocks, oldest first")
