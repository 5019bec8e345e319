"""The resolved probe plan of one agent: what the scheduler runs, with nothing left to look up.

`load_plan(path)` reads and validates a configuration file (`collector.agent.config`), reads the
files it points to, expands CIDRs, applies defaults and chooses flow labels. The result is
frozen: reloading a configuration (SIGHUP) means building a new plan and comparing.
Every problem found on the way is reported at once in one `ConfigError`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from collector.agent.config import (
    DEFAULT_SPOOL_MAX_WINDOWS,
    AgentConfig,
    ConfigError,
    TargetModel,
    load_config,
)
from collector.agent.on_demand import OnDemandLimits
from collector.agent.target_sources import expand
from collector.bus.connection import BusEndpoint, site_identity
from collector.bus.subjects import BadSubject, check_site
from collector.contract.records import Slice, Target
from collector.probes.registry import PROBERS
from collector.reflector.session_reflector import ReflectorConfig
from collector.wire.stamp import STAMP_PORT, check_key

if TYPE_CHECKING:  # imported when a plan has a flows or capture section: they pull in numpy
    from collector.capture.agent_captures import CaptureSettings
    from collector.flow_export.receiver import ReceiverSettings

__all__ = ["AgentPlan", "ConfigError", "PlannedProbe", "load_plan", "resolve_plan", "stable_flow_label"]

MAX_DUPLICATE_REPORTS = 20


@dataclass(frozen=True, slots=True)
class PlannedProbe:
    """One probe schedule: a (target, slice, kind) sent every interval."""

    target: Target
    slice: Slice
    kind: str  # a kind of collector.probes.registry.PROBERS
    interval_s: float
    packets_per_interval: int
    timeout_s: float
    size: int | None  # payload octets; None: the kind's smallest
    flow_label: int | None  # stable per (target address, slice) within the slice's range; None: not set


@dataclass(frozen=True)
class AgentPlan:
    site: str
    source_address: str | None  # the site's first configured address; None: the kernel chooses
    probes: tuple[PlannedProbe, ...]
    window_s: float
    trace_enabled: bool
    trace_period_s: float
    trace_proto: str
    reflector: ReflectorConfig | None  # None when disabled
    metrics_listen: tuple[str, int]
    analyzer_url: str | None
    analyzer_token: str | None
    spool_dir: str | None
    spool_max_windows: int
    config_path: str  # absolute, so that a reload finds the file whatever the working directory
    start_delay_s: float = 0.0  # reflector first, probes this much later
    flows: ReceiverSettings | None = None  # the flow export receiver, when configured
    capture: CaptureSettings | None = None  # packet sampling from interfaces, when configured
    bus: BusEndpoint | None = None  # the bus instead of analyzer_url, when configured
    on_demand: OnDemandLimits | None = None  # probe requests over the bus; None: not answered
    slice_option_type: int | None = None  # STAMP probes carry their slice's ID in this option; None: not


def load_plan(path: str | Path) -> AgentPlan:
    """The plan of a configuration file, or ConfigError listing every problem."""
    return resolve_plan(load_config(path))


def resolve_plan(config: AgentConfig) -> AgentPlan:
    problems: list[str] = []
    probes = _probes(config, problems)
    reflector = _reflector(config, problems)
    token = _analyzer_token(config, problems)
    capture = _capture(config, problems)
    bus = _bus(config, problems)
    if problems:
        raise ConfigError([f"{config.source}: {p}" for p in problems])
    trace = config.probing.trace
    analyzer = config.analyzer or config.bus
    return AgentPlan(
        site=config.site.name,
        source_address=config.site.addresses[0] if config.site.addresses else None,
        probes=probes,
        window_s=config.probing.window_s,
        trace_enabled=trace.enabled,
        trace_period_s=trace.period_s,
        trace_proto=trace.proto,
        reflector=reflector,
        metrics_listen=config.metrics.address,
        analyzer_url=config.analyzer.url if config.analyzer else None,
        analyzer_token=token,
        spool_dir=_spool_dir(config),
        spool_max_windows=analyzer.spool_max_windows if analyzer else DEFAULT_SPOOL_MAX_WINDOWS,
        config_path=str(config.file.absolute()) if config.file else config.source,
        start_delay_s=config.probing.start_delay_s,
        flows=_flows(config),
        capture=capture,
        bus=bus,
        on_demand=_on_demand(config) if bus is not None else None,
        slice_option_type=config.probing.slice_option_type if config.probing.slice_id_option else None,
    )


def stable_flow_label(address: str, slice_name: str, flow_label_range: tuple[int, int]) -> int:
    """The flow label a (target, slice) always probes with, so that every probe and trace of
    that pair takes one ECMP path, the same one after a restart and on any host (SHA-256,
    not Python's per-process salted hash())."""
    low, high = flow_label_range
    digest = hashlib.sha256(f"{address}|{slice_name}".encode()).digest()
    return low + int.from_bytes(digest[:8], "big") % (high - low + 1)


def _probes(config: AgentConfig, problems: list[str]) -> tuple[PlannedProbe, ...]:
    catalogue = config.slice_catalogue()
    ranges = {s.name: s.flow_label_range for s in config.slices}
    probing = config.probing
    first_seen: dict[str, str] = {}  # target name -> key of the entry that named it first
    duplicates = 0
    total = 0
    probes: list[PlannedProbe] = []
    for index, entry in enumerate(config.targets):
        expansion = expand(config, index, entry, room=probing.max_targets - total)
        problems.extend(expansion.problems)
        total += len(expansion.pairs)
        problems.extend(_size_problems(config, index, entry))
        origin = f"targets[{index}]" + {"address": ".name", "file": ".file", "cidr": ".cidr"}[entry.form]
        wanted = set(entry.slices) if entry.slices is not None else None
        for unknown in sorted((wanted or set()) - set(ranges)):  # config validation already refuses these
            problems.append(f"targets[{index}].slices: unknown slice {unknown!r} (slices are: {', '.join(ranges)})")
        slices = [s for s in catalogue if wanted is None or s.name in wanted]
        settings = (
            entry.interval_s or probing.interval_s,
            entry.packets_per_interval or probing.packets_per_interval,
            entry.timeout_s or probing.timeout_s,
            entry.size if entry.size is not None else probing.size,
        )
        for name, address in expansion.pairs:
            if name in first_seen:
                duplicates += 1
                if duplicates <= MAX_DUPLICATE_REPORTS:
                    problems.append(f"{origin}: duplicate target name {name!r} (first at {first_seen[name]})")
                continue
            first_seen[name] = origin
            target = Target(name, address, entry.port or STAMP_PORT)
            for slice_ in slices:
                label_range = ranges[slice_.name]
                label = stable_flow_label(address, slice_.name, label_range) if label_range else None
                probes.extend(PlannedProbe(target, slice_, kind, *settings, label) for kind in entry.probes)
    if total > probing.max_targets:  # CIDRs stop at the limit themselves; files only count
        problems.append(f"targets: {total} targets in all, more than probing.max_targets ({probing.max_targets})")
    if duplicates > MAX_DUPLICATE_REPORTS:
        problems.append(f"targets: ... and {duplicates - MAX_DUPLICATE_REPORTS} more duplicate target names")
    return tuple(probes)


def _size_problems(config: AgentConfig, index: int, entry: TargetModel) -> list[str]:
    size = entry.size if entry.size is not None else config.probing.size
    if size is None:
        return []
    key = f"targets[{index}].size" if entry.size is not None else f"probing.size (used by targets[{index}])"
    # The `size` setting is payload octets: at least what each kind's requests always carry.
    return [
        f"{key}: {size} octets is less than the {PROBERS[kind].minimum_size} octets {kind} probes need"
        for kind in entry.probes
        if size < PROBERS[kind].minimum_size
    ]


def _reflector(config: AgentConfig, problems: list[str]) -> ReflectorConfig | None:
    settings = config.reflector
    if not settings.enabled:
        return None
    key = None
    if settings.auth_key_file is not None:
        key = _read_secret(config, "reflector.auth_key_file", settings.auth_key_file, problems)
        try:
            if key is not None:
                check_key(key)
        except ValueError as exc:
            problems.append(f"reflector.auth_key_file: {exc}")
            return None
    try:
        return ReflectorConfig(
            bind=tuple(settings.bind),
            port=settings.port,
            stateful=settings.stateful,
            allow=tuple(settings.allow),
            rate_limit_pps=settings.rate_limit_pps,
            global_rate_limit_pps=settings.global_rate_limit_pps,
            auth_key=key,
        )
    except ValueError as exc:  # already checked by the model; kept so nothing escapes unnamed
        problems.append(f"reflector: {exc}")
        return None


def _analyzer_token(config: AgentConfig, problems: list[str]) -> str | None:
    analyzer = config.analyzer
    if analyzer is None or analyzer.token_file is None:
        return None
    secret = _read_secret(config, "analyzer.token_file", analyzer.token_file, problems)
    return secret.decode(errors="replace").strip() if secret is not None else None


def _on_demand(config: AgentConfig) -> OnDemandLimits | None:
    model = config.on_demand
    if not model.enabled:
        return None
    return OnDemandLimits(
        allowed_prefixes=tuple(ipaddress.ip_network(p) for p in model.allowed_prefixes),
        max_concurrent=model.max_concurrent,
        max_count=model.max_count,
        min_interval_s=model.min_interval_s,
        max_duration_s=model.max_duration_s,
    )


def _bus(config: AgentConfig, problems: list[str]) -> BusEndpoint | None:
    """The bus endpoint, its certificate files readable and the site a subject token."""
    bus = config.bus
    if bus is None:
        return None
    try:
        check_site(config.site.name)
    except BadSubject as exc:
        problems.append(f"site.name: {exc}")
    ca, cert, key = (config.path_of(getattr(bus, name)) for name in ("ca_file", "cert_file", "key_file"))
    for name, path in (("ca_file", ca), ("cert_file", cert), ("key_file", key)):
        if not os.access(path, os.R_OK):
            problems.append(f"bus.{name}: cannot read {path}")
    return BusEndpoint(tuple(bus.servers), site_identity(config.site.name), ca_file=ca, cert_file=cert, key_file=key)


def _read_secret(config: AgentConfig, key: str, relative: str, problems: list[str]) -> bytes | None:
    """A key or token file's bytes without the trailing newline, or a problem."""
    path = config.path_of(relative)
    try:
        secret = path.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        problems.append(f"{key}: cannot read {path}: {exc.strerror or exc}")
        return None
    if not secret:
        problems.append(f"{key}: {path} is empty")
        return None
    return secret


def _flows(config: AgentConfig) -> ReceiverSettings | None:
    flows = config.flows
    if flows is None:
        return None
    from collector.flow_export.receiver import ReceiverSettings

    return ReceiverSettings(
        listen=flows.addresses,
        state_dir=config.path_of(flows.state_dir) if flows.state_dir else None,
        default_sampling=dict(flows.default_sampling),
        template_timeout_s=flows.template_timeout_s,
        exporters=flows.exporters,
        max_exporters=flows.max_exporters,
        max_templates=flows.max_templates,
        max_templates_per_exporter=flows.max_templates_per_exporter,
        slice_rules=[{"slice": s.name, "dscp": s.dscp} for s in config.slices],
        rules_source=config.source,
    )


def _capture(config: AgentConfig, problems: list[str]) -> CaptureSettings | None:
    """The capture section with its slice classifier compiled: from the `slices` rules file,
    else the slices section's DSCPs (the flow receiver's rules), so both count alike."""
    section = config.capture
    if section is None:
        return None
    from collector.capture.agent_captures import CaptureSettings, InterfaceCapture
    from collector.traffic.classifier import SliceClassifier

    if section.slices is not None:
        path = config.path_of(section.slices)
        try:
            classifier = SliceClassifier.from_file(path)
        except ConfigError as exc:
            problems.extend(f"capture.slices: {problem}" for problem in exc.problems)
            return None
        source = f"the rules in {path}"
    else:
        classifier = SliceClassifier.from_rules(
            [{"slice": s.name, "dscp": s.dscp} for s in config.slices], source=config.source
        )
        source = "DSCP, as the slices section says"
    interfaces = tuple(
        InterfaceCapture(e.interface, e.sample, e.tcp_rtt, e.altmark_point, e.active_timeout_s, e.idle_timeout_s)
        for e in section.interfaces
    )
    return CaptureSettings(interfaces, classifier, source)


DEFAULT_SPOOL_ROOT = "/var/lib/xnetmon/spool"


def _spool_dir(config: AgentConfig) -> str | None:
    """Where windows wait while the analyzer (or the bus) is away: as configured, else one per site."""
    analyzer = config.analyzer or config.bus
    if analyzer is None:
        return None
    if analyzer.spool_dir:
        return str(config.path_of(analyzer.spool_dir))
    return f"{DEFAULT_SPOOL_ROOT}/{config.site.name}"
