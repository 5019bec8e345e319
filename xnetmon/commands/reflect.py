"""`xnetmon reflect`: run a STAMP Session-Reflector until interrupted."""

from __future__ import annotations

import argparse

from collector.reflector.session_reflector import Reflector, ReflectorConfig, ReflectorStats
from collector.reflector.workers import MAX_WORKERS, ReflectorPool
from collector.wire.stamp import STAMP_PORT
from xnetmon.commands.common import dscp, port_number, read_key_file
from xnetmon.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reflect",
        help="answer STAMP test packets (RFC 8762 Session-Reflector)",
        description="Run a STAMP Session-Reflector until Ctrl-C or SIGTERM, then print its counters. "
        "Replies are never larger than requests. Exit status: 0 once stopped, "
        "2 when it cannot start.",
    )
    p.add_argument(
        "--bind", action="append", metavar="ADDRESS", help="address to listen on (repeatable; default :: for IPv6 only)"
    )
    p.add_argument("-p", "--port", type=port_number, default=STAMP_PORT)
    p.add_argument(
        "--stateful",
        action="store_true",
        help="number replies per session, so senders can tell forward from reverse loss",
    )
    p.add_argument(
        "--allow", action="append", metavar="PREFIX", default=[], help="answer only these source prefixes (repeatable)"
    )
    p.add_argument(
        "--rate-limit",
        type=float,
        default=1000.0,
        metavar="PPS",
        help="packets per second answered per source prefix, /64 for IPv6 (0: no limit)",
    )
    p.add_argument(
        "--global-rate-limit",
        type=float,
        default=20_000.0,
        metavar="PPS",
        help="packets per second answered from all sources together (0: no limit)",
    )
    p.add_argument("--auth-key-file", help="authenticated mode: file holding the HMAC key")
    p.add_argument(
        "--permit-dscp",
        type=dscp,
        action="append",
        metavar="DSCP",
        help="DSCPs a sender may ask for in replies (repeatable; default: any)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="reflector processes sharing the port with SO_REUSEPORT, one per core to use (default 1); "
        "a sender's requests all reach one of them, rate limits are split evenly",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = ReflectorConfig(
            bind=tuple(args.bind or ("::",)),
            port=args.port,
            stateful=args.stateful,
            allow=tuple(args.allow),
            rate_limit_pps=args.rate_limit,
            global_rate_limit_pps=args.global_rate_limit,
            auth_key=read_key_file(args.auth_key_file) if args.auth_key_file else None,
            permitted_dscp=frozenset(args.permit_dscp) if args.permit_dscp else None,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not 1 <= args.workers <= MAX_WORKERS:
        raise UsageError(f"--workers: expected 1..{MAX_WORKERS}, got {args.workers}")
    reflector: Reflector | ReflectorPool
    reflector = Reflector(config) if args.workers == 1 else ReflectorPool(config, args.workers)
    try:
        reflector.start()
    except OSError as exc:
        raise UsageError(f"cannot listen on port {args.port}: {exc.strerror or exc}") from None
    try:
        # From the banner on, a stop (Ctrl-C, SIGTERM), whenever it comes, ends with the summary.
        print(describe_banner(config, reflector.addresses, args.workers), flush=True)
        reflector.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        reflector.stop()  # returns once the serving thread has counted every reply it sent
        print(describe_stats(reflector.stats))
    return 0


def describe_banner(config: ReflectorConfig, addresses: list[tuple], workers: int = 1) -> str:
    mode = "stateful" if config.stateful else "stateless"
    auth = ", authenticated" if config.auth_key else ""
    processes = f", {workers} workers" if workers > 1 else ""
    where = ", ".join(f"[{a[0]}]:{a[1]}" for a in addresses)
    return f"STAMP reflector ({mode}{auth}{processes}) listening on {where}"


def describe_stats(stats: ReflectorStats) -> str:
    malformed = sum(stats.malformed.values())
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(stats.malformed.items()))
    return (
        f"{stats.received} received, {stats.reflected} reflected, {malformed} malformed"
        + (f" ({kinds})" if kinds else "")
        + f", refused: {stats.refused_not_allowed} not allowed, {stats.refused_rate_limited} over rate"
        + (f", {stats.refused_global_rate_limited} over global rate" if stats.refused_global_rate_limited else "")
        + (f", {stats.refused_replay} replayed" if stats.refused_replay else "")
        + (f", {stats.refused_stale} stale" if stats.refused_stale else "")
    )
