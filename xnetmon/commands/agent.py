"""`xnetmon agent`: a site agent from one configuration file, or `--check` to see its plan.

`--check` validates the file, reads what it points to, and prints the resolved plan
without opening a socket: what would be probed, from where, how often, and where the
results would go. Configuration problems are listed one per line, with exit status 2.
"""

from __future__ import annotations

import argparse
from collections import Counter

from collector.agent.config import PROBE_KINDS, AgentConfig, load_config
from collector.agent.plan import AgentPlan, resolve_plan
from collector.system.config_files import ConfigError
from xnetmon.errors import UsageError

FIRST_PROBES_SHOWN = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "agent",
        help="run a site agent: reflector, per-slice probes, windows, /metrics",
        description="Run a site agent from a YAML configuration file, or check the file with --check.",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="the agent's YAML configuration")
    p.add_argument("--check", action="store_true", help="validate the file and print the resolved plan; send nothing")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        plan = resolve_plan(config)
    except ConfigError as exc:
        raise UsageError(_problem_list(args.config, exc.problems)) from None
    if args.check:
        print(describe_plan(config, plan))
        return 0
    from collector.agent.runner import run_agent  # the run loop: sockets, scheduler, exporter
    from collector.flow_export.receiver import ReceiverStateError
    from collector.outputs.spool import SpoolError

    try:
        return run_agent(plan)
    except (SpoolError, ReceiverStateError) as exc:  # raised only as the agent is built: nothing was sent or bound
        raise UsageError(str(exc)) from None


def _problem_list(path: str, problems: tuple[str, ...]) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems in {path}:\n" + "\n".join(problems)


# -- the --check report ------------------------------------------------------------------


def describe_plan(config: AgentConfig, plan: AgentPlan) -> str:
    lines = [f"{plan.config_path}: valid; nothing was sent", ""]
    source = f"probes from {plan.source_address}" if plan.source_address else "source address chosen by the kernel"
    lines.append(f"site       {plan.site} ({source})")
    lines += _slices(config)
    lines.append(
        f"probing    every {config.probing.interval_s:g} s, "
        f"{_count(config.probing.packets_per_interval, 'packet')} each time, timeout {config.probing.timeout_s:g} s, "
        f"size {config.probing.size if config.probing.size is not None else 'smallest'} (targets may override); "
        f"windows of {plan.window_s:g} s"
    )
    trace = f"Paris trace every {plan.trace_period_s:g} s over {plan.trace_proto}" if plan.trace_enabled else "off"
    lines.append(f"trace      {trace}")
    lines.append(f"reflector  {_reflector(plan)}")
    lines.append(f"metrics    http://{_host_port(*plan.metrics_listen)}/metrics")
    lines.append(f"analyzer   {_analyzer(plan)}")
    lines += _capture(plan)
    lines.append("")
    lines += _counts(config, plan)
    if plan.probes:
        lines.append("")
        lines += _first_probes(plan)
    return "\n".join(lines)


def _slices(config: AgentConfig) -> list[str]:
    lines = []
    for i, s in enumerate(config.slices):
        detail = f"DSCP {s.dscp}"
        if s.slice_id is not None:
            detail += f", slice ID {s.slice_id}"
        if s.flow_label_range is not None:
            low, high = s.flow_label_range
            detail += f", flow labels 0x{low:05x}-0x{high:05x}"
        lines.append(f"{'slices' if i == 0 else '':<10} {s.name:<12} {detail}")
    return lines


def _reflector(plan: AgentPlan) -> str:
    r = plan.reflector
    if r is None:
        return "off"
    where = ", ".join(_host_port(address, r.port) for address in r.bind)
    mode = "stateful" if r.stateful else "stateless"
    auth = "authenticated" if r.auth_key else "unauthenticated"
    allow = ", ".join(r.allow) if r.allow else "any source"
    limit = f"{r.rate_limit_pps:g} pps per source" if r.rate_limit_pps else "no rate limit"
    return f"{mode}, {auth}, on {where}; answers {allow}; {limit}"


def _analyzer(plan: AgentPlan) -> str:
    if plan.bus is not None:
        where = ", ".join(plan.bus.servers)
        return (
            f"bus {where} as {plan.bus.cert_file}; spool in {plan.spool_dir}, at most {plan.spool_max_windows} windows"
        )
    if plan.analyzer_url is None:
        return "none (windows stay on this agent)"
    token = "with a token" if plan.analyzer_token else "without a token"
    spool = f"spool in {plan.spool_dir}"
    return f"{plan.analyzer_url} {token}; {spool}, at most {plan.spool_max_windows} windows"


def _capture(plan: AgentPlan) -> list[str]:
    capture = plan.capture
    if capture is None:
        return []
    lines = []
    for i, entry in enumerate(capture.interfaces):
        detail = f"sampling 1:{entry.sample}"
        if entry.tcp_rtt:
            detail += ", passive TCP RTT"
        if entry.altmark_point:
            detail += f", alternate-marking point {entry.altmark_point}"
        detail += f"; records end after {entry.active_timeout_s:g} s, or {entry.idle_timeout_s:g} s idle"
        lines.append(f"{'capture' if i == 0 else '':<10} {entry.interface:<12} {detail}")
    lines.append(f"{'':<10} packets classified into slices by {capture.rules_source}")
    return lines


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _counts(config: AgentConfig, plan: AgentPlan) -> list[str]:
    targets = len({p.target.name for p in plan.probes})
    per_pair = Counter((p.slice.name, p.kind) for p in plan.probes)
    kinds = [k for k in PROBE_KINDS if any(kind == k for _, kind in per_pair)] or list(PROBE_KINDS)
    pps = sum(p.packets_per_interval / p.interval_s for p in plan.probes)
    lines = [f"{_count(len(plan.probes), 'probe schedule')} to {_count(targets, 'target')}, {pps:g} packets/s in all"]
    lines.append(f"  {'slice':<14}" + "".join(f"{k:>8}" for k in kinds))
    for s in config.slices:
        lines.append(f"  {s.name:<14}" + "".join(f"{per_pair[(s.name, k)]:>8}" for k in kinds))
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _first_probes(plan: AgentPlan) -> list[str]:
    shown = plan.probes[:FIRST_PROBES_SHOWN]
    header = ("target", "address", "port", "slice", "kind", "flow label", "interval", "pkts", "timeout", "size")
    rows = [header] + [
        (
            p.target.name,
            p.target.address,
            str(p.target.port) if p.kind == "stamp" else "-",
            p.slice.name,
            p.kind,
            f"0x{p.flow_label:05x}" if p.flow_label is not None else "-",
            f"{p.interval_s:g}s",
            str(p.packets_per_interval),
            f"{p.timeout_s:g}s",
            str(p.size) if p.size is not None else "-",
        )
        for p in shown
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    title = (
        f"first {len(shown)} of {len(plan.probes)} probe schedules"
        if len(plan.probes) > len(shown)
        else "probe schedules"
    )
    return [title] + ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
