"""The bus's PKI and server configuration, as `xnetmon bus init` and `xnetmon bus add-site`
write them into one directory an operator deploys by hand or with configuration management:

    ca.pem             0644  the CA every party trusts (self-signed)
    ca-key.pem         0600  signs the others; keep it off the servers
    server.pem/-key    0644/0600  nats-server's identity (names given at init)
    analyzer.pem/-key  0644/0600  the analyzers' identity: subscribe, consumer API, acks,
                                 checkpoints (object store XNET_ANALYZERS)
    sites/SITE.pem/-key.pem      one per site: publish on its own subjects only
    nats-server.conf   0600  TLS with client certificates mapped to users (verify_and_map:
                             the certificate's subject is the user), per-user permissions,
                             JetStream with its store directory

Everything is re-runnable: what exists is kept (a site's key is not replaced, the CA is
not re-made), and the server configuration is written again from the sites present.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from analyzer.bus_checkpoint import CHECKPOINT_SUBJECTS
from analyzer.partials import PARTIALS_SUBJECTS
from collector.bus.connection import BusEndpoint, inbox_prefix, site_identity
from collector.bus.subjects import check_site, partition_mapping, site_subjects

ANALYZER = "analyzer"
VALID_DAYS = 825  # what clients accept for leaf certificates
CA_VALID_DAYS = 3650
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class ServerPorts:
    listen_host: str = "0.0.0.0"
    port: int = 4222
    monitor_host: str = "127.0.0.1"
    monitor_port: int = 8222


def user_of(identity: str) -> str:
    """The user nats-server maps a certificate to: its subject (RFC 2253)."""
    return f"CN=xnet-{identity}"


def init(directory: str | Path, names: tuple[str, ...] = DEFAULT_NAMES) -> Path:
    """The CA, the server's and the analyzers' certificates, and the server configuration."""
    root = Path(directory)
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
    if not (root / "server.pem").exists():
        sans: list[x509.GeneralName] = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        _issue(root, root / "server", "xnet-bus-server", ExtendedKeyUsageOID.SERVER_AUTH, sans)
    if not (root / f"{ANALYZER}.pem").exists():
        _issue(root, root / ANALYZER, f"xnet-{ANALYZER}", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    write_server_config(root)
    return root


def add_site(directory: str | Path, site: str) -> Path:
    """The site's certificate and key (kept when present) and its permission entry."""
    root = Path(directory)
    if not (root / "ca.pem").exists():
        raise FileNotFoundError(f"{root} has no CA: run `xnetmon bus init {root}` first")
    base = root / "sites" / check_site(site)
    if not base.with_suffix(".pem").exists():
        _issue(root, base, f"xnet-{site_identity(site)}", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    write_server_config(root)
    return base.with_suffix(".pem")


def sites(directory: str | Path) -> list[str]:
    return sorted(p.stem for p in (Path(directory) / "sites").glob("*.pem") if not p.stem.endswith("-key"))


def site_endpoint(directory: str | Path, site: str, servers: tuple[str, ...]) -> BusEndpoint:
    root = Path(directory)
    return BusEndpoint(
        servers,
        site_identity(site),
        ca_file=root / "ca.pem",
        cert_file=root / "sites" / f"{site}.pem",
        key_file=root / "sites" / f"{site}-key.pem",
    )


def analyzer_endpoint(directory: str | Path, servers: tuple[str, ...]) -> BusEndpoint:
    """Every analyzer replica shares this identity; each has its own durable consumer."""
    root = Path(directory)
    return BusEndpoint(
        servers,
        ANALYZER,
        ca_file=root / "ca.pem",
        cert_file=root / f"{ANALYZER}.pem",
        key_file=root / f"{ANALYZER}-key.pem",
    )


def server_config(
    directory: str | Path,
    ports: ServerPorts = ServerPorts(),
    store_dir: str | Path | None = None,
    partitions: int | None = None,
) -> str:
    """nats-server's configuration (its format takes JSON values); `partitions`: the sites'
    subjects mapped into that many partitions (collector.bus.subjects.partition_mapping)."""
    root = Path(directory).resolve()
    users = [
        {
            "user": user_of(ANALYZER),
            "permissions": {
                # the consumer API (stream and consumer creation, fetch), acks, and the
                # replicas' checkpoints in their object store bucket, the partitions' reports
                # to their combiner, nothing else
                "publish": {"allow": ["$JS.API.>", "$JS.ACK.>", *CHECKPOINT_SUBJECTS, *PARTIALS_SUBJECTS]},
                "subscribe": {"allow": [inbox_prefix(ANALYZER) + ".>"]},
            },
        }
    ]
    for site in sites(root):
        users.append(
            {
                "user": user_of(site_identity(site)),
                "permissions": {
                    "publish": {"allow": list(site_subjects(site, partitioned=bool(partitions)))},
                    "subscribe": {"allow": [inbox_prefix(site_identity(site)) + ".>"]},
                },
            }
        )
    store = Path(store_dir) if store_dir is not None else root / "jetstream"
    return "\n".join(
        [
            f"listen: {json.dumps(_host_port(ports.listen_host, ports.port))}",
            f"http: {json.dumps(_host_port(ports.monitor_host, ports.monitor_port))}",
            f"jetstream: {{store_dir: {json.dumps(str(store))}}}",
            "tls: "
            + json.dumps(
                {
                    "cert_file": str(root / "server.pem"),
                    "key_file": str(root / "server-key.pem"),
                    "ca_file": str(root / "ca.pem"),
                    "verify_and_map": True,
                    "timeout": 5,
                }
            ),
            "authorization: " + json.dumps({"users": users}, indent=2),
            *([f"mappings: {json.dumps(partition_mapping(partitions))}"] if partitions else []),
            "",
        ]
    )


def write_server_config(directory: str | Path, ports: ServerPorts = ServerPorts()) -> Path:
    path = Path(directory) / "nats-server.conf"
    _write(path, server_config(directory, ports).encode(), 0o600)
    return path


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _issue(root: Path, base: Path, common_name: str, usage, sans: list[x509.GeneralName]) -> None:
    ca_key = serialization.load_pem_private_key((root / "ca-key.pem").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((root / "ca.pem").read_bytes())
    key = _new_key(base.parent / f"{base.name}-key.pem")
    builder = (
        _builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), ca.subject, key.public_key(), VALID_DAYS
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(*_usage(signature=True)), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
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
