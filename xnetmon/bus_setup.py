"""The bus's PKI and server configuration, as `xnetmon bus init` and `xnetmon bus add-site`
write them into one directory an operator deploys by hand or with configuration management:

    ca.pem             0644  the CA every party trusts (self-signed)
    ca-key.pem         0600  signs the others; keep it off the servers
    server.pem/-key    0644/0600  nats-server's identity (names given at init)
    analyzer.pem/-key  0644/0600  the analyzers' identity: subscribe, consumer API, acks,
                                 checkpoints (object store XNET_ANALYZERS)
    sites/SITE.pem/-key.pem      one per site: publish on its own subjects only, read its
                                 own probe requests, answer on probe reply subjects
    operators/NAME.pem/-key.pem  one per operator: ask any site to probe, read the replies
                                 to its own requests (collector/bus/probe_requests.py)
    nats-server.conf   0600  TLS with client certificates mapped to users (verify_and_map:
                             the certificate's subject is the user), per-user permissions,
                             JetStream with its store directory
    partitions.json    0644  only for a partitioned analysis (`init(partitions=P)`, `xnetmon
                             bus init --partitions P`): P, so that every configuration written
                             later (add-site, add-operator) keeps the sites' mapping into the
                             P partitions

A three-server cluster (`init(nodes=...)`, `xnetmon bus init --node HOST` three times)
replaces server.pem and nats-server.conf with one set per node, each deployed on its machine:

    cluster.json          0644  the nodes: name, host, client, route and monitoring ports
    nodes/NODE.pem/-key   0644/0600  the node's identity, valid for its host: the server
                                 side to clients, and both sides of the routes between nodes
    nodes/NODE.conf       0600  as nats-server.conf, plus its server_name and a `cluster {}`
                                block: routes to the other nodes over TLS, where only a node's
                                certificate (ROUTE_USER) is accepted

Everything is re-runnable: what exists is kept (a site's key is not replaced, the CA is
not re-made), and the server configuration is written again from the sites present.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from analyzer.bus_checkpoint import CHECKPOINT_SUBJECTS, checkpoint_subjects
from analyzer.partials import PARTIALS_PERMISSIONS, partials_permissions
from collector.bus.connection import BusEndpoint, inbox_prefix, operator_identity, site_identity
from collector.bus.probe_requests import REPLY_ROOT, REQUEST_SUBJECTS, reply_subjects, request_subject
from collector.bus.stream import reader_subjects
from collector.bus.subjects import check_partitions, check_site, partition_mapping, site_subjects

ANALYZER = "analyzer"
VALID_DAYS = 825  # what clients accept for leaf certificates
CA_VALID_DAYS = 3650
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


CLUSTER_NAME = "xnet"
CLUSTER_FILE = "cluster.json"
PARTITIONS_FILE = "partitions.json"
MIN_CLUSTER_NODES = 3  # JetStream's meta group and an R3 stream keep a quorum with one node down


@dataclass(frozen=True, slots=True)
class ServerPorts:
    listen_host: str = "0.0.0.0"
    port: int = 4222
    monitor_host: str = "127.0.0.1"
    monitor_port: int = 8222


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """One server of a JetStream cluster: `name` is its server_name and names its files
    under nodes/; `host` is what clients and the other nodes reach it by (in its certificate)."""

    name: str
    host: str
    ports: ServerPorts = ServerPorts()
    cluster_port: int = 6222

    @property
    def url(self) -> str:
        return f"tls://{_host_port(self.host, self.ports.port)}"

    @property
    def route_url(self) -> str:
        return f"nats-route://{_host_port(self.host, self.cluster_port)}"


def user_of(identity: str) -> str:
    """The user nats-server maps a certificate to: its subject (RFC 2253)."""
    return f"CN=xnet-{identity}"


# Every node's certificate carries this subject; the routes accept no other, so a site's or
# an analyzer's certificate (the same CA) cannot join the cluster as a server.
SERVER_IDENTITY = "bus-server"
ROUTE_USER = user_of(SERVER_IDENTITY)


def init(
    directory: str | Path,
    names: tuple[str, ...] = DEFAULT_NAMES,
    nodes: tuple[ClusterNode, ...] = (),
    partitions: int | None = None,
) -> Path:
    """The CA, the server's and the analyzers' certificates, and the server configuration;
    with `nodes`, a cluster: one certificate and configuration per node instead of the server's;
    with `partitions`, the sites' subjects mapped into that many partitions (kept by later
    runs that do not name it). Raises ValueError (nothing written) for a bad cluster or count."""
    root = Path(directory)
    if nodes:
        _check_cluster(nodes)
    if partitions is not None:
        check_partitions(partitions)
    root.mkdir(parents=True, exist_ok=True)
    (root / "sites").mkdir(exist_ok=True)
    if not (root / "ca.pem").exists():
        key = _new_key(root / "ca-key.pem")
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xnetmon bus CA")])
        cert = (
            _builder(name, name, key.public_key(), CA_VALID_DAYS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(*_usage(cert_sign=True)), critical=True)
            .sign(key, hashes.SHA256())
        )
        _write(root / "ca.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    if nodes:
        _write(root / CLUSTER_FILE, json.dumps([asdict(n) for n in nodes], indent=2).encode() + b"\n", 0o644)
    if partitions is not None:
        _write(root / PARTITIONS_FILE, json.dumps({"partitions": partitions}).encode() + b"\n", 0o644)
    layout = cluster_nodes(root)
    if layout:
        (root / "nodes").mkdir(exist_ok=True)
        for node in layout:
            if not (root / "nodes" / f"{node.name}.pem").exists():
                usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]  # routes dial out too
                _issue(root, root / "nodes" / node.name, f"xnet-{SERVER_IDENTITY}", usage, _sans((node.host, *names)))
    elif not (root / "server.pem").exists():
        _issue(root, root / "server", f"xnet-{SERVER_IDENTITY}", [ExtendedKeyUsageOID.SERVER_AUTH], _sans(names))
    if not (root / f"{ANALYZER}.pem").exists():
        _issue(root, root / ANALYZER, f"xnet-{ANALYZER}", [ExtendedKeyUsageOID.CLIENT_AUTH], [])
    write_server_config(root)
    return root


def cluster_nodes(directory: str | Path) -> tuple[ClusterNode, ...]:
    """The cluster's nodes as `init` wrote them; () for a single server."""
    path = Path(directory) / CLUSTER_FILE
    if not path.exists():
        return ()
    return tuple(
        ClusterNode(n["name"], n["host"], ServerPorts(**n["ports"]), n["cluster_port"])
        for n in json.loads(path.read_text())
    )


def configured_partitions(directory: str | Path) -> int | None:
    """The partition count `init` was given for the directory; None: not partitioned."""
    path = Path(directory) / PARTITIONS_FILE
    if not path.exists():
        return None
    return check_partitions(int(json.loads(path.read_text())["partitions"]))


def server_urls(directory: str | Path) -> tuple[str, ...]:
    """What agents and analyzers are given: every node of a cluster (the client moves to
    another when its server goes), () for a single server, whose address the operator knows."""
    return tuple(node.url for node in cluster_nodes(directory))


def _check_cluster(nodes: tuple[ClusterNode, ...]) -> None:
    if len(nodes) < MIN_CLUSTER_NODES:
        raise ValueError(
            f"a cluster needs at least {MIN_CLUSTER_NODES} nodes (one down keeps a quorum), got {len(nodes)}"
        )
    for label, values in (("name", [n.name for n in nodes]), ("host and port", [n.url for n in nodes])):
        if len(set(values)) != len(values):
            raise ValueError(f"two cluster nodes share a {label}: {', '.join(values)}")
    for node in nodes:
        check_site(node.name)  # one token: a file name and a server_name


def _sans(names: tuple[str, ...]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = []
    for n in dict.fromkeys(names):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    return sans


def add_site(directory: str | Path, site: str) -> Path:
    """The site's certificate and key (kept when present) and its permission entry."""
    return add_sites(directory, (site,))[0]


def add_sites(directory: str | Path, names: Iterable[str]) -> list[Path]:
    """`add_site` for many sites, the server configuration written once (thousands of sites:
    every name checked before any file is written)."""
    root = Path(directory)
    if not (root / "ca.pem").exists():
        raise FileNotFoundError(f"{root} has no CA: run `xnetmon bus init {root}` first")
    bases = [root / "sites" / check_site(site) for site in names]
    for base in bases:
        if not base.with_suffix(".pem").exists():
            _issue(root, base, f"xnet-{site_identity(base.name)}", [ExtendedKeyUsageOID.CLIENT_AUTH], [])
    write_server_config(root)
    return [base.with_suffix(".pem") for base in bases]


def add_operator(directory: str | Path, name: str) -> Path:
    """An operator's certificate and key (kept when present) and its permission entry: it may
    publish probe requests to any site and read the replies to its own."""
    return _add_client(Path(directory), "operators", name, operator_identity(name))


def add_analyzer(directory: str | Path, name: str) -> Path:
    """An analyzer replica's own certificate and key (kept when present) and its permission
    entry: its durable consumers (`replica_durables`) and their checkpoint objects only."""
    return _add_client(Path(directory), "analyzers", name, replica_identity(name))


def _add_client(root: Path, folder: str, name: str, identity: str) -> Path:
    """A client certificate and key for `name` under `root/folder` (kept when present), issued
    to CN=xnet-IDENTITY, and the server configuration written again with its permission."""
    if not (root / "ca.pem").exists():
        raise FileNotFoundError(f"{root} has no CA: run `xnetmon bus init {root}` first")
    (root / folder).mkdir(exist_ok=True)
    base = root / folder / check_site(name)
    if not base.with_suffix(".pem").exists():
        _issue(root, base, f"xnet-{identity}", [ExtendedKeyUsageOID.CLIENT_AUTH], [])
    write_server_config(root)
    return base.with_suffix(".pem")


def replica_identity(name: str) -> str:
    return f"{ANALYZER}-{name}"


def replica_durable(replica: str, partition: int | None = None, combiner: bool = False) -> str:
    """The durable consumer (and checkpoint object) of `replica` in its role: the name itself,
    `NAME-pI` for partition I, `NAME-combiner`: partitions share the stream and checkpoints
    one bucket, so each role's replicas need names of their own."""
    if combiner:
        return f"{replica}-combiner"
    return replica if partition is None else f"{replica}-p{partition}"


def replica_durables(replica: str, partitions: int | None) -> tuple[str, ...]:
    """Every durable `replica` may use: each role of a partitioned analysis of `partitions`."""
    roles = [replica_durable(replica)]
    if partitions:
        roles += [replica_durable(replica, combiner=True), *(replica_durable(replica, i) for i in range(partitions))]
    return tuple(roles)


def replica_permissions(replica: str, partitions: int | None) -> list[str]:
    """What a replica with its own identity publishes: `reader_subjects`,
    `partials_permissions` and `checkpoint_subjects` narrowed to its own durables."""
    durables = replica_durables(replica, partitions)
    subjects = [subject for durable in durables for subject in reader_subjects(durable)]
    if partitions:
        subjects += partials_permissions(replica_durable(replica, combiner=True))
    subjects += checkpoint_subjects(durables)
    return list(dict.fromkeys(subjects))


def analyzers(directory: str | Path) -> list[str]:
    return _names(Path(directory) / "analyzers")


def sites(directory: str | Path) -> list[str]:
    return _names(Path(directory) / "sites")


def operators(directory: str | Path) -> list[str]:
    return _names(Path(directory) / "operators")


def _names(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.pem") if not p.stem.endswith("-key"))


def site_endpoint(directory: str | Path, site: str, servers: tuple[str, ...]) -> BusEndpoint:
    root = Path(directory)
    return BusEndpoint(
        servers,
        site_identity(site),
        ca_file=root / "ca.pem",
        cert_file=root / "sites" / f"{site}.pem",
        key_file=root / "sites" / f"{site}-key.pem",
    )


def operator_endpoint(directory: str | Path, name: str, servers: tuple[str, ...]) -> BusEndpoint:
    root = Path(directory)
    return BusEndpoint(
        servers,
        operator_identity(name),
        ca_file=root / "ca.pem",
        cert_file=root / "operators" / f"{name}.pem",
        key_file=root / "operators" / f"{name}-key.pem",
    )


def analyzer_endpoint(directory: str | Path, servers: tuple[str, ...], replica: str | None = None) -> BusEndpoint:
    """`replica`'s own identity when `add_analyzer` made one, else the one every analyzer
    replica shares (each with its own durable consumer)."""
    root = Path(directory)
    if replica is not None and (root / "analyzers" / f"{replica}.pem").exists():
        return BusEndpoint(
            servers,
            replica_identity(replica),
            ca_file=root / "ca.pem",
            cert_file=root / "analyzers" / f"{replica}.pem",
            key_file=root / "analyzers" / f"{replica}-key.pem",
        )
    return BusEndpoint(
        servers,
        ANALYZER,
        ca_file=root / "ca.pem",
        cert_file=root / f"{ANALYZER}.pem",
        key_file=root / f"{ANALYZER}-key.pem",
    )


MAX_PAYLOAD = 8 << 20  # a message's bytes at most (the default 1 MB is near a partition's epoch)


def server_config(
    directory: str | Path,
    ports: ServerPorts | None = None,
    store_dir: str | Path | None = None,
    partitions: int | None = None,
    node: str | None = None,
) -> str:
    """nats-server's configuration (its format takes JSON values); `partitions`: the sites'
    subjects mapped into that many partitions (collector.bus.subjects.partition_mapping; by
    default the directory's, `configured_partitions`); `node`: the configuration of that node
    of the directory's cluster (its ports by default)."""
    root = Path(directory).resolve()
    if partitions is None:
        partitions = configured_partitions(root)
    me = None
    if node is not None:
        layout = cluster_nodes(root)
        me = next((n for n in layout if n.name == node), None)
        if me is None:
            raise ValueError(f"{root} has no cluster node {node!r}: its nodes are {[n.name for n in layout]}")
    ports = ports or (me.ports if me is not None else ServerPorts())
    cert_base = root / "nodes" / me.name if me is not None else root / "server"
    tls = {
        "cert_file": f"{cert_base}.pem",
        "key_file": f"{cert_base}-key.pem",
        "ca_file": str(root / "ca.pem"),
        "verify_and_map": True,
        "timeout": 5,
    }
    users = [
        {
            "user": user_of(ANALYZER),
            "permissions": {
                # its consumers on the stream (create, info, delete, pulls, acks), the stream's
                # creation and info, and the replicas' checkpoints in their object store
                # bucket, the partitions' reports to their combiner: nothing else, so not a
                # stream's deletion nor a window's publication
                "publish": {"allow": [*reader_subjects(), *CHECKPOINT_SUBJECTS, *PARTIALS_PERMISSIONS]},
                "subscribe": {"allow": [inbox_prefix(ANALYZER) + ".>"]},
            },
        }
    ]
    for replica in analyzers(root):
        identity = replica_identity(replica)
        users.append(
            {
                "user": user_of(identity),
                "permissions": {
                    "publish": {"allow": replica_permissions(replica, partitions)},
                    "subscribe": {"allow": [inbox_prefix(identity) + ".>"]},
                },
            }
        )
    for site in sites(root):
        users.append(
            {
                "user": user_of(site_identity(site)),
                "permissions": {
                    # its own subjects, and answers to probe requests (never a JetStream inbox)
                    "publish": {"allow": [*site_subjects(site, partitioned=bool(partitions)), f"{REPLY_ROOT}.*.*"]},
                    # its acks, and the probe requests addressed to it alone
                    "subscribe": {"allow": [inbox_prefix(site_identity(site)) + ".>", request_subject(site)]},
                },
            }
        )
    for name in operators(root):
        identity = operator_identity(name)
        users.append(
            {
                "user": user_of(identity),
                "permissions": {
                    "publish": {"allow": [REQUEST_SUBJECTS]},
                    "subscribe": {"allow": [reply_subjects(identity), inbox_prefix(identity) + ".>"]},
                },
            }
        )
    store = Path(store_dir) if store_dir is not None else root / "jetstream"
    cluster = []
    if me is not None:
        cluster = [
            f"server_name: {json.dumps(me.name)}",
            "cluster: "
            + json.dumps(
                {
                    "name": CLUSTER_NAME,
                    "listen": _host_port(ports.listen_host, me.cluster_port),
                    "routes": [n.route_url for n in cluster_nodes(root) if n.name != me.name],
                    "tls": tls,  # a route's certificate maps to its user: only ROUTE_USER's
                    "authorization": {"user": ROUTE_USER},
                },
                indent=2,
            ),
        ]
    return "\n".join(
        [
            *cluster,
            f"listen: {json.dumps(_host_port(ports.listen_host, ports.port))}",
            f"http: {json.dumps(_host_port(ports.monitor_host, ports.monitor_port))}",
            # a partition's root-cause epoch (analyzer.partial_evidence) is ~0.8 MB at national
            # scale, near the default 1 MB; the streams' largest message is 8 MiB
            f"max_payload: {MAX_PAYLOAD}",
            f"jetstream: {{store_dir: {json.dumps(str(store))}}}",
            "tls: " + json.dumps(tls),
            "authorization: " + json.dumps({"users": users}, indent=2),
            *([f"mappings: {json.dumps(partition_mapping(partitions))}"] if partitions else []),
            "",
        ]
    )


def write_server_config(directory: str | Path) -> list[Path]:
    """nats-server.conf, or each cluster node's nodes/NODE.conf."""
    root = Path(directory)
    single: list[tuple[Path, str | None]] = [(root / "nats-server.conf", None)]
    targets = [(root / "nodes" / f"{n.name}.conf", n.name) for n in cluster_nodes(root)] or single
    for path, node in targets:
        _write(path, server_config(root, node=node).encode(), 0o600)
    return [path for path, _ in targets]


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _issue(root: Path, base: Path, common_name: str, usage: list, sans: list[x509.GeneralName]) -> None:
    ca_key = serialization.load_pem_private_key((root / "ca-key.pem").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((root / "ca.pem").read_bytes())
    key = _new_key(base.parent / f"{base.name}-key.pem")
    builder = (
        _builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), ca.subject, key.public_key(), VALID_DAYS
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(*_usage(signature=True)), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    _write(base.parent / f"{base.name}.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _builder(subject: x509.Name, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _usage(*, signature: bool = False, cert_sign: bool = False) -> tuple[bool, ...]:
    # digital_signature, content_commitment, key_encipherment, data_encipherment, key_agreement,
    # key_cert_sign, crl_sign, encipher_only, decipher_only
    return (signature, False, False, False, False, cert_sign, cert_sign, False, False)


def _new_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write(path, pem, 0o600)
    return key


def _write(path: Path, data: bytes, mode: int) -> None:
    """Created with its mode, so a key is never readable by others, not even for an instant."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
