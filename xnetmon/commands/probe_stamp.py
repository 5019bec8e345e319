"""`xnetmon probe stamp TARGET`: a STAMP session printed like ping, with a summary."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict

from collector.contract.records import ProbeResult
from collector.probes.stamp import StampEndpoint, StampProbe
from collector.probes.stamp_session import SenderSettings
from collector.probes.summary import ProbeSummary
from collector.system.clock import read_clock_status
from collector.wire.stamp import STAMP_PORT, TimestampFormat
from xnetmon.commands.common import (
    add_marking_arguments,
    marking_of,
    milliseconds,
    port_number,
    positive_float,
    read_key_file,
    resolve_target,
)
from xnetmon.errors import UsageError


def register(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser(
        "stamp",
        help="two-way delay and loss to a STAMP reflector (RFC 8762)",
        description="Send STAMP test packets to a reflector and print each reply and a summary. "
        "Ctrl-C stops and prints the summary.",
    )
    p.add_argument("target", help="reflector address or name")
    add_marking_arguments(p, "requests and replies", "IPv6 flow label (1..0xFFFFF)")
    p.add_argument("-c", "--count", type=int, help="stop after COUNT requests (default: until Ctrl-C)")
    p.add_argument("-i", "--interval", type=positive_float, default=1.0, help="seconds between requests")
    p.add_argument("-W", "--timeout", type=positive_float, default=2.0, help="seconds before a request counts as lost")
    p.add_argument("-s", "--size", type=int, help="UDP payload octets (padded with an Extra Padding TLV)")
    p.add_argument("-S", "--source", help="local address to send from")
    p.add_argument("-p", "--port", type=port_number, default=STAMP_PORT, help="reflector UDP port")
    p.add_argument("--ssid", type=int, default=0, help="STAMP session identifier (default: random)")
    p.add_argument("--auth-key-file", help="authenticated mode: file holding the HMAC key")
    p.add_argument("--timestamp-format", choices=("ntp", "ptp"), default="ntp")
    p.add_argument("--json", action="store_true", help="one JSON object per reply, then the summary")
    p.set_defaults(handler=run)


def _settings(args: argparse.Namespace) -> tuple[SenderSettings, str]:
    slice_name, dscp_value = marking_of(args)
    if args.count is not None and args.count < 1:
        raise UsageError("count must be at least 1")
    if not 0 <= args.ssid <= 0xFFFF:
        raise UsageError(f"SSID {args.ssid} is not in 0..65535")
    fmt = TimestampFormat.PTP if args.timestamp_format == "ptp" else TimestampFormat.NTP
    settings = SenderSettings(
        target=args.target,
        slice=slice_name,
        dscp=dscp_value,
        ssid=args.ssid,
        size=args.size,
        timeout_ns=int(args.timeout * 1e9),
        auth_key=read_key_file(args.auth_key_file) if args.auth_key_file else None,
        timestamp_format=fmt,
        error_estimate=read_clock_status().error_estimate(fmt),
    )
    if settings.size is not None and settings.size < settings.minimum_size():
        raise UsageError(f"--size must be at least {settings.minimum_size()} octets")
    return settings, slice_name


def run(args: argparse.Namespace) -> int:
    settings, slice_name = _settings(args)
    address = resolve_target(args.target, ipv6_only=args.flow_label is not None)
    endpoint = StampEndpoint(address, args.port, args.source, args.flow_label)
    try:
        probe = StampProbe(endpoint, settings)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except PermissionError as exc:
        raise UsageError(f"cannot open the socket: {exc.strerror}") from None
    except OSError as exc:
        raise UsageError(f"cannot send from {args.source or 'this host'}: {exc.strerror or exc}") from None
    results: list[ProbeResult] = []
    with probe:
        if not args.json:
            size = args.size or settings.minimum_size()
            print(
                f"STAMP {args.target} ({address}) port {args.port}: slice {slice_name}, "
                f"DSCP {settings.dscp}, {size} octets, SSID {probe.session.ssid}"
            )
        try:
            asyncio.run(_collect(probe, args, results))
        except KeyboardInterrupt:
            pass
        results.extend(probe.session.flush())
        summary = ProbeSummary.from_results(results)
        _print_summary(args, address, summary, probe)
    return 0 if summary.received else 1


async def _collect(probe: StampProbe, args: argparse.Namespace, results: list[ProbeResult]) -> None:
    reported_errors = 0
    async for result in probe.run(args.count, args.interval):
        results.append(result)
        if probe.send_errors > reported_errors:
            reported_errors = probe.send_errors
            print(f"send: {probe.last_send_error}", file=sys.stderr)
        _print_result(args, result)


def _print_result(args: argparse.Namespace, r: ProbeResult) -> None:
    if args.json:
        record = asdict(r)
        record["loss"] = r.loss.value
        print(json.dumps(record), flush=True)
        return
    if r.lost:
        reason = r.icmp_error or f"no reply, {r.loss.value} path"
        print(f"seq={r.seq} lost ({reason})", flush=True)
        return
    owd = ""
    if r.forward_owd_ns is not None:
        owd = f" fwd={milliseconds(r.forward_owd_ns)} rev={milliseconds(r.reverse_owd_ns)}"
    dup = " (DUP!)" if r.duplicate else ""
    print(
        f"reply from {args.target}: seq={r.seq} rtt={milliseconds(r.rtt_ns)} ms{owd}"
        f" hlim={r.reflector_hop_limit}/{r.reply_hop_limit}"
        f" dscp={_show(r.reflector_dscp)}/{_show(r.reply_dscp)}{dup}",
        flush=True,
    )


def _show(value: int | None) -> str:
    return "-" if value is None else str(value)


def _print_summary(args: argparse.Namespace, address: str, s: ProbeSummary, probe: StampProbe) -> None:
    if args.json:
        record = asdict(s)
        record.update(target=args.target, address=address, loss_ratio=s.loss_ratio, send_errors=probe.send_errors)
        print(json.dumps({"summary": record}), flush=True)
        return
    print(f"--- {args.target} STAMP statistics ---")
    print(
        f"{s.sent} sent, {s.received} received, {s.loss_ratio:.1%} loss "
        f"(forward {s.lost_forward}, reverse {s.lost_reverse}, unknown {s.lost_unknown}), "
        f"{s.duplicates} duplicates, {s.reordered} reordered"
    )
    if s.received:
        print(
            "rtt min/avg/p50/p99/max = "
            + "/".join(milliseconds(v) for v in (s.rtt_min_ns, s.rtt_avg_ns, s.rtt_p50_ns, s.rtt_p99_ns, s.rtt_max_ns))
            + " ms"
        )
        print(
            f"jitter (IPDV, RFC 3393) mean/max = {milliseconds(s.ipdv_mean_abs_ns)}/"
            f"{milliseconds(s.ipdv_max_abs_ns)} ms, PDV p99 (RFC 5481) = {milliseconds(s.pdv_p99_ns)} ms"
        )
