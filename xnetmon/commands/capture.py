"""`xnetmon capture read FILE` and `xnetmon capture live IFACE`: what the slices carry, from packets.

Both classify every (sampled) packet into a slice, aggregate packets into flow records and
print per-slice totals and the top flows (`--json`: every flow record). The totals come
from `collector.traffic.counters.TrafficCounters`, the same counters flow exports feed.
`--tcp-rtt` adds passive TCP round-trip times per slice, `--altmark-point NAME` the
alternate-marking counters of this capture point; both see every packet, also when
sampling (they make a file read packet by packet, which is slower).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

from xnetmon.errors import UsageError

TOP_FLOWS = 10


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "capture",
        help="classify captured packets into slices and flows (pcap file or live interface)",
        description="Read packets from a pcap/pcapng file or an interface, classify them into slices "
        "and aggregate them into flow records.",
    )
    commands = p.add_subparsers(dest="capture_command", metavar="{read,live}", required=True)

    read = commands.add_parser(
        "read",
        help="a pcap or pcapng file",
        description="Classify and aggregate every packet of a pcap or pcapng file.",
    )
    read.add_argument("file", help="pcap or pcapng (Ethernet, raw IP, Linux cooked SLL/SLL2)")
    read.add_argument(
        "--per-packet",
        action="store_true",
        help="dissect packet by packet instead of the vectorised path (same result, slower)",
    )
    _common_arguments(read)
    read.set_defaults(handler=run_read)

    live = commands.add_parser(
        "live",
        help="an interface (AF_PACKET, root)",
        description="Capture from an interface with 1:N random packet sampling: every "
        "packet is counted, one in N on average is classified and aggregated.",
    )
    live.add_argument("interface")
    live.add_argument(
        "--sample",
        type=_positive_int,
        default=1,
        metavar="N",
        help="dissect one packet in N on average (random, as sFlow); flows are scaled by N (default 1)",
    )
    live.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    live.add_argument("--netns", metavar="NAME", help="capture inside this network namespace (ip netns name)")
    live.add_argument("--seed", type=int, help="seed of the sampler, for repeatable runs")
    _common_arguments(live)
    live.set_defaults(handler=run_live)


def _common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--slices", metavar="FILE", help="slice rules (YAML: rules, default); default: the DSCP catalogue")
    p.add_argument(
        "--slice-option",
        type=lambda v: int(v, 0),
        metavar="TYPE",
        help="Hop-by-Hop option type of the slice ID (default 0x1e)",
    )
    p.add_argument(
        "--active-timeout",
        type=float,
        default=1800.0,
        metavar="S",
        help="end a flow record this long after its first packet (default 1800)",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=15.0,
        metavar="S",
        help="end a flow record after this long without a packet (default 15)",
    )
    p.add_argument("--top", type=int, default=TOP_FLOWS, metavar="N", help=f"flows shown (default {TOP_FLOWS})")
    p.add_argument("--tcp-rtt", action="store_true", help="passive TCP RTT and retransmissions per slice")
    p.add_argument(
        "--altmark-point",
        metavar="NAME",
        help="count alternate-marking blocks (RFC 9341/9343) as measurement point NAME",
    )
    p.add_argument("--json", action="store_true", help="totals and every flow record as JSON")


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return number


def _setup(args: argparse.Namespace, sampling_rate: int):
    """The slice classifier and the capture options the arguments ask for."""
    from collector.capture.points import CaptureOptions
    from collector.system.config_files import ConfigError
    from collector.traffic.classifier import SliceClassifier
    from collector.wire.dissect import DEFAULT_SLICE_OPTION

    try:
        classifier = SliceClassifier.from_file(args.slices) if args.slices else SliceClassifier.default()
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if args.slice_option is not None and not 0 <= args.slice_option <= 255:
        raise UsageError(f"--slice-option {args.slice_option:#x} is not an option type (0..0xff)")
    options = CaptureOptions(
        sampling_rate=sampling_rate,
        tcp_rtt=args.tcp_rtt,
        altmark_point=args.altmark_point,
        slice_option_type=DEFAULT_SLICE_OPTION if args.slice_option is None else args.slice_option,
        active_timeout_s=args.active_timeout,
        idle_timeout_s=args.idle_timeout,
    )
    return classifier, options


def run_read(args: argparse.Namespace) -> int:
    from collector.capture.pcap import CaptureFileError, read_flows
    from collector.capture.points import capture_meters

    classifier, options = _setup(args, 1)
    try:
        meters = capture_meters(f"capture:{args.file}", classifier, options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    observers = meters.observers
    try:
        result = read_flows(
            args.file,
            meters.aggregator,
            per_packet=args.per_packet,
            slice_option_type=options.slice_option_type,
            observers=observers,
        )
    except CaptureFileError as exc:
        raise UsageError(str(exc)) from None
    summary = {
        "source": args.file,
        "sampling_rate": 1,
        "packets": result.packets,
        "ip_packets": result.ip_packets,
        "skipped": dict(result.skipped),
        "malformed": dict(result.malformed),
    }
    _report(args, summary, result.records, observers)
    return 0


def run_live(args: argparse.Namespace) -> int:
    if args.netns:
        _reexec_in_namespace(args.netns)
    from collector.capture.points import open_live_capture

    classifier, options = _setup(args, args.sample)
    try:
        capture, meters = open_live_capture(args.interface, classifier, options, seed=args.seed)
    except PermissionError:
        raise UsageError("live capture needs root (CAP_NET_RAW)") from None
    except OSError as exc:
        raise UsageError(f"cannot capture on {args.interface}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    # On stderr, so that --json output stays one document; tests wait for this line.
    print(f"capturing on {args.interface}, sampling 1:{args.sample}", file=sys.stderr, flush=True)
    with capture:
        try:
            capture.run(args.duration)
        except KeyboardInterrupt:
            pass  # run() has ended every record
    stats = capture.stats
    summary = {
        "source": args.interface,
        "sampling_rate": args.sample,
        "packets": stats.packets,
        "octets": stats.octets,
        "sampled": stats.sampled,
        "not_ip": stats.not_ip,
        "malformed": stats.malformed,
        "kernel_drops": stats.kernel_drops,
    }
    _report(args, summary, capture.records, meters.observers)
    return 0


def _reexec_in_namespace(namespace: str) -> None:
    """Runs this same command again under `ip netns exec NAMESPACE`, without --netns."""
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--netns":
            del argv[i : i + 2]
            break
        if arg.startswith("--netns="):
            del argv[i]
            break
    command = ["ip", "netns", "exec", namespace, sys.executable, "-m", "xnetmon", *argv]
    sys.stdout.flush()
    try:
        os.execvp("ip", command)
    except OSError as exc:
        raise UsageError(f"cannot run ip netns exec {namespace}: {exc.strerror or exc}") from None


# -- output ------------------------------------------------------------------------------------


def _report(args: argparse.Namespace, summary: dict, records: list, observers: tuple) -> None:
    from collector.traffic.counters import TrafficCounters

    counters = TrafficCounters()
    for record in records:
        counters.add(record)
    slices = {name: asdict(totals) for name, totals in sorted(counters.by_slice().items())}
    flows = sorted(records, key=lambda r: (-r.bytes, r.start_ns))
    extras = {_meter_name(o): _observer_report(o) for o in observers}
    if args.json:
        document = {**summary, "slices": slices, "flows": [_flow_dict(r) for r in flows]}
        document.update({_JSON_KEYS[name]: value for name, value in extras.items()})
        json.dump(document, sys.stdout, indent=2)
        print()
        return
    _print_text(summary, slices, flows[: args.top], extras)


_JSON_KEYS = {"PassiveTcpRtt": "tcp_rtt", "MarkingPoint": "altmark"}


def _meter_name(observer) -> str:
    """The meter's kind: a counting point (the capture's marking meter) reports as a MarkingPoint."""
    from collector.capture.altmark import MarkingPoint

    return "MarkingPoint" if isinstance(observer, MarkingPoint) else type(observer).__name__


def _flow_dict(record) -> dict:
    document = asdict(record)
    document["segments"] = list(record.segments)
    return document


def _observer_report(observer) -> dict:
    if type(observer).__name__ == "PassiveTcpRtt":
        report = observer.report()
        return {
            "slices": {name: asdict(summary) for name, summary in report.by_slice.items()},
            "prefixes": [{"slice": s, "prefix": p, **asdict(summary)} for (s, p), summary in report.by_prefix.items()],
            "malformed": report.malformed,
        }
    observer.flush()
    return {
        "point": observer.name,
        "packets": [{"flow_mon_id": f, "colour": c, "packets": n} for (f, c), n in sorted(observer.packets.items())],
        "blocks": [asdict(block) | {"delay_marks_ns": list(block.delay_marks_ns)} for block in observer.blocks()],
        "malformed": observer.malformed,
    }


def _print_text(summary: dict, slices: dict, top: list, extras: dict) -> None:
    counts = ", ".join(
        f"{key.replace('_', ' ')} {value:,}"
        for key, value in summary.items()
        if isinstance(value, int) and key not in ("sampling_rate",)
    )
    print(f"{summary['source']}: {counts}, sampling 1:{summary['sampling_rate']}")
    for label in ("skipped", "malformed"):
        if summary.get(label):
            print(f"  {label}: " + ", ".join(f"{kind} {n:,}" for kind, n in sorted(summary[label].items())))
    rows = [[name, t["flows"], t["packets"], t["bytes"]] for name, t in slices.items()]
    _table(["slice", "flows", "packets", "bytes"], rows)
    if top:
        print(f"\ntop {len(top)} flows by bytes")
        _table(
            ["source", "destination", "proto", "sport", "dport", "dscp", "label", "slice", "packets", "bytes"],
            [
                [
                    r.source,
                    r.destination,
                    r.protocol,
                    r.source_port,
                    r.destination_port,
                    r.dscp,
                    f"{r.flow_label:#x}",
                    r.slice,
                    r.packets,
                    r.bytes,
                ]
                for r in top
            ],
        )
    rtt = extras.get("PassiveTcpRtt")
    if rtt is not None:
        print("\npassive TCP RTT")
        _table(
            ["slice", "samples", "min ms", "p50 ms", "p90 ms", "p99 ms", "retransmissions"],
            [
                [name, s["samples"], *(_ms(s[k]) for k in ("min_s", "p50_s", "p90_s", "p99_s")), s["retransmissions"]]
                for name, s in rtt["slices"].items()
            ],
        )
    marks = extras.get("MarkingPoint")
    if marks is not None:
        print(f"\nalternate marking at {marks['point']}: {len(marks['blocks'])} blocks")
        _table(
            ["flow mon id", "colour", "packets"],
            [[p["flow_mon_id"], p["colour"], p["packets"]] for p in marks["packets"]],
        )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.3f}"


def _table(headers: list[str], rows: list[list]) -> None:
    """Numbers right-aligned, text left-aligned (a column takes the alignment of its first row)."""
    cells = [[f"{v:,}" if isinstance(v, int) else str(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and isinstance(rows[0][i], int) for i in range(len(headers))]
    for line in [headers, *cells]:
        print("  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(line, widths, numeric)).rstrip())
