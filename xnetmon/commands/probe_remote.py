"""`xnetmon probe KIND TARGET --from SITE`: the same probe, run by SITE's agent over the bus.

The agent runs the local command with the options given here and sends back every line it
prints; they are printed here as they come (stdout and stderr as there), and the exit status
is the command's. Ctrl-C (or SIGTERM) asks the agent to stop the probe as Ctrl-C stops the
local one, and its summary still prints; a second Ctrl-C leaves at once. The operator's
identity: `--bus-dir DIR` as `xnetmon bus init` wrote it with `--operator NAME` (default:
DIR's only operator), or the files themselves (`--ca-file`, `--cert-file`, `--key-file`).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from collector.bus.connection import BusEndpoint, bus_event_loop, operator_identity
from collector.bus.probe_client import NoAnswer, RemoteProbe, new_request_id
from collector.bus.probe_requests import (
    ARGPARSE_DEST,
    KIND_OPTIONS,
    BadProbeMessage,
    End,
    Line,
    ProbeStart,
    Refused,
)
from xnetmon.errors import UsageError

DEFAULT_BUS = "tls://localhost:4222"
NOT_REMOTE = ("source", "auth_key_file")  # name the agent's files or addresses: not asked from afar
EXIT_NO_ANSWER = 1


def add_remote_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("from a site's agent, over the bus")
    group.add_argument("--from", dest="from_site", metavar="SITE", help="run the probe at SITE's agent")
    group.add_argument("--bus", action="append", metavar="URL", help=f"bus server (repeatable; default {DEFAULT_BUS})")
    group.add_argument("--bus-dir", metavar="DIR", help="the bus's directory (xnetmon bus init): ca.pem, operators/")
    group.add_argument("--operator", metavar="NAME", help="operator identity in --bus-dir (default: its only one)")
    group.add_argument("--ca-file", help="instead of --bus-dir: the bus's CA")
    group.add_argument("--cert-file", help="instead of --bus-dir: the operator's certificate")
    group.add_argument("--key-file", help="instead of --bus-dir: the operator's key")


def local_or_remote(kind: str, local: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    @functools.wraps(local)  # still the kind's own command, which also runs afar
    def handler(args: argparse.Namespace) -> int:
        return run_remote(kind, args) if args.from_site else local(args)

    return handler


def request_of(kind: str, args: argparse.Namespace) -> ProbeStart:
    """The request standing for the parsed options of `xnetmon probe KIND`."""
    for name in NOT_REMOTE:
        if getattr(args, name, None):
            raise UsageError(f"--{name.replace('_', '-')} names something on this host: not with --from")
    fields = {name: getattr(args, ARGPARSE_DEST.get(name, name), None) for name in KIND_OPTIONS[kind]}
    try:
        return ProbeStart(id=new_request_id(), kind=kind, target=args.target, **fields).check_kind()
    except (ValueError, BadProbeMessage) as exc:
        raise UsageError(f"cannot ask {args.from_site}: {exc}") from None


def endpoint_of(args: argparse.Namespace) -> BusEndpoint:
    servers = tuple(args.bus or (DEFAULT_BUS,))
    if args.bus_dir:
        root = Path(args.bus_dir)
        operators = sorted(p.stem for p in (root / "operators").glob("*.pem") if not p.stem.endswith("-key"))
        name = args.operator or (operators[0] if len(operators) == 1 else None)
        if name is None:
            raise UsageError(
                f"{root}/operators holds {', '.join(operators) or 'no operator'}: name one with --operator "
                "(xnetmon bus add-operator makes one)"
            )
        ca, cert, key = root / "ca.pem", root / "operators" / f"{name}.pem", root / "operators" / f"{name}-key.pem"
    elif args.ca_file and args.cert_file and args.key_file:
        name = args.operator or _common_name(Path(args.cert_file))
        ca, cert, key = Path(args.ca_file), Path(args.cert_file), Path(args.key_file)
    else:
        raise UsageError(
            "--from needs the operator's identity: --bus-dir DIR, or --ca-file, --cert-file and --key-file"
        )
    for path in (ca, cert, key):
        if not path.is_file():
            raise UsageError(f"cannot read {path}")
    return BusEndpoint(servers, operator_identity(name), ca_file=ca, cert_file=cert, key_file=key)


def _common_name(cert: Path) -> str:
    """The operator's name in its certificate (CN=xnet-operator-NAME)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        names = x509.load_pem_x509_certificate(cert.read_bytes()).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read certificate {cert}: {exc}") from None
    prefix = "xnet-" + operator_identity("")
    common = str(names[0].value) if names else ""
    if not common.startswith(prefix):
        raise UsageError(f"{cert} is not an operator's certificate (its name is {common!r})")
    return common[len(prefix) :]


def run_remote(kind: str, args: argparse.Namespace) -> int:
    request = request_of(kind, args)
    endpoint = endpoint_of(args)
    with asyncio.Runner(loop_factory=bus_event_loop) as runner:
        return runner.run(_ask(endpoint, args.from_site, request))


async def _ask(endpoint: BusEndpoint, site: str, request: ProbeStart) -> int:
    import nats

    errors: list[str] = []

    async def record(exc: Exception) -> None:
        errors.append(f"{exc}")

    options = endpoint.connect_options() | {"allow_reconnect": False, "max_reconnect_attempts": 0, "error_cb": record}
    try:
        client = await nats.connect(**options)
    except Exception as exc:
        raise UsageError(f"cannot reach the bus at {', '.join(endpoint.servers)}: {exc}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _on_interrupt, stop)
    try:
        async with RemoteProbe(client, endpoint.identity, site, request, errors=errors) as probe:
            cancelled = asyncio.create_task(_cancel_when(stop, probe))
            try:
                async for reply in probe.replies():
                    if isinstance(reply, Line):
                        out = sys.stdout if reply.stream == "stdout" else sys.stderr
                        print(reply.text, end=reply.end, file=out, flush=True)
                    elif isinstance(reply, Refused):
                        raise UsageError(f"{site} refused: {reply.reason}")
                    elif isinstance(reply, End):
                        return reply.exit_code
            finally:
                cancelled.cancel()
    except NoAnswer as exc:
        print(f"xnetmon probe: {exc}", file=sys.stderr)
        return EXIT_NO_ANSWER
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await client.close()
    return EXIT_NO_ANSWER  # replies() ends only after End or Refused


def _on_interrupt(stop: asyncio.Event) -> None:
    if stop.is_set():
        raise KeyboardInterrupt  # the second Ctrl-C: leave now
    stop.set()


async def _cancel_when(stop: asyncio.Event, probe: RemoteProbe) -> None:
    await stop.wait()
    await probe.cancel()
