"""`xnetmon bus init DIR [--node HOST]... [--partitions P]` and `xnetmon bus add-site DIR
SITE`: the bus's CA, certificates and nats-server configuration (one server, or one per node
of a cluster; the sites' subjects mapped into P partitions), for an operator to deploy (see
xnetmon/bus_setup.py); `add-operator DIR NAME` and `add-analyzer DIR NAME` (an analyzer
replica's own identity, limited to its own consumers and checkpoints)."""

from __future__ import annotations

import argparse
from pathlib import Path

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
    init.add_argument(
        "--node",
        action="append",
        dest="nodes",
        metavar="HOST",
        help="a server of a JetStream cluster, by the name or address the others and the clients reach it "
        "by (repeat for each, at least 3; nodes n1, n2, ... in this order, ports 4222, routes 6222)",
    )
    init.add_argument(
        "--partitions",
        type=int,
        metavar="P",
        help="split the analysis over P partition analyzers: the server maps each site's subjects into one of "
        "P partitions (kept when re-run without it; analyzers: xnetmon analyzer --partitions P)",
    )
    init.set_defaults(handler=run_init)
    add = commands.add_parser("add-site", help="sites' certificates and keys, and their permissions")
    add.add_argument("directory", metavar="DIR")
    add.add_argument("sites", nargs="+", metavar="SITE", help="one or more sites (the configuration is written once)")
    add.set_defaults(handler=run_add_site)
    operator = commands.add_parser(
        "add-operator", help="an operator's certificate and key: may ask any site's agent to probe"
    )
    operator.add_argument("directory", metavar="DIR")
    operator.add_argument("name", metavar="NAME")
    operator.set_defaults(handler=run_add_operator)
    replica = commands.add_parser(
        "add-analyzer",
        help="an analyzer replica's own certificate and key: only its own consumers and checkpoints",
    )
    replica.add_argument("directory", metavar="DIR")
    replica.add_argument("name", metavar="NAME", help="the replica's name (xnetmon analyzer --replica NAME)")
    replica.set_defaults(handler=run_add_analyzer)


def run_init(args: argparse.Namespace) -> int:
    from collector.bus.subjects import BadSubject, check_partitions
    from xnetmon import bus_setup

    names = tuple(args.names) if args.names else bus_setup.DEFAULT_NAMES
    nodes = tuple(bus_setup.ClusterNode(f"n{i}", host) for i, host in enumerate(args.nodes or (), start=1))
    if args.partitions is not None:
        try:
            check_partitions(args.partitions)
        except BadSubject as exc:
            raise UsageError(f"--partitions: {exc}") from None
    try:
        root = bus_setup.init(args.directory, names, nodes, args.partitions)
    except ValueError as exc:
        raise UsageError(f"--node: {exc}") from None
    partitions = bus_setup.configured_partitions(root)
    if partitions is not None:
        print(
            f"sites' subjects mapped into {partitions} partitions ({root / bus_setup.PARTITIONS_FILE}); analyzers: "
            f"xnetmon analyzer --bus URL --bus-dir {root} --partitions {partitions} --partition I (0 to "
            f"{partitions - 1}), and one with --combiner"
        )
    layout = bus_setup.cluster_nodes(root)
    if not layout:
        print(f"bus PKI in {root}: ca.pem, server.pem, analyzer.pem; server configuration {root / 'nats-server.conf'}")
        print(f"next: xnetmon bus add-site {root} SITE, then nats-server -c {root / 'nats-server.conf'}")
        return 0
    print(f"bus PKI in {root} for a cluster of {len(layout)} servers: ca.pem, analyzer.pem, and per node:")
    for node in layout:
        conf = root / "nodes" / f"{node.name}.conf"
        print(f"  {node.name} on {node.host}: {node.name}.pem, {node.name}-key.pem; nats-server -c {conf}")
    print(f"copy {root} to each node's machine (the same path; keep ca-key.pem off them), then start every node")
    urls = " ".join(bus_setup.server_urls(root))
    print(f"agents (bus.servers) and analyzers (--bus, once each) take every node: {urls}")
    print(f"next: xnetmon bus add-site {root} SITE, then the node configurations go to every node again")
    return 0


def run_add_site(args: argparse.Namespace) -> int:
    from collector.bus.subjects import BadSubject
    from xnetmon import bus_setup

    root = Path(args.directory)
    try:
        certs = bus_setup.add_sites(root, args.sites)
    except (BadSubject, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    for site, cert in zip(args.sites, certs, strict=True):
        print(f"site {site}: {cert} and {cert.with_name(site + '-key.pem')} (give both and ca.pem to the site)")
    configs = [root / "nodes" / f"{n.name}.conf" for n in bus_setup.cluster_nodes(root)] or [root / "nats-server.conf"]
    print(f"server configuration updated: {', '.join(map(str, configs))} (deploy, then reload nats-server)")
    return 0


def run_add_analyzer(args: argparse.Namespace) -> int:
    return _add_client(args, "analyzer", f"analyzer replica {args.name}", f"xnetmon analyzer --replica {args.name}")


def run_add_operator(args: argparse.Namespace) -> int:
    return _add_client(args, "operator", f"operator {args.name}", "xnetmon probe --from")


def _add_client(args: argparse.Namespace, role: str, who: str, used_by: str) -> int:
    """Issue a client identity of `role` (`bus_setup.add_analyzer` or `add_operator`) and say
    where its files went and what uses them."""
    from collector.bus.subjects import BadSubject
    from xnetmon import bus_setup

    add = bus_setup.add_analyzer if role == "analyzer" else bus_setup.add_operator
    try:
        cert = add(args.directory, args.name)
    except (BadSubject, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    print(f"{who}: {cert} and {cert.with_name(args.name + '-key.pem')} (with ca.pem: {used_by})")
    print(f"server configuration updated: {cert.parent.parent / 'nats-server.conf'} (reload nats-server)")
    return 0
