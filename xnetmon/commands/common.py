"""Helpers shared by the sub-commands: argument types, listen addresses, target resolution, key files, units."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from collector.contract.slice_catalog import UnknownSliceError, slice_by_name
from collector.system.listen_address import parse_listen
from collector.wire.stamp import check_key
from xnetmon.errors import UsageError


def milliseconds(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / 1e6:.3f}"


def resolve_target(target: str, *, ipv6_only: bool = False) -> str:
    """An address literal as is, else the name's first IPv6 address (IPv4 if allowed)."""
    try:
        infos = socket.getaddrinfo(target, None, 0, socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve {target!r}: {exc.strerror}") from None
    for family in (socket.AF_INET6, socket.AF_INET):
        if ipv6_only and family != socket.AF_INET6:
            continue
        for info in infos:
            if info[0] == family:
                return str(info[4][0])  # str already for AF_INET and AF_INET6
    raise UsageError(f"{target!r} has no IPv6 address")


def read_key_file(path: str) -> bytes:
    """An HMAC key from a file: its bytes, without a trailing newline."""
    try:
        key = Path(path).read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise UsageError(f"cannot read key file {path}: {exc.strerror}") from None
    if not key:
        raise UsageError(f"key file {path} is empty")
    try:
        check_key(key)
    except ValueError as exc:
        raise UsageError(f"key file {path}: {exc}") from None
    return key


def dscp(value: str) -> int:
    number = int(value, 0)
    if not 0 <= number <= 63:
        raise argparse.ArgumentTypeError(f"DSCP {value} is not in 0..63")
    return number


def positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


def listen_address(value: str, option: str, example: str) -> tuple[str, int]:
    """An option's "[ADDR]:PORT" -> (address, port); a mistake is a usage error naming the option."""
    try:
        return parse_listen(value, example)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def port_number(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a UDP port")
    return number


def add_marking_arguments(parser: argparse.ArgumentParser, what: str, flow_label_help: str) -> None:
    """--slice or --dscp, and --flow-label: how every probe command marks its packets."""
    marking = parser.add_mutually_exclusive_group()
    marking.add_argument("--slice", help=f"slice name (its DSCP marks {what})")
    marking.add_argument("--dscp", type=dscp, help=f"DSCP for {what} (0..63)")
    parser.add_argument("--flow-label", type=lambda v: int(v, 0), help=flow_label_help)


def marking_of(args: argparse.Namespace) -> tuple[str, int]:
    """(slice name, DSCP) from --slice or --dscp ("-" when no slice was named); checks
    --flow-label too. Mistakes are usage errors with one clear line."""
    slice_name, dscp_value = "-", args.dscp or 0
    if args.slice:
        try:
            chosen = slice_by_name(args.slice)
        except UnknownSliceError as exc:
            raise UsageError(str(exc)) from None
        slice_name, dscp_value = chosen.name, chosen.dscp
    if args.flow_label is not None and not 0 < args.flow_label <= 0xFFFFF:
        raise UsageError(f"flow label {args.flow_label} is not in 1..0xFFFFF")
    return slice_name, dscp_value
