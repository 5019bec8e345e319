"""`xnetmon bus init DIR` and `xnetmon bus add-site DIR SITE`: the bus's CA, certificates and
nats-server configuration, for an operator to deploy (see xnetmon/bus_setup.py)."""

from __future__ import annotations

import argparse

from xnetmon.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bus",
        help="create the bus's CA, certificates and nats-server configuration",
        description="Write what a NATS JetStream bus between sites and analyzers needs: a CA, the "
        "server's and the analyzers' certificates, one certificate per site (its identity: it may "
        "publish only on its own subjects) and nats-server.conf. Re-runnable: existing keys are kept.",
    )
    commands = p.add_subparsers(dest="bus_command", metavar="BUS_COMMAND", required=True)
    init = commands.add_parser("init", help="the CA, server and analyzer certificates, nats-server.conf")
    init.add_argument("directory", metavar="DIR")
    init.add_argument(
        "--name",
        action="append",
        dest="names",
        metavar="NAME",
        help="a DNS name or address clients reach the server by (repeatable; default localhost, 127.0.0.1, ::1)",
    )
    init.set_defaults(handler=run_init)
    add = commands.add_parser("add-site", help="a site's certificate and key, and its permissions")
    add.add_argument("directory", metavar="DIR")
    add.add_argument("site", metavar="SITE")
    add.set_defaults(handler=run_add_site)
    operator = commands.add_parser(
        "add-operator", help="an operator's certificate and key: may ask any site's agent to probe"
    )
    operator.add_argument("directory", metavar="DIR")
    operator.add_argument("name", metavar="NAME")
    operator.set_defaults(handler=run_add_operator)


def run_init(args: argparse.Namespace) -> int:
    from xnetmon import bus_setup

    names = tuple(args.names) if args.names else bus_setup.DEFAULT_NAMES
    root = bus_setup.init(args.directory, names)
    print(f"bus PKI in {root}: ca.pem, server.pem, analyzer.pem; server configuration {root / 'nats-server.conf'}")
    print(f"next: xnetmon bus add-site {root} SITE, then nats-server -c {root / 'nats-server.conf'}")
    return 0


def run_add_site(args: argparse.Namespace) -> int:
    from collector.bus.subjects import BadSubject
    from xnetmon import bus_setup

    try:
        cert = bus_setup.add_site(args.directory, args.site)
    except (BadSubject, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    print(f"site {args.site}: {cert} and {cert.with_name(args.site + '-key.pem')} (give both and ca.pem to the site)")
    print(f"server configuration updated: {cert.parent.parent / 'nats-server.conf'} (reload nats-server)")
    return 0


def run_add_operator(args: argparse.Namespace) -> int:
    from collector.bus.subjects import BadSubject
    from xnetmon import bus_setup

    try:
        cert = bus_setup.add_operator(args.directory, args.name)
    except (BadSubject, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    print(
        f"operator {args.name}: {cert} and {cert.with_name(args.name + '-key.pem')} (with ca.pem: xnetmon probe --from)"
    )
    print(f"server configuration updated: {cert.parent.parent / 'nats-server.conf'} (reload nats-server)")
    return 0
