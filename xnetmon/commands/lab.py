"""`xnetmon lab ...`: a thin command line over `lab.Lab`.

xnetmon lab up [TOPOLOGY]            tiny, small, or a .yaml path (default: small)
xnetmon lab down
xnetmon lab status [--json]
xnetmon lab exec SITE -- CMD ...
xnetmon lab path SRC DST             the hop list routing gives now
xnetmon lab fault KIND ...           loss, down, congest, slice-starve, reroute, delay, kill
xnetmon lab heal FAULT-ID | --all
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from xnetmon.errors import UsageError

DEFAULT_TOPOLOGY = "small"


def register(subparsers: argparse._SubParsersAction) -> None:
    lab = subparsers.add_parser(
        "lab",
        help="the emulated extranet in network namespaces (up, down, status, faults)",
        description="Bring up the emulated IPv6 extranet, inject faults and heal them. Needs root.",
    )
    lab.set_defaults(handler=lambda args: _help(lab))
    commands = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND")

    up = commands.add_parser("up", help="create the lab (tears down the previous one first)")
    up.add_argument("topology", nargs="?", default=DEFAULT_TOPOLOGY, help="tiny, small, or a topology .yaml file")
    up.set_defaults(handler=_up)

    down = commands.add_parser("down", help="remove everything the lab created, and nothing else")
    down.set_defaults(handler=_down)

    status = commands.add_parser("status", help="sites, links, addresses and active faults")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_status)

    run = commands.add_parser("exec", help="run a command inside a site: lab exec SITE -- CMD ...")
    run.add_argument("site")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD")
    run.set_defaults(handler=_exec)

    path = commands.add_parser("path", help="the hop list routing gives now between two sites")
    path.add_argument("source")
    path.add_argument("destination")
    path.set_defaults(handler=_path)

    heal = commands.add_parser("heal", help="undo one fault, or all of them")
    heal.add_argument("fault_id", nargs="?", help="as printed by `lab fault` and `lab status`")
    heal.add_argument("--all", action="store_true", help="heal every active fault")
    heal.set_defaults(handler=_heal)

    fault = commands.add_parser("fault", help="inject a fault; prints its id for `lab heal`")
    fault.set_defaults(handler=lambda args: _help(fault))
    kinds = fault.add_subparsers(dest="fault_kind", metavar="KIND")

    def link_fault(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = kinds.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("link", help='a link, "a-b" in either order')
        parser.add_argument("--from", dest="from_site", metavar="SITE", help="only the direction leaving SITE")
        return parser

    loss = link_fault("loss", "random packet loss on a link")
    loss.add_argument("--rate", type=float, required=True, help="drop probability per direction, 0..1")
    loss.add_argument("--slice", help="only this slice's packets (by DSCP)")
    loss.set_defaults(handler=lambda a: _fault(a, "fault_loss", a.link, a.rate, from_site=a.from_site, slice=a.slice))

    dn = kinds.add_parser("down", help="a link or a whole site down; routing reconverges around it")
    dn.add_argument("target", help='a link "a-b" or a site name')
    dn.set_defaults(handler=lambda a: _fault(a, "fault_down", a.target))

    congest = link_fault("congest", "cut a link's rate, bound its queue, and overload it with iperf3")
    congest.add_argument("--rate-mbit", type=float, default=2.0, help="the cut rate (default 2)")
    congest.add_argument("--queue-ms", type=float, default=100.0, help="queueing delay of a full queue (default 100)")
    congest.add_argument("--load", type=float, default=1.5, dest="load_factor", help="load / rate (default 1.5)")
    congest.add_argument("--slice", help="slice of the load (default: best effort)")
    congest.set_defaults(
        handler=lambda a: _fault(
            a,
            "fault_congest",
            a.link,
            rate_mbit=a.rate_mbit,
            queue_ms=a.queue_ms,
            load_factor=a.load_factor,
            from_site=a.from_site,
            slice=a.slice,
        )
    )

    starve = link_fault("slice-starve", "cut one slice's share of a link to almost nothing")
    starve.add_argument("--slice", required=True)
    starve.add_argument("--rate-kbit", type=int, default=8, help="what the slice keeps (default 8 kbit/s)")
    starve.set_defaults(
        handler=lambda a: _fault(a, "fault_slice_starve", a.link, a.slice, rate_kbit=a.rate_kbit, from_site=a.from_site)
    )

    reroute = kinds.add_parser("reroute", help="move traffic between two sites onto an alternate path")
    reroute.add_argument("source")
    reroute.add_argument("destination")
    reroute.add_argument("--via", metavar="SITE", help="go through this site")
    reroute.set_defaults(handler=lambda a: _fault(a, "fault_reroute", a.source, a.destination, via=a.via))

    delay = link_fault("delay", "a fixed added delay on a link (NFQUEUE delay line; see lab/README.md)")
    delay.add_argument("--ms", type=float, required=True, dest="delay_ms", help="added delay per direction")
    delay.add_argument("--slice", help="only this slice's packets (by DSCP)")
    delay.set_defaults(
        handler=lambda a: _fault(a, "fault_delay", a.link, a.delay_ms, from_site=a.from_site, slice=a.slice)
    )

    kill = kinds.add_parser("kill", help="signal processes on a site (a reflector, an agent)")
    kill.add_argument("site")
    kill.add_argument("match", help="substring of the command line")
    kill.add_argument("--signal", default="TERM", choices=["TERM", "KILL", "INT", "STOP"])
    kill.add_argument("--no-restart", action="store_true", help="heal does not start it again")
    kill.set_defaults(
        handler=lambda a: _fault(a, "fault_kill", a.site, a.match, signal=a.signal, restart=not a.no_restart)
    )


# ---------------------------------------------------------------------------------------


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _needs_root() -> None:
    if os.geteuid() != 0:
        raise UsageError("the lab creates network namespaces and needs root")


def _guarded(work):
    """Run `work()`, turning the lab's own errors into UsageError (message, no traceback)."""
    from lab.lab import LabError
    from lab.topology import TopologyError

    try:
        return work()
    except (LabError, TopologyError) as exc:
        raise UsageError(str(exc)) from None


def _up(args: argparse.Namespace) -> int:
    from lab.lab import Lab

    def work() -> int:
        lab = Lab.from_name(args.topology)  # validated before root is even checked
        _needs_root()
        seconds = lab.up()
        print(f"lab {lab.name} up in {seconds:.2f} s: {len(lab.sites)} sites, {len(lab.links)} links")
        print("see `xnetmon lab status`; `xnetmon lab down` removes it")
        return 0

    return _guarded(work)


def _down(args: argparse.Namespace) -> int:
    from lab.lab import Lab
    from lab.state import StateStore

    _needs_root()
    store = StateStore()
    if store.load() is None:
        print("no lab was up")
        return 0
    _guarded(lambda: Lab.current(store).down())
    print("lab removed")
    return 0


def _current():
    from lab.lab import Lab

    return Lab.current()


def _status(args: argparse.Namespace) -> int:
    def work() -> int:
        report = _current().status()
        if args.json:
            json.dump(report, sys.stdout, indent=2)
            print()
        else:
            print(render_status(report))
        return 0

    return _guarded(work)


def render_status(report: dict) -> str:
    lines = [f"lab {report['topology']} ({report['prefix']}), {'up' if report['up'] else 'NOT complete'}"]
    lines.append("")
    lines.append(f"{'SITE':<8} {'ROLE':<9} {'NAMESPACE':<16} {'LOOPBACK':<24} {'HOST PREFIX':<26} STATE")
    for s in report["sites"]:
        lines.append(
            f"{s['name']:<8} {s['role']:<9} {s['namespace']:<16} {s['loopback']:<24} "
            f"{s['host_prefix']:<26} {s['state']}"
        )
    lines.append("")
    lines.append(f"{'LINK':<14} {'COST':>4} {'MBIT':>6} {'PREFIX':<26} {'ENDS':<40} STATE")
    for link in report["links"]:
        ends = "  ".join(f"{e['interface']}@{site}" for site, e in link["ends"].items())
        lines.append(
            f"{link['name']:<14} {link['cost']:>4} {link['bandwidth_mbit']:>6g} {link['prefix']:<26} {ends:<40} "
            f"{link['state']}"
        )
    lines.append("")
    lines.append(
        "SLICES  "
        + ", ".join(f"{s['name']} (dscp {s['dscp']}, id {s['id']}, {s['share']:g}%)" for s in report["slices"])
    )
    lines.append("")
    if report["faults"]:
        lines.append(f"{'FAULT':<16} {'SINCE':<25} WHAT")
        for f in report["faults"]:
            lines.append(f"{f['id']:<16} {f['started_at']:<25} {f['summary']}")
    else:
        lines.append("no active faults")
    return "\n".join(lines)


def _exec(args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise UsageError("lab exec SITE -- CMD: give a command to run")
    _needs_root()

    def work() -> int:
        lab = _current()
        return subprocess.call(lab.exec_argv(_site(lab, args.site), argv))

    return _guarded(work)


def _site(lab, name: str) -> str:
    from lab.lab import LabError
    from lab.topology import TopologyError

    try:
        return lab.topology.site(name).name
    except TopologyError as exc:
        raise LabError(str(exc)) from None


def _path(args: argparse.Namespace) -> int:
    def work() -> int:
        lab = _current()
        hops = lab.path(_site(lab, args.source), _site(lab, args.destination))
        print(" > ".join(hops) if hops else f"{args.destination} is unreachable from {args.source}")
        return 0 if hops else 1

    return _guarded(work)


def _fault(args: argparse.Namespace, method: str, *positional, **keywords) -> int:
    _needs_root()

    def work() -> int:
        lab = _current()
        fault_id = getattr(lab, method)(*positional, **keywords)
        fault = next(f for f in lab.faults() if f.id == fault_id)
        print(f"{fault_id}: {fault.summary}")
        return 0

    return _guarded(work)


def _heal(args: argparse.Namespace) -> int:
    if bool(args.fault_id) == bool(args.all):
        raise UsageError("lab heal: give one FAULT-ID or --all")
    _needs_root()

    def work() -> int:
        lab = _current()
        if args.all:
            healed = lab.heal_all()
            print(f"healed {', '.join(healed)}" if healed else "no active faults")
        else:
            lab.heal(args.fault_id)
            print(f"healed {args.fault_id}")
        return 0

    return _guarded(work)
