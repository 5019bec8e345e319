"""`xnetmon flows collect`: receive IPFIX, NetFlow v9 and sFlow, print traffic per slice.

Prints a per-slice table (bytes, packets and flow records, scaled by sampling) every
`--interval` seconds and once more at exit (Ctrl-C or SIGTERM); `--duration` stops by itself.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from xnetmon.commands.common import listen_address
from xnetmon.errors import UsageError

DEFAULT_LISTEN = "[::1]:4739"  # loopback: receiving from other hosts is asked for


def register(subparsers: argparse._SubParsersAction) -> None:
    flows = subparsers.add_parser("flows", help="flow export receiver (IPFIX, NetFlow v9, sFlow)")
    commands = flows.add_subparsers(dest="flows_command", metavar="COMMAND")
    collect = commands.add_parser(
        "collect",
        help="receive flow exports and print traffic per slice",
        description="Receive IPFIX (RFC 7011), NetFlow v9 (RFC 3954) and sFlow v5 on UDP and count "
        "bytes, packets and flows per slice. Any listen port takes all three protocols.",
    )
    collect.add_argument(
        "--listen",
        action="append",
        metavar="[ADDR]:PORT",
        help=f"UDP address to receive on (repeatable; default {DEFAULT_LISTEN})",
    )
    collect.add_argument(
        "--metrics-listen", metavar="[ADDR]:PORT", help="serve /metrics and /flows/top on this address"
    )
    collect.add_argument(
        "--slices", type=Path, metavar="FILE", help="slice rules (YAML: rules, default); default: the catalogue's DSCPs"
    )
    collect.add_argument(
        "--exporter",
        action="append",
        metavar="PREFIX",
        help="accept exports only from this prefix (repeatable); others are refused and counted (default: any)",
    )
    collect.add_argument("--state-dir", type=Path, help="keep templates and sampling rates here across restarts")
    collect.add_argument(
        "--default-sampling",
        action="append",
        default=[],
        metavar="EXPORTER=N",
        help="1-in-N sampling of an exporter that does not report its rate (repeatable)",
    )
    collect.add_argument("--interval", type=float, default=10.0, help="seconds between tables (default 10)")
    collect.add_argument("--duration", type=float, help="stop after this many seconds")
    collect.add_argument("--json", action="store_true", help="print each table as one JSON line")
    collect.set_defaults(handler=run_collect)
    flows.set_defaults(handler=lambda args: flows.print_help() or 2)


def parse_sampling(values: list[str]) -> dict[str, float]:
    import ipaddress

    rates: dict[str, float] = {}
    for value in values:
        exporter, _, rate = value.rpartition("=")
        try:
            address = ipaddress.ip_address(exporter.strip("[]")).compressed
            number = float(rate)
        except ValueError:
            raise UsageError(
                f"--default-sampling {value!r}: expected EXPORTER_ADDRESS=N, e.g. 2001:db8::1=100"
            ) from None
        if number < 1:
            raise UsageError(f"--default-sampling {value!r}: N must be at least 1")
        rates[address] = number
    return rates


def parse_exporters(values: list[str] | None) -> list[str] | None:
    from collector.flow_export.allow_list import ExporterAllowList

    try:
        return list(ExporterAllowList(values).prefixes or ()) if values else None
    except ValueError as exc:
        raise UsageError(f"--exporter: {exc}") from None


def _classifier(path: Path | None):
    from collector.system.config_files import ConfigError
    from collector.traffic.classifier import SliceClassifier

    if path is None:
        return None
    try:
        return SliceClassifier.from_file(path)
    except ConfigError as exc:
        raise UsageError(f"--slices:\n{exc}") from None


def run_collect(args: argparse.Namespace) -> int:
    from collector.flow_export.receiver import FlowReceiver, ReceiverSettings, ReceiverStateError
    from collector.outputs.prometheus.flows import flow_registry

    settings = ReceiverSettings(
        listen=[listen_address(v, "--listen", DEFAULT_LISTEN) for v in (args.listen or [DEFAULT_LISTEN])],
        state_dir=args.state_dir,
        default_sampling=parse_sampling(args.default_sampling),
        exporters=parse_exporters(args.exporter),
    )
    try:
        receiver = FlowReceiver(settings, _classifier(args.slices))
    except ReceiverStateError as exc:  # before anything was read from the directory or bound
        raise UsageError(str(exc)) from None
    try:
        receiver.start()
    except OSError as exc:
        raise UsageError(f"cannot listen: {exc.strerror or exc}") from None
    server = None
    try:
        if args.metrics_listen:
            from collector.outputs.http import serve_metrics_and_top

            try:
                server = serve_metrics_and_top(
                    flow_registry(receiver),
                    receiver,
                    listen_address(args.metrics_listen, "--metrics-listen", DEFAULT_LISTEN),
                )
            except OSError as exc:
                raise UsageError(f"cannot serve metrics: {exc.strerror or exc}") from None
        where = ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in receiver.addresses)
        print(f"receiving flow exports on {where}", flush=True)
        started = time.monotonic()
        next_table = started + args.interval
        try:
            while args.duration is None or time.monotonic() - started < args.duration:
                time.sleep(0.1)
                if time.monotonic() >= next_table:
                    next_table += args.interval
                    print_table(receiver, args.json)
        except KeyboardInterrupt:
            pass
    finally:
        receiver.stop()
        if server is not None:
            server[0].shutdown()
            server[0].server_close()
    print_table(receiver, args.json)
    return 0


def print_table(receiver, as_json: bool) -> None:
    """Bytes, packets and flow records per slice (zeros included), datagrams, malformed, rates."""
    import json

    with receiver.reading():
        per_slice = receiver.counters.by_slice()
        malformed = sum(receiver.malformed.values())
        datagrams = sum(receiver.datagrams.values())
        rates = dict(receiver.state.sampling.in_use)
    rows = {name: per_slice.get(name) for name in receiver.classifier.names}
    counts = {name: (t.bytes, t.packets, t.flows) if t else (0, 0, 0) for name, t in rows.items()}
    if as_json:
        print(
            json.dumps(
                {
                    "slices": {name: dict(zip(("bytes", "packets", "flows"), c)) for name, c in counts.items()},
                    "datagrams": datagrams,
                    "malformed": malformed,
                    "sampling": rates,
                }
            ),
            flush=True,
        )
        return
    lines = [f"{'slice':<12} {'bytes':>14} {'packets':>12} {'flows':>10}"]
    lines += [f"{name:<12} {b:>14} {p:>12} {f:>10}" for name, (b, p, f) in counts.items()]
    sampling = ", ".join(f"{e} 1:{r:g}" for e, r in sorted(rates.items())) or "-"
    lines.append(f"{datagrams} datagrams, {malformed} malformed; sampling: {sampling}")
    print("\n".join(lines), flush=True)
