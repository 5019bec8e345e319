"""`xnetmon probe trace TARGET`: Paris traceroute in a slice, printed like traceroute or mtr."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from collections.abc import Coroutine
from dataclasses import asdict
from typing import Any, TypeVar

from collector.contract.records import FlowId, HopAnswer, HopProbe, PathObservation
from collector.probes.trace import (
    RawSocketPermissionError,
    TraceEndpoint,
    TraceResult,
    source_address,
    trace,
    trace_rounds,
)
from collector.probes.trace_session import PROTOCOLS, HopReport, TraceHop, TraceSettings, merge_paths, report
from xnetmon.commands.common import add_marking_arguments, marking_of, port_number, positive_float, resolve_target
from xnetmon.errors import UsageError

T = TypeVar("T")
MULTIPATH_FLOWS = 16  # finds up to 4 equal-cost next hops at a hop with 95% confidence (flows_needed)
# traceroute's annotations for answers that end a trace early.
_FLAGS = {
    "no route to destination": "!N",
    "administratively prohibited": "!X",
    "address unreachable": "!H",
    "port unreachable": "!P",
    "beyond scope of source address": "!S",
    "source address failed ingress/egress policy": "!S",
    "reject route to destination": "!R",
    "packet too big": "!F",
}


def register(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser(
        "trace",
        help="Paris traceroute in a slice (hop list, path fingerprint, mtr-style report)",
        description="Trace the path to TARGET with every probe of one flow keeping the same flow label "
        "and ports (Paris traceroute), so all of them follow one ECMP path, and the slice's DSCP on every "
        "probe. --multipath varies the flow on purpose to find the ECMP branches; --report runs COUNT "
        "rounds and prints an mtr-style table per hop.",
    )
    p.add_argument("target", help="IPv6 address or name")
    add_marking_arguments(p, "every probe", "IPv6 flow label (default: a random free one)")
    p.add_argument(
        "--proto",
        choices=PROTOCOLS,
        default="udp",
        help="probe type: udp (no privilege needed), icmp (echo) or tcp (SYN); icmp and tcp need root",
    )
    p.add_argument("-p", "--port", type=port_number, help="destination port (udp: 33434, tcp: 80)")
    p.add_argument("--multipath", action="store_true", help="trace several flows and show each hop's ECMP next hops")
    p.add_argument("--flows", type=int, default=MULTIPATH_FLOWS, help="flows in --multipath mode")
    p.add_argument("--report", action="store_true", help="mtr-style table over COUNT rounds")
    p.add_argument("-c", "--count", type=int, default=10, help="rounds for --report")
    p.add_argument("-i", "--interval", type=positive_float, default=0.25, help="seconds between --report rounds")
    p.add_argument(
        "-q",
        "--queries",
        type=int,
        help="probes per hop (default 3; 1 per flow with --multipath, 1 per round with --report)",
    )
    p.add_argument("-f", "--first-hop", type=int, default=1, help="hop limit to start from")
    p.add_argument("-m", "--max-hops", type=int, default=30, help="largest hop limit")
    p.add_argument("-W", "--timeout", type=positive_float, default=1.0, help="seconds to wait for each answer")
    p.add_argument("-N", "--sim-queries", type=int, default=16, help="probes in flight at once")
    p.add_argument("-S", "--source", help="local address to send from")
    p.add_argument("--json", action="store_true", help="one JSON document instead of text")
    p.set_defaults(handler=run)


def _settings(args: argparse.Namespace) -> TraceSettings:
    slice_name, dscp_value = marking_of(args)
    if args.multipath and args.report:
        raise UsageError("--multipath and --report do not combine: a report follows one flow")
    if args.multipath and args.flow_label is not None:
        raise UsageError("--multipath chooses its own flow labels; leave out --flow-label")
    if args.count < 1 or args.flows < 1 or args.sim_queries < 1:
        raise UsageError("--count, --flows and -N must be at least 1")
    # One probe per flow and hop in multipath mode, as the MDA sends: routers limit ICMP
    # errors (Linux: a burst of 50, then 1,000/s), and 16 flows x 3 would hit that.
    queries = args.queries if args.queries is not None else (1 if args.report or args.multipath else 3)
    try:
        return TraceSettings(
            target=args.target,
            slice=slice_name,
            dscp=dscp_value,
            protocol=args.proto,
            probes_per_hop=queries,
            first_hop=args.first_hop,
            max_hops=args.max_hops,
            timeout_ns=int(args.timeout * 1e9),
            parallel=args.sim_queries,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    address = resolve_target(args.target, ipv6_only=True)
    endpoint = TraceEndpoint(address, args.port, args.source)
    if args.report:
        work = trace_rounds(settings, endpoint, args.count, args.interval, flow_label=args.flow_label)
        flow, rounds = _measure(work, args, endpoint)
        return _print_report(args, settings, endpoint, flow, rounds)
    flows = args.flows if args.multipath else 1
    results = _measure(trace(settings, endpoint, flows=flows, flow_label=args.flow_label), args, endpoint)
    return _print_trace(args, settings, endpoint, results)


def _measure(work: Coroutine[Any, Any, T], args: argparse.Namespace, endpoint: TraceEndpoint) -> T:
    """Run the probes, turning what the user can fix into a UsageError."""
    try:
        return asyncio.run(work)
    except RawSocketPermissionError:
        raise UsageError(
            f"--proto {args.proto} needs raw sockets, which need root (CAP_NET_RAW): run as root, "
            "or use --proto udp, which needs no privilege"
        ) from None
    except OSError as exc:
        where = f"from {args.source}" if args.source else "from this host"
        raise UsageError(f"cannot trace {where} to {endpoint.address}: {exc.strerror or exc}") from None


def _banner(args: argparse.Namespace, settings: TraceSettings, address: str, flow: str) -> str:
    return (
        f"traceroute to {args.target} ({address}), {settings.max_hops} hops max, {flow}, "
        f"slice {settings.slice} (DSCP {settings.dscp})"
    )


# -- one flow, or several (multipath) ------------------------------------------------------------


def _print_trace(
    args: argparse.Namespace, settings: TraceSettings, endpoint: TraceEndpoint, results: list[TraceResult]
) -> int:
    observations = [r.observation for r in results]
    # Probes the kernel refused to send (no route here, for one) are stars; say why.
    refusals = {p.detail for r in results for p in r.session.probes() if p.lost and p.detail}
    for reason in sorted(refusals):
        print(f"xnetmon probe trace: could not send: {reason}", file=sys.stderr)
    if args.json:
        document = {
            "target": args.target,
            "address": endpoint.address,
            "protocol": settings.protocol,
            "slice": settings.slice,
            "dscp": settings.dscp,
            "flows": [
                {
                    "flow": asdict(r.observation.flow),
                    "hops": [_hop_json(h) for h in r.session.hops()],
                    "path": _path_json(r.observation),
                }
                for r in results
            ],
        }
        if args.multipath:
            document["next_hops"] = [
                {"hop": hop, "responders": m}
                for hop, m in enumerate(merge_paths(observations), 1)
                if hop >= settings.first_hop
            ]
        print(json.dumps(document))
    elif args.multipath:
        _print_multipath(args, settings, endpoint.address, observations)
    else:
        result = results[0]
        print(_banner(args, settings, endpoint.address, str(result.observation.flow)))
        for hop in result.session.hops():
            print(_hop_line(hop, settings.dscp))
        print(_fingerprint_line(result.observation))
    return 0 if all(o.reached for o in observations) else 1


def _hop_line(hop: TraceHop, dscp_sent: int) -> str:
    """`N  address  rtt ms  rtt ms ...` like traceroute -n; the address is repeated when another answers."""
    parts = [f"{hop.hop:2d} "]
    shown = None
    remarked: set[int] = set()
    for probe in hop.probes:
        if probe.responder is None or probe.rtt_ns is None:
            parts.append(" *")
            continue
        if probe.responder != shown:
            parts.append(f" {probe.responder}")
            shown = probe.responder
        parts.append(f"  {probe.rtt_ns / 1e6:.3f} ms")
        flag = _flag(probe)
        if flag:
            parts.append(f" {flag}")
        if probe.quoted_dscp is not None and probe.quoted_dscp != dscp_sent:
            remarked.add(probe.quoted_dscp)
    if remarked:  # the quote shows what the probe carried when it reached this hop
        parts.append(f"  [DSCP {dscp_sent} arrived as {', '.join(map(str, sorted(remarked)))}]")
    return "".join(parts)


def _flag(probe: HopProbe) -> str | None:
    if probe.answer is HopAnswer.UNREACHABLE:
        return _FLAGS.get(probe.detail or "", "!?")
    return None


def _fingerprint_line(observation: PathObservation) -> str:
    end = "destination reached" if observation.reached else "destination not reached"
    count = len(observation.hops)
    return f"path fingerprint {observation.fingerprint} ({count} hop{'s' if count != 1 else ''}, {end})"


def _print_multipath(
    args: argparse.Namespace, settings: TraceSettings, address: str, observations: list[PathObservation]
) -> None:
    protocol = observations[0].flow.protocol if observations else settings.protocol
    print(_banner(args, settings, address, f"{protocol}, {len(observations)} flows (multipath)"))
    for hop, responders in enumerate(merge_paths(observations), 1):
        if hop < settings.first_hop:
            continue
        for line, (responder, flows) in enumerate(sorted(responders.items(), key=lambda kv: (-len(kv[1]), kv[0]))):
            prefix = f"{hop:2d}  " if line == 0 else "    "
            print(f"{prefix}{responder}  ({len(flows)} of {len(observations)} flows)")
    paths: dict[str, list[int]] = {}
    for index, observation in enumerate(observations):
        paths.setdefault(observation.fingerprint, []).append(index)
    print(f"{len(paths)} distinct path(s) over {len(observations)} flows:")
    for fingerprint, members in paths.items():
        example = observations[members[0]]
        route = " > ".join(h or "*" for h in example.hops)
        labels = ", ".join(f"0x{observations[i].flow.flow_label:05x}" for i in members)
        print(f"  {fingerprint}  {route}  (flow labels {labels})")


# -- the mtr-style report -----------------------------------------------------------------------


def _print_report(
    args: argparse.Namespace,
    settings: TraceSettings,
    endpoint: TraceEndpoint,
    flow: FlowId,
    rounds: list[list[HopProbe]],
) -> int:
    rows = report(rounds)
    observation = _report_observation(settings, endpoint, flow, rows, rounds)
    if args.json:
        document = {
            "target": args.target,
            "address": endpoint.address,
            "protocol": settings.protocol,
            "slice": settings.slice,
            "dscp": settings.dscp,
            "flow": asdict(flow),
            "rounds": args.count,
            "report": [dict(asdict(r), loss_ratio=r.loss_ratio) for r in rows],
            "path": _path_json(observation),
        }
        print(json.dumps(document))
        return 0 if observation.reached else 1
    start = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print(f"Start: {start}  {_banner(args, settings, endpoint.address, str(flow))}")
    width = max([len(r.address or "???") for r in rows] + [24])
    print(f"HOST: {socket.gethostname():<{width}}  Loss%   Snt   Last   Avg  Best  Wrst StDev")
    for row in rows:
        print(_report_line(row, width))
        for other in row.others:
            print(f"    |   {other}")
    print(_fingerprint_line(observation))
    return 0 if observation.reached else 1


def _report_line(row: HopReport, width: int) -> str:
    def ms(ns: int | None) -> str:
        return f"{(ns or 0) / 1e6:6.1f}" if ns is not None else "   0.0"

    address = row.address or "???"
    return (
        f"{row.hop:3d}.|-- {address:<{width}} {row.loss_ratio * 100:5.1f}% {row.sent:5d}"
        f" {ms(row.last_ns)}{ms(row.avg_ns)}{ms(row.best_ns)}{ms(row.worst_ns)}{ms(row.stdev_ns)}"
    )


def _report_observation(
    settings: TraceSettings, endpoint: TraceEndpoint, flow: FlowId, rows: list[HopReport], rounds: list[list[HopProbe]]
) -> PathObservation:
    last = rows[-1].hop if rows else 0
    reached = any(p.hop == last and p.answer is HopAnswer.REACHED for r in rounds for p in r)
    by_hop = {r.hop: r.address for r in rows}
    return PathObservation(
        source=source_address(endpoint),
        target=settings.target,
        slice=settings.slice,
        flow=flow,
        hops=tuple(by_hop.get(hop) for hop in range(1, last + 1)),
        reached=reached,
        observed_ns=time.time_ns(),
    )


# -- JSON ---------------------------------------------------------------------------------------


def _hop_json(hop: TraceHop) -> dict:
    return {
        "hop": hop.hop,
        "address": hop.address,
        "probes": [
            {
                "responder": p.responder,
                "rtt_ns": p.rtt_ns,
                "answer": p.answer.value,
                "detail": p.detail,
                "quoted_dscp": p.quoted_dscp,
            }
            for p in hop.probes
        ],
    }


def _path_json(observation: PathObservation) -> dict:
    record = asdict(observation)
    record["fingerprint"] = observation.fingerprint
    return record
