"""`xnetmon analyzer`: the central analyzer — agents' shipments in, SLA verdicts and the API out.

Serves the API (analyzer/api/app.py; OpenAPI docs at /docs with `--openapi`) with uvicorn, over
HTTPS with `--tls-cert` and `--tls-key`. With `--token-file` agents may post windows and operators
may ask for probes (`--site-tokens` binds each site's shipments to it); without either the analyzer
is read-only. `--read-token-file` makes every GET need its token too. With `--state-dir` the
store is restored at start and saved every 30 s and at exit, so a restart keeps the verdicts
(status, error budget, since) and the deduplication; the directory is held while the analyzer
runs (collector/system/dir_lock.py), and a second analyzer given it exits with status 2,
naming the holder's pid.
Root-cause hints (GET /hints, on the slices, and xnet_rootcause_hint) are inferred once per
closed interval; `--topology FILE` (the lab's topology format) names traced hop addresses
after their sites, so hints and GET /topology say "prov2>city2a" rather than addresses.
With `--bus URL --bus-dir DIR` it also consumes the NATS JetStream bus (analyzer/bus_intake.py)
with the analyzer certificate of `xnetmon bus init DIR`, as the durable consumer `--replica`:
each replica of a pair has its own name and sees every window; with a certificate of its own
(`xnetmon bus add-analyzer DIR NAME`, used when `--replica NAME` has one) the bus lets it
use only its own durable consumers and checkpoint objects. Its state is then checkpointed
on the bus (analyzer/bus_checkpoint.py, every `--checkpoint-every` seconds) rather than in
`--state-dir`: a restarted replica restores its checkpoint and replays the stream after it.
A partitioned analysis (`xnetmon bus init --partitions P`): `--partition I --partitions P`
judges the paths of partition I's sites only and publishes its slices' partial sums
(analyzer/partials.py) and its root-cause evidence (analyzer/partial_evidence.py; it runs no
engine of its own, so its /hints hold in-situ segment hints only); `--combiner --partitions P`
merges them (analyzer/combiner.py, analyzer/combiner_epochs.py) and answers /slices, /hints
and /metrics for every slice and path as one analyzer would.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from collector.bus.subjects import MAX_PARTITIONS
from collector.system.dir_lock import DirectoryLock, StateDirectoryUnusable, hold_state_directory
from xnetmon.commands.common import listen_address, positive_float
from xnetmon.errors import UsageError

DEFAULT_LISTEN = "[::1]:9863"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analyzer",
        help="run the central analyzer: windows from agents, SLA verdicts, the HTTP API",
        description="Take path windows from agents (POST /v1/windows), judge every slice against its "
        "SLA and serve verdicts, paths and topology over HTTP or HTTPS (docs at /docs with --openapi). Ctrl-C stops.",
    )
    p.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="[ADDR]:PORT",
        help=f"where to serve the API (default {DEFAULT_LISTEN}; [::]:PORT or :PORT for every address)",
    )
    p.add_argument(
        "--token-file",
        metavar="FILE",
        help="bearer token agents and operators must send to write; without it the API is read-only",
    )
    p.add_argument(
        "--site-tokens",
        metavar="FILE|DIR",
        help="per-site bearer tokens ('SITE TOKEN' lines, or one file per site named after it): a site's "
        "shipments are bound to it (another site's paths refused and counted); the --token-file token then "
        "only asks for probes",
    )
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate chain (PEM; needs --tls-key)")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    p.add_argument(
        "--read-token-file",
        metavar="FILE",
        help="bearer token every GET must send (Prometheus: authorization in the scrape config); "
        "without it reads are open",
    )
    p.add_argument("--openapi", action="store_true", help="serve the OpenAPI document and its pages (/docs)")
    p.add_argument("--policies", metavar="FILE", help="SLA policies (YAML; default: the built-in ones)")
    p.add_argument("--state-dir", metavar="DIR", help="keep snapshots here, so a restart is not an outage")
    p.add_argument(
        "--interval",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="the agents' window length (their probing.window_s; default 10)",
    )
    p.add_argument(
        "--topology",
        metavar="FILE",
        help="declared topology (lab topology YAML, or a built-in lab topology's name): names hop "
        "addresses after sites in root-cause hints and GET /topology",
    )
    p.add_argument(
        "--bus",
        action="append",
        metavar="URL",
        help="consume windows from the bus at tls://HOST:PORT (repeatable: every server of a cluster; "
        "three or more make the stream and checkpoints it creates replicated three times)",
    )
    p.add_argument(
        "--bus-dir", metavar="DIR", help="the directory of `xnetmon bus init`: ca.pem, analyzer.pem/-key.pem"
    )
    p.add_argument(
        "--replica",
        default="analyzer",
        metavar="NAME",
        help="this analyzer's durable consumer on the bus (default analyzer; one name per replica)",
    )
    p.add_argument(
        "--stream-sites",
        type=int,
        metavar="N",
        help="with --bus: size the stream this analyzer creates for N sites (its byte limit then holds "
        "--stream-hours of their windows; default: 10 GiB and 24 h, ~60 sites at 10 s windows)",
    )
    p.add_argument(
        "--stream-hours", type=positive_float, default=24.0, metavar="H", help="with --stream-sites: hours kept (24)"
    )
    p.add_argument(
        "--stream-window",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="with --stream-sites: the agents' window length (10, their default)",
    )
    p.add_argument(
        "--probe-operator",
        metavar="NAME",
        help="with --bus: POST /probe asks the named site's agent over the bus as this operator "
        "(--bus-dir/operators/NAME.pem, from `xnetmon bus add-operator`)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_float,
        metavar="SECONDS",
        help="with --bus: save the state to the bus this often (default: analyzer.bus_intake's, 10 s); "
        "a restart replays what came after the last save",
    )
    p.add_argument(
        "--partitions",
        type=int,
        metavar="P",
        help="with --bus: the analysis is split over P partition analyzers (the bus's --partitions)",
    )
    role = p.add_mutually_exclusive_group()
    role.add_argument(
        "--partition",
        type=int,
        metavar="I",
        help="with --partitions: judge partition I's sites (0 to P-1) and publish its slices' partial sums",
    )
    role.add_argument(
        "--combiner",
        action="store_true",
        help="with --partitions: combine the partitions' partial sums into every slice's verdict",
    )
    p.set_defaults(handler=run)


def partition_role(args: argparse.Namespace) -> str:
    """A UsageError unless --partition/--combiner/--partitions fit together; their words."""
    if args.partitions is None:
        if args.partition is not None or args.combiner:
            raise UsageError("--partition and --combiner need --partitions P (the bus's partition count)")
        return ""
    if not args.bus:
        raise UsageError("--partitions is for an analysis over the bus: give --bus and --bus-dir")
    if not 1 <= args.partitions <= MAX_PARTITIONS:
        raise UsageError(f"--partitions: from 1 to {MAX_PARTITIONS}")
    if args.combiner:
        return f"the combiner of {args.partitions} partitions"
    if args.partition is None:
        raise UsageError("--partitions needs a role: --partition I (0 to P-1) or --combiner")
    if not 0 <= args.partition < args.partitions:
        raise UsageError(f"--partition {args.partition}: from 0 to {args.partitions - 1}")
    return f"partition {args.partition} of {args.partitions}"


def read_token(path: str) -> str:
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise UsageError(f"cannot read token file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"token file {path} is not text") from None
    if not token or any(c.isspace() for c in token):
        raise UsageError(f"token file {path} must hold one token without spaces")
    return token


def read_site_tokens(path: str) -> dict[str, str]:
    from analyzer.api.tokens import load_site_tokens

    try:
        return load_site_tokens(path)
    except ValueError as exc:
        raise UsageError(f"--site-tokens: {exc}") from None


def tls_files(cert: str | None, key: str | None):
    """The API's TLS files when both are given; a UsageError when only one is, or they do not fit."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise UsageError("--tls-cert and --tls-key go together")
    from analyzer.service import TlsFiles

    tls = TlsFiles(Path(cert), Path(key))
    try:
        tls.check()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return tls


def writes_words(token: str | None, site_tokens: dict[str, str] | None) -> str:
    if site_tokens:
        probes = "probes need the --token-file token" if token else "no probes (no --token-file)"
        return f"shipments need each site's own token ({len(site_tokens)} sites), {probes}"
    if token:
        return "writes need the shared token (any site may ship any path: --site-tokens binds them)"
    return "read-only (no --token-file or --site-tokens)"


def run(args: argparse.Namespace) -> int:
    host, port = listen_address(args.listen, "--listen", DEFAULT_LISTEN)
    if bool(args.bus) != bool(args.bus_dir):
        raise UsageError("--bus and --bus-dir go together: the servers, and the certificates to reach them")
    if args.bus_dir and not (Path(args.bus_dir) / "analyzer.pem").exists():
        raise UsageError(f"--bus-dir {args.bus_dir} has no analyzer.pem: run `xnetmon bus init {args.bus_dir}`")
    if args.probe_operator and not args.bus_dir:
        raise UsageError("--probe-operator asks agents over the bus: give --bus and --bus-dir too")
    if args.probe_operator and not (Path(args.bus_dir) / "operators" / f"{args.probe_operator}.pem").exists():
        raise UsageError(
            f"--bus-dir {args.bus_dir} has no operator {args.probe_operator!r}: "
            f"run `xnetmon bus add-operator {args.bus_dir} {args.probe_operator}`"
        )
    if args.bus and args.state_dir:
        raise UsageError("--state-dir is for the HTTP intake: with --bus the state is checkpointed on the bus")
    role = partition_role(args)
    token = read_token(args.token_file) if args.token_file else None
    site_tokens = read_site_tokens(args.site_tokens) if args.site_tokens else None
    read_token_value = read_token(args.read_token_file) if args.read_token_file else None
    tls = tls_files(args.tls_cert, args.tls_key)
    # FastAPI, uvicorn and the SLA code load only when the analyzer runs.
    from analyzer.gc_tuning import freeze_restored
    from analyzer.service import AnalyzerService
    from analyzer.sla.verdicts import default_policies, load_policies
    from analyzer.store.memory import PATH_WARM_UP_WINDOWS, SHARED_STALL_INTERVALS
    from collector.system.config_files import ConfigError
    from xnetmon.lab_sites import declared_topology, load_lab_topology, sites_by_address

    try:
        policies = load_policies(args.policies) if args.policies else default_policies()
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot read policies {args.policies}: {exc.strerror}") from None
    try:
        lab_topology = load_lab_topology(args.topology) if args.topology else None
    except ValueError as exc:  # lab.topology.TopologyError names the file and the key
        raise UsageError(f"--topology: {exc}") from None
    state_hold = _hold_state_dir(args.state_dir) if args.state_dir else None
    outbox = evidence = None
    if args.partition is not None:
        from analyzer.partial_evidence import EvidenceOutbox
        from analyzer.partials import PartialsOutbox

        outbox = PartialsOutbox(args.partition, args.partitions)
        evidence = EvidenceOutbox(args.partition, args.partitions, round(args.interval * 1e9))
    try:
        service = AnalyzerService(
            policies,
            (host, port),
            state_dir=args.state_dir or None,
            declared_names=sites_by_address(lab_topology) if lab_topology else None,
            token=token,
            prober=_bus_prober(args),
            api_options={
                "site_tokens": site_tokens,
                "read_token": read_token_value,
                "openapi": args.openapi,
                "declared_topology": declared_topology(lab_topology) if lab_topology else None,
            },
            tls=tls,
            interval_s=args.interval,
            warm_up_windows=PATH_WARM_UP_WINDOWS,
            stall_intervals=SHARED_STALL_INTERVALS,
            slice_closed=outbox,
            diagnose=evidence,
        )
    except ValueError as exc:
        raise UsageError(f"{exc}; move the file away to start with an empty store") from None
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.listen}: {exc.strerror}") from None
    shown = f"[{host}]" if ":" in host else host
    bound_port = service.socket.getsockname()[1]
    print(
        f"xnetmon analyzer: API on {'http' if tls is None else 'https'}://{shown}:{bound_port}"
        f"{' (docs /docs)' if args.openapi else ''}, slices {', '.join(sorted(policies))}; "
        f"{writes_words(token, site_tokens)}{'; reads need the read token' if read_token_value else ''}; "
        f"{'state in ' + args.state_dir if args.state_dir else 'no --state-dir: a restart starts empty'}. "
        "Ctrl-C stops.",
        flush=True,
    )
    freeze_restored()  # this process's one analyzer: what it restored lives as long as the process
    intake = _bus_intake(args, service, outbox, evidence, role)
    try:
        service.serve()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stopped as asked
        pass
    finally:
        if intake is not None:
            intake.stop()
        service.stop()  # with the final snapshot
        if state_hold is not None:
            state_hold.release()
    stats = service.store.stats()
    print(
        f"xnetmon analyzer: stopped; {stats['windows_ingested']} windows taken, "
        f"{stats['windows_duplicate']} duplicates ignored",
        flush=True,
    )
    return 0


def _hold_state_dir(state_dir: str) -> DirectoryLock:
    """The state directory, made if missing, held for as long as this analyzer runs: a second
    analyzer given it is refused before it reads or writes a byte there."""
    try:
        return hold_state_directory(state_dir, "state directory", "each analyzer needs its own --state-dir")
    except StateDirectoryUnusable as exc:
        raise UsageError(str(exc)) from None


def _bus_prober(args: argparse.Namespace):
    if not args.probe_operator:
        return None
    from analyzer.bus_probes import BusProber
    from xnetmon import bus_setup

    return BusProber(bus_setup.operator_endpoint(args.bus_dir, args.probe_operator, tuple(args.bus)))


def _bus_intake(args: argparse.Namespace, service, outbox, evidence, role: str):
    """The bus intake of this analyzer's role: every window, a partition's, or the combiner's
    reports, feeding `service`'s store; a window intake's connection shows on its /metrics."""
    if not args.bus:
        return None
    from analyzer.bus_intake import BusIntake
    from collector.bus.stream import StreamLimits, replicas_for
    from collector.bus.subjects import BadSubject, check_site
    from xnetmon import bus_setup

    durable = bus_setup.replica_durable(args.replica, args.partition, args.combiner)
    try:
        check_site(durable)  # a consumer name is one subject token too
    except BadSubject as exc:
        raise UsageError(f"--replica: {exc}") from None
    endpoint = bus_setup.analyzer_endpoint(args.bus_dir, tuple(args.bus), args.replica)
    every = {} if args.checkpoint_every is None else {"checkpoint_every_s": args.checkpoint_every}
    replicas = replicas_for(len(args.bus))  # the stream and checkpoints, if this analyzer makes them
    if args.stream_sites is None:
        limits = StreamLimits(replicas=replicas)
    elif args.stream_sites < 1:
        raise UsageError(f"--stream-sites {args.stream_sites}: at least 1")
    else:
        limits = StreamLimits.for_sites(args.stream_sites, args.stream_hours, args.stream_window, replicas=replicas)
    if args.combiner:
        from analyzer.combiner import PartialsCombiner
        from analyzer.combiner_epochs import CombinedInference, EpochAssembler
        from analyzer.combiner_intake import CombinerIntake

        combiner = PartialsCombiner(service.store, args.partitions)
        inference = CombinedInference(EpochAssembler(args.partitions, service.store.interval_ns), errors=service.errors)
        service.hints_source = inference.hints
        intake: CombinerIntake | BusIntake = CombinerIntake(combiner, endpoint, durable, inference=inference, **every)
    else:
        intake = BusIntake(
            service.store,
            endpoint,
            durable,
            limits=limits,
            partition=args.partition,
            partials=outbox,
            evidence=evidence,
            **every,
        )
        service.bus_link = intake.link
    shown = f" ({role})" if role else ""
    print(
        f"xnetmon analyzer: consuming the bus at {', '.join(args.bus)} as {durable}{shown}, "
        f"identity {endpoint.identity}",
        flush=True,
    )
    return intake
