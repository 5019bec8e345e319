"""`xnetmon probe icmp TARGET` (or `probe ping`): ICMPv6 echo in a slice, printed like iputils ping."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import os
import sys
import time
from dataclasses import asdict

from collector.contract.records import ProbeResult
from collector.probes.icmp import EchoPermissionError, EchoProber, EchoSettings
from collector.probes.icmp_session import EchoTarget
from collector.probes.summary import ProbeSummary
from collector.wire.icmp6 import COOKIE_LEN, HEADER_LEN
from xnetmon.commands.common import add_marking_arguments, marking_of, milliseconds, positive_float, resolve_target
from xnetmon.errors import UsageError

DEFAULT_SIZE = 56  # as iputils: 64 octets of ICMPv6 on the wire
MAX_SIZE = 65527  # an IPv6 payload length of 65535 less the ICMPv6 header
MIN_USER_INTERVAL_S = 0.002  # as iputils: ping sockets must not let any user flood


def register(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser(
        "icmp",
        aliases=["ping"],  # what engineers type
        help="ICMPv6 echo to a target, marked for a slice (like ping -6; `probe ping` is the same)",
        description="Send ICMPv6 Echo Requests marked with a slice's DSCP (and a flow label) and print "
        "each reply and a summary like iputils ping. Uses an unprivileged ping socket where "
        "net.ipv4.ping_group_range allows, a raw socket otherwise. Ctrl-C stops and prints the summary. "
        "`xnetmon probe ping` is another name for this command; `icmp` is the probe kind's name in "
        "agent configurations and metrics.",
    )
    p.add_argument("target", help="IPv6 address or name")
    add_marking_arguments(p, "the requests", "IPv6 flow label (1..0xFFFFF)")
    p.add_argument("-c", "--count", type=int, help="stop after COUNT requests (default: until Ctrl-C)")
    p.add_argument("-i", "--interval", type=positive_float, default=1.0, help="seconds between requests")
    p.add_argument(
        "-s",
        "--size",
        type=int,
        default=DEFAULT_SIZE,
        help=f"echo data octets (default {DEFAULT_SIZE}, at least {COOKIE_LEN})",
    )
    p.add_argument("-W", "--timeout", type=positive_float, default=2.0, help="seconds before a request counts as lost")
    p.add_argument("-S", "--source", help="local address to send from")
    p.add_argument("--json", action="store_true", help="one JSON object per reply, then the summary")
    p.set_defaults(handler=run)


def _target(args: argparse.Namespace) -> tuple[EchoTarget, str]:
    slice_name, dscp_value = marking_of(args)
    if args.count is not None and args.count < 1:
        raise UsageError("count must be at least 1")
    if args.interval < MIN_USER_INTERVAL_S and os.geteuid() != 0:
        raise UsageError(
            f"cannot flood: the shortest interval for a non-root user is {MIN_USER_INTERVAL_S * 1000:g} ms"
        )
    if not COOKIE_LEN <= args.size <= MAX_SIZE:
        raise UsageError(f"--size must be in {COOKIE_LEN}..{MAX_SIZE} octets")
    try:
        if ipaddress.ip_address(args.target).version == 4:
            raise UsageError(f"{args.target} is an IPv4 address: ping probes ICMPv6 only")
    except ValueError:
        pass  # a name: resolved below
    address = resolve_target(args.target, ipv6_only=True)
    return EchoTarget(args.target, address, slice_name, dscp_value, args.flow_label), address


def _open(args: argparse.Namespace, target: EchoTarget) -> EchoProber:
    settings = EchoSettings(source=args.source, size=args.size, timeout_ns=int(args.timeout * 1e9))
    try:
        prober = EchoProber(settings)
    except EchoPermissionError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot send from {args.source or 'this host'}: {exc.strerror or exc}") from None
    try:
        prober.add_target(target)
    except OSError as exc:
        prober.close()
        raise UsageError(f"cannot use flow label {target.flow_label:#x}: {exc.strerror or exc}") from None
    return prober


def run(args: argparse.Namespace) -> int:
    target, address = _target(args)
    prober = _open(args, target)
    results: list[ProbeResult] = []
    started = time.monotonic()
    with prober:
        if not args.json:
            marking = f"slice {target.slice}, DSCP {target.dscp}"
            if target.flow_label:
                marking += f", flow label {target.flow_label:#x}"
            source = f" from {args.source}" if args.source else ""
            print(f"PING {args.target} ({address}){source} {args.size} data bytes, {marking}", flush=True)
        try:
            asyncio.run(_collect(prober, args, address, results))
        except KeyboardInterrupt:
            pass
        results.extend(prober.session.flush())
        elapsed_ms = int((time.monotonic() - started) * 1000)
        summary = ProbeSummary.from_results(results)
        _print_summary(args, address, summary, results, prober, elapsed_ms)
    return 0 if summary.received else 1


async def _collect(prober: EchoProber, args: argparse.Namespace, address: str, results: list[ProbeResult]) -> None:
    reported_errors = 0
    async for result in prober.run(args.count, args.interval):
        results.append(result)
        if prober.send_errors > reported_errors and not result.icmp_error:
            reported_errors = prober.send_errors
            print(f"send: {prober.last_send_error}", file=sys.stderr)
        _print_result(args, address, result)


def _print_result(args: argparse.Namespace, address: str, r: ProbeResult) -> None:
    if args.json:
        record = asdict(r)
        record["loss"] = r.loss.value
        print(json.dumps(record), flush=True)
    elif r.icmp_error:
        print(f"icmp_seq={r.seq} {r.icmp_error}", flush=True)
    elif r.lost:
        print(f"no answer yet for icmp_seq={r.seq}", flush=True)
    else:
        dup = " (DUP!)" if r.duplicate else ""
        print(
            f"{args.size + HEADER_LEN} bytes from {address}: icmp_seq={r.seq} hlim={r.reply_hop_limit} "
            f"time={milliseconds(r.rtt_ns)} ms{dup}",
            flush=True,
        )


def mean_deviation_ns(results: list[ProbeResult]) -> int | None:
    """iputils' mdev: the standard deviation of the round trips (sqrt(E[x^2] - E[x]^2))."""
    rtts = [r.rtt_ns for r in results if r.rtt_ns is not None and not r.duplicate]
    if not rtts:
        return None
    mean = sum(rtts) / len(rtts)
    return int(math.sqrt(max(0.0, sum(x * x for x in rtts) / len(rtts) - mean * mean)))


def _print_summary(
    args: argparse.Namespace,
    address: str,
    s: ProbeSummary,
    results: list[ProbeResult],
    prober: EchoProber,
    elapsed_ms: int,
) -> None:
    errors = sum(1 for r in results if r.icmp_error and not r.duplicate)
    mdev = mean_deviation_ns(results)
    if args.json:
        record = asdict(s)
        record.update(
            target=args.target,
            address=address,
            loss_ratio=s.loss_ratio,
            errors=errors,
            rtt_mdev_ns=mdev,
            send_errors=prober.send_errors,
            socket=prober.socket_kind.value,
            identifier=prober.session.identifier,
            foreign_replies=prober.session.foreign_replies,
            late_replies=prober.session.late_replies,
        )
        print(json.dumps({"summary": record}), flush=True)
        return
    extras = ""
    if s.duplicates:
        extras += f", +{s.duplicates} duplicates"
    if errors:
        extras += f", +{errors} errors"
    print(f"\n--- {args.target} ping statistics ---")
    print(
        f"{s.sent} packets transmitted, {s.received} received{extras}, "
        f"{s.loss_ratio * 100:g}% packet loss, time {elapsed_ms}ms"
    )
    if s.received:
        print(
            "rtt min/avg/max/mdev = "
            + "/".join(milliseconds(v) for v in (s.rtt_min_ns, s.rtt_avg_ns, s.rtt_max_ns, mdev))
            + " ms"
        )
