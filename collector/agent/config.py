"""An agent's configuration file: YAML validated by pydantic, every problem named.

One file per site agent. This module checks what the file itself says (keys, types,
ranges, slice names, which keys go together); `collector.agent.plan` then reads what it points
to (target files, key files), expands CIDRs and resolves everything into an `AgentPlan`.
Both report every problem at once, one line each, as `FILE: KEY.PATH: what was expected`,
so a user fixes a file in one go rather than one error per run.

Relative paths in the file (targets files, key and token files, the spool directory) are
relative to the directory of the configuration file, not to the working directory.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from netaddr import IPNetwork
from netaddr.core import AddrFormatError
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from collector.contract.records import Slice
from collector.contract.slice_catalog import DEFAULT_SLICES
from collector.probes.registry import PROBERS
from collector.system.config_files import ConfigError, describe_errors, load_yaml, read_config_text
from collector.system.listen_address import parse_listen
from collector.wire.slice_option import DEFAULT_SLICE_OPTION
from collector.wire.stamp import STAMP_PORT

PROBE_KINDS = tuple(PROBERS)  # what `targets[].probes` may name
DEFAULT_METRICS_LISTEN = "[::1]:9862"  # loopback: exposing the agent is the operator's choice
DEFAULT_FLOWS_LISTEN = "[::1]:4739"  # loopback: receiving from other hosts is the operator's choice
DEFAULT_MAX_TARGETS = 100_000
DEFAULT_SPOOL_MAX_WINDOWS = 100_000
MAX_FLOW_LABEL = 0xFFFFF
MAX_PAYLOAD = 65527  # an IPv6 payload of 65535 less the UDP or ICMPv6 header

# Names become label values and, in target files, the first word of a line.
NAME = re.compile(r"^\S{1,253}$")
SLICE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
INTERFACE = re.compile(r"^[^\s/:]{1,15}$")  # the kernel's IFNAMSIZ less the final NUL

ProbeKind = Literal[PROBE_KINDS]  # type: ignore[valid-type]
StrictInt = Annotated[int, Field(strict=True)]
Seconds = Annotated[float, Field(strict=True, gt=0)]


# ---------------------------------------------------------------------------------------
# Field checks shared by several models. They raise ValueError with the whole message;
# pydantic puts it at the key being validated.


def _ip_address(value: str) -> str:
    try:
        return ipaddress.ip_address(value).compressed
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address (names are not resolved: give the address)") from None


def _ip_prefix(value: str) -> str:
    try:
        network = IPNetwork(value)
    except (AddrFormatError, ValueError, TypeError):
        raise ValueError(f"{value!r} is not an IP prefix such as fd00::/64") from None
    return str(network)


def _whole_prefix(value: str) -> str:
    """After _ip_prefix: a prefix without host bits (2001:db8::/48, not 2001:db8::1/48)."""
    try:
        ipaddress.ip_network(value)
    except ValueError:
        raise ValueError(
            f"{value} has host bits set; the prefix is {ipaddress.ip_network(value, strict=False)}"
        ) from None
    return value


def _name(value: str) -> str:
    if not NAME.match(value):
        raise ValueError(f"{value!r} is not a name: give 1 to 253 characters without spaces")
    return value


def _known_slice(value: str, info: ValidationInfo) -> str:
    known = (info.context or {}).get("slice_names")
    if known is not None and value not in known:
        raise ValueError(f"unknown slice {value!r} (slices are: {', '.join(known)})")
    return value


def _no_repeats(values: list) -> list:
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{value!r} appears twice")
        seen.add(value)
    return values


def _interface_name(value: str) -> str:
    if not INTERFACE.match(value):
        raise ValueError(f"{value!r} is not an interface name: give 1 to 15 characters without spaces or '/'")
    return value


IPAddressText = Annotated[str, AfterValidator(_ip_address)]
IPPrefixText = Annotated[str, AfterValidator(_ip_prefix)]
NetworkText = Annotated[str, AfterValidator(_ip_prefix), AfterValidator(_whole_prefix)]
NameText = Annotated[str, AfterValidator(_name)]
SliceNameRef = Annotated[str, AfterValidator(_known_slice)]
InterfaceName = Annotated[str, AfterValidator(_interface_name)]


# ---------------------------------------------------------------------------------------
# The models: what a file may say.


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteModel(_Strict):
    name: NameText
    addresses: list[IPAddressText] = Field(default_factory=list, description="first one: probe source")


class SliceModel(_Strict):
    name: str
    dscp: StrictInt = Field(ge=0, le=63)
    flow_label_range: tuple[StrictInt, StrictInt] | None = None
    slice_id: StrictInt | None = Field(default=None, ge=0, le=0xFFFFFFFF)

    @field_validator("name")
    @classmethod
    def _slice_name(cls, value: str) -> str:
        if not SLICE_NAME.match(value):
            raise ValueError(f"slice name {value!r} must be a lowercase letter then lowercase letters, digits, hyphens")
        return value

    @field_validator("flow_label_range")
    @classmethod
    def _flow_labels(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is None:
            return None
        low, high = value
        if not (1 <= low <= high <= MAX_FLOW_LABEL):
            raise ValueError(f"expected [low, high] with 1 <= low <= high <= 0xFFFFF, got [{low:#x}, {high:#x}]")
        return value

    def to_slice(self) -> Slice:
        return Slice(self.name, self.dscp, self.slice_id)


class TargetModel(_Strict):
    """One entry of `targets`: exactly one of `address` (with `name`), `file` or `cidr`."""

    name: NameText | None = None
    address: IPAddressText | None = None
    file: str | None = None
    cidr: str | None = None
    name_prefix: str | None = None
    count: StrictInt | None = Field(default=None, ge=1, description="cidr: only the first COUNT addresses")
    probes: list[ProbeKind] = Field(default_factory=lambda: ["stamp"], min_length=1)
    slices: list[SliceNameRef] | None = Field(default=None, min_length=1)
    port: StrictInt | None = Field(default=None, ge=1, le=65535)
    # Per-entry overrides of the `probing` defaults.
    interval_s: Seconds | None = None
    packets_per_interval: StrictInt | None = Field(default=None, ge=1, le=10_000)
    timeout_s: Seconds | None = None
    size: StrictInt | None = Field(default=None, ge=0, le=MAX_PAYLOAD)

    @field_validator("file", "cidr")
    @classmethod
    def _one_form(cls, value: str, info: ValidationInfo) -> str:
        others = [key for key in ("address", "file") if key != info.field_name and info.data.get(key) is not None]
        if others:
            raise ValueError(f"an entry takes one of address, file or cidr; this one also has {others[0]}")
        return value

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        if "/" not in value:
            raise ValueError(f"{value!r} is not a CIDR prefix such as fd00::/120")
        network = IPNetwork(_ip_prefix(value))
        if network.ip != network.network:
            raise ValueError(f"{value} has host bits set; the prefix is {network.cidr}")
        return str(network.cidr)

    @field_validator("name_prefix")
    @classmethod
    def _prefix_makes_names(cls, value: str) -> str:
        if not NAME.match(f"{value}0"):
            raise ValueError(f"{value!r} would make names with spaces; give a prefix without spaces")
        return value

    @field_validator("name_prefix", "count")
    @classmethod
    def _cidr_only(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("cidr") is None:
            raise ValueError(f"{info.field_name} goes with cidr, and this entry has no cidr")
        return value

    @field_validator("probes", "slices")
    @classmethod
    def _unique(cls, value: list | None) -> list | None:
        return None if value is None else _no_repeats(value)

    @field_validator("port")
    @classmethod
    def _port_has_a_use(cls, value: int, info: ValidationInfo) -> int:
        probes = info.data.get("probes")
        users = [prober for prober in PROBERS.values() if prober.uses_port]
        if probes is not None and not any(prober.kind in probes for prober in users):
            titles = " or ".join(prober.title for prober in users)
            raise ValueError(f"only {titles} probes use a port, and this entry has probes {probes}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> TargetModel:
        if self.address is None and self.file is None and self.cidr is None:
            raise ValueError("expected one of address (with name), file or cidr")
        if self.address is not None and self.name is None:
            raise ValueError("an address entry needs a name")
        if self.address is None and self.name is not None:
            raise ValueError("name goes with address; a file names its targets, a cidr uses name_prefix")
        return self

    @property
    def form(self) -> str:
        """The key that says where this entry's targets come from."""
        return "address" if self.address is not None else "file" if self.file is not None else "cidr"


class TraceModel(_Strict):
    enabled: bool = True
    period_s: Seconds = 300.0
    proto: Literal["udp", "icmp", "tcp"] = "udp"


class ProbingModel(_Strict):
    interval_s: Seconds = 1.0
    packets_per_interval: StrictInt = Field(default=1, ge=1, le=10_000)
    window_s: Seconds = Field(default=10.0, validate_default=True)  # checked against interval_s
    timeout_s: Seconds = 2.0
    size: StrictInt | None = Field(default=None, ge=0, le=MAX_PAYLOAD, description="payload octets; None: smallest")
    max_targets: StrictInt = Field(default=DEFAULT_MAX_TARGETS, ge=1)
    # Seconds between starting the reflector and sending the first probe: agents started
    # together (a lab, a site's boot) then probe reflectors that are already listening.
    start_delay_s: float = Field(default=0.0, ge=0.0, le=3600.0)
    trace: TraceModel = Field(default_factory=TraceModel)
    # STAMP probes of a slice with a `slice_id` carry it in a Hop-by-Hop option (needs CAP_NET_RAW)
    slice_id_option: bool = False
    slice_option_type: StrictInt = Field(default=DEFAULT_SLICE_OPTION, ge=2, le=255)

    @field_validator("window_s")
    @classmethod
    def _window_holds_an_interval(cls, value: float, info: ValidationInfo) -> float:
        interval = info.data.get("interval_s")
        if interval is not None and value < interval:
            raise ValueError(
                f"expected at least interval_s ({interval:g}), got {value:g}: windows would hold no probes"
            )
        return value


class ReflectorModel(_Strict):
    enabled: bool = True
    bind: list[IPAddressText] = Field(default_factory=lambda: ["::"], min_length=1)
    port: StrictInt = Field(default=STAMP_PORT, ge=0, le=65535)
    stateful: bool = True  # lets senders tell forward from reverse loss
    allow: list[IPPrefixText] = Field(default_factory=list)
    rate_limit_pps: Annotated[float, Field(strict=True, ge=0, le=1e9)] = 1000.0
    global_rate_limit_pps: Annotated[float, Field(strict=True, ge=0, le=1e9)] = 20_000.0
    auth_key_file: str | None = None


class MetricsModel(_Strict):
    listen: str = DEFAULT_METRICS_LISTEN

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value, DEFAULT_METRICS_LISTEN)
        return value

    @property
    def address(self) -> tuple[str, int]:
        return parse_listen(self.listen, DEFAULT_METRICS_LISTEN)


class AnalyzerModel(_Strict):
    url: str
    token_file: str | None = None
    spool_dir: str | None = None
    spool_max_windows: StrictInt = Field(default=DEFAULT_SPOOL_MAX_WINDOWS, ge=1)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value


class BusModel(_Strict):
    """The NATS JetStream bus instead of an analyzer's URL: the site's certificate and key
    (from `xnetmon bus add-site`) are its identity; the CA file checks the server."""

    servers: list[str] = Field(min_length=1)
    ca_file: str
    cert_file: str
    key_file: str
    spool_dir: str | None = None
    spool_max_windows: StrictInt = Field(default=DEFAULT_SPOOL_MAX_WINDOWS, ge=1)

    @field_validator("servers")
    @classmethod
    def _servers(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.match(r"^(tls|nats)://[^/\s]+$", item):
                raise ValueError(f"expected tls://HOST:PORT or nats://HOST:PORT, got {item!r}")
        return _no_repeats(value)


class OnDemandModel(_Strict):
    """Probes operators ask for over the bus (`xnetmon probe KIND TARGET --from SITE`); only
    with `bus:`. Targets: this agent's configured targets and `allowed_prefixes`."""

    enabled: bool = True
    allowed_prefixes: list[NetworkText] = Field(default_factory=list)  # the extranet's prefixes
    max_concurrent: StrictInt = Field(default=10, ge=1, le=100)
    max_count: StrictInt = Field(default=1000, ge=1, le=100_000)  # packets (or --report rounds) per probe
    min_interval_s: float = Field(default=0.01, gt=0)
    max_duration_s: float = Field(default=600.0, gt=0, le=86_400)


class FlowsModel(_Strict):
    """The flow export receiver (IPFIX, NetFlow v9, sFlow): counters on the agent's /metrics."""

    listen: list[str] = Field(default_factory=lambda: [DEFAULT_FLOWS_LISTEN], min_length=1)
    state_dir: str | None = None  # templates and sampling rates kept here across restarts
    default_sampling: dict[IPAddressText, Annotated[float, Field(ge=1)]] = Field(default_factory=dict)
    template_timeout_s: Seconds = 1800.0
    # Prefixes of the exporters accepted; datagrams from elsewhere are refused and counted.
    # None: any source (only sensible with a loopback or otherwise filtered listen address).
    exporters: list[NetworkText] | None = Field(default=None, min_length=1)
    max_exporters: StrictInt = Field(default=1024, ge=1, le=1_000_000)
    max_templates: StrictInt = Field(default=4096, ge=1, le=1_000_000)
    max_templates_per_exporter: StrictInt = Field(default=256, ge=1, le=65_536)

    @field_validator("listen")
    @classmethod
    def _listen_addresses(cls, value: list[str]) -> list[str]:
        for item in value:
            parse_listen(item, DEFAULT_FLOWS_LISTEN)
        return _no_repeats(value)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [parse_listen(item, DEFAULT_FLOWS_LISTEN) for item in self.listen]


class CaptureInterfaceModel(_Strict):
    """One interface the agent samples packets from (AF_PACKET; the agent needs CAP_NET_RAW)."""

    interface: InterfaceName
    sample: StrictInt = Field(default=1, ge=1, le=1_000_000, description="1:N random sampling")
    tcp_rtt: bool = False
    altmark_point: NameText | None = None
    active_timeout_s: Seconds = 60.0  # how late /metrics may be for a long flow
    idle_timeout_s: Seconds = 15.0

    @model_validator(mode="after")
    def _rtt_sees_every_packet(self) -> CaptureInterfaceModel:
        if self.tcp_rtt and self.sample != 1:
            # pping matches each timestamp with its echo: sampled packets would rarely pair
            raise ValueError(
                f"tcp_rtt needs every packet: expected sample 1 with tcp_rtt true, got sample {self.sample}"
            )
        return self


class CaptureModel(_Strict):
    """Packet sampling from interfaces: flow counters, passive TCP RTT, alternate marking."""

    interfaces: list[CaptureInterfaceModel] = Field(min_length=1)
    slices: str | None = (
        None  # rules file (collector/traffic/classifier.py); also classifies the flow receiver's records
    )

    @field_validator("interfaces")
    @classmethod
    def _one_capture_per_interface(cls, value: list[CaptureInterfaceModel]) -> list[CaptureInterfaceModel]:
        _no_repeats([entry.interface for entry in value])
        _no_repeats([entry.altmark_point for entry in value if entry.altmark_point is not None])
        return value


class AgentConfig(_Strict):
    site: SiteModel
    slices: list[SliceModel] = Field(default_factory=lambda: [_catalogue_entry(s) for s in DEFAULT_SLICES])
    targets: list[TargetModel] = Field(default_factory=list)
    probing: ProbingModel = Field(default_factory=ProbingModel)
    reflector: ReflectorModel = Field(default_factory=ReflectorModel)
    metrics: MetricsModel = Field(default_factory=MetricsModel)
    analyzer: AnalyzerModel | None = None
    bus: BusModel | None = None
    on_demand: OnDemandModel = Field(default_factory=OnDemandModel)
    flows: FlowsModel | None = None
    capture: CaptureModel | None = None

    # Where the file came from: its label in messages, and the base of relative paths.
    _source: str = PrivateAttr(default="<config>")
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _file: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_destination(self) -> AgentConfig:
        if self.analyzer is not None and self.bus is not None:
            raise ValueError("give analyzer (HTTP) or bus, not both: an agent ships to one destination")
        return self

    @field_validator("slices")
    @classmethod
    def _slice_names_and_ids(cls, value: list[SliceModel]) -> list[SliceModel]:
        if not value:
            raise ValueError("expected at least one slice (leave slices out for the default catalogue)")
        for key in ("name", "slice_id"):
            first: dict[Any, int] = {}
            for i, entry in enumerate(value):
                item = getattr(entry, key)
                if item is not None and item in first:
                    raise ValueError(f"{key} {item!r} of slices[{i}] is already used by slices[{first[item]}]")
                first.setdefault(item, i)
        return value

    @property
    def source(self) -> str:
        return self._source

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    @property
    def file(self) -> Path | None:
        """The file it was read from; None when given as text."""
        return self._file

    def path_of(self, relative: str) -> Path:
        """A path from the file, relative to the file's directory."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self._base_dir / path

    def slice_catalogue(self) -> tuple[Slice, ...]:
        return tuple(s.to_slice() for s in self.slices)


def _catalogue_entry(s: Slice) -> SliceModel:
    return SliceModel(name=s.name, dscp=s.dscp, slice_id=s.slice_id)


# ---------------------------------------------------------------------------------------
# Loading: YAML text -> AgentConfig, or ConfigError with every problem.


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate an agent configuration file; relative paths in it are relative to it."""
    path = Path(path)
    config = parse_config(read_config_text(path), source=str(path), base_dir=path.parent)
    config._file = path
    return config


def parse_config(text: str, source: str = "<config>", base_dir: Path | None = None) -> AgentConfig:
    """Validate configuration text; `source` names it in messages, `base_dir` anchors relative paths."""
    return validate_config(load_yaml(text, source), source, base_dir)


def validate_config(data: Any, source: str = "<config>", base_dir: Path | None = None) -> AgentConfig:
    """Validate configuration already loaded from YAML (or built in code, as tests do)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{source}: expected a mapping with site, targets and the other sections, got {type(data).__name__}"]
        )
    try:
        config = AgentConfig.model_validate(data, context={"slice_names": _declared_slice_names(data)})
    except ValidationError as exc:
        raise ConfigError([f"{source}: {problem}" for problem in describe_errors(exc, AgentConfig)]) from None
    config._source = source
    config._base_dir = base_dir if base_dir is not None else Path.cwd()
    return config


def _declared_slice_names(data: dict) -> list[str] | None:
    """The slice names targets may use, read before validation so that unknown names are
    reported in the same pass as every other problem. None (no check) when the slices
    section is itself broken: its own errors say what to fix first."""
    if "slices" not in data:
        return [s.name for s in DEFAULT_SLICES]
    declared = data["slices"]
    if not isinstance(declared, list) or not all(
        isinstance(s, dict) and isinstance(s.get("name"), str) for s in declared
    ):
        return None
    return [s["name"] for s in declared]
