"""The sub-commands' shared argument types and helpers: each accepts what it should and turns
a mistake into one clear line."""

from __future__ import annotations

import argparse

import pytest

from xnetmon.cli import UsageError
from xnetmon.commands.common import (
    add_marking_arguments,
    dscp,
    marking_of,
    milliseconds,
    port_number,
    positive_float,
    read_key_file,
    resolve_target,
)


def marking(*argv: str) -> tuple[str, int]:
    parser = argparse.ArgumentParser()
    add_marking_arguments(parser, "requests", "flow label")
    return marking_of(parser.parse_args(list(argv)))


def test_number_types_take_their_range_and_refuse_the_rest():
    assert (dscp("0x22"), dscp("63"), port_number("0"), port_number("65535"), positive_float("0.5")) == (
        34,
        63,
        0,
        65535,
        0.5,
    )
    for parse, bad in ((dscp, "64"), (port_number, "65536"), (positive_float, "0"), (positive_float, "-1")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)


def test_a_slice_gives_its_name_and_dscp_and_a_bare_dscp_no_slice():
    assert marking("--slice", "egov") == ("egov", 26)
    assert marking("--dscp", "46") == ("-", 46)
    assert marking() == ("-", 0)
    assert marking("--flow-label", "0xFFFFF") == ("-", 0)


@pytest.mark.parametrize(
    "argv, error",
    [
        (["--slice", "vidoe"], "unknown slice 'vidoe' (known slices: video, egov, data, best-effort)"),
        (["--flow-label", "0"], "flow label 0 is not in 1..0xFFFFF"),
        (["--flow-label", "0x100000"], "flow label 1048576 is not in 1..0xFFFFF"),
    ],
)
def test_marking_mistakes_are_usage_errors(argv, error):
    with pytest.raises(UsageError) as caught:
        marking(*argv)
    assert str(caught.value) == error


def test_slice_and_dscp_exclude_each_other():
    with pytest.raises(SystemExit):
        marking("--slice", "video", "--dscp", "1")


def test_targets_resolve_to_addresses_preferring_ipv6():
    assert resolve_target("2001:db8::1") == "2001:db8::1"
    assert resolve_target("127.0.0.1") == "127.0.0.1"
    with pytest.raises(UsageError, match="has no IPv6 address"):
        resolve_target("127.0.0.1", ipv6_only=True)
    with pytest.raises(UsageError, match=r"cannot resolve 'no-such-host\.invalid'"):
        resolve_target("no-such-host.invalid")


def test_a_key_file_loses_its_trailing_newline_and_must_hold_something(tmp_path):
    (tmp_path / "key").write_bytes(b"reflector-key-0123456789\r\n")
    (tmp_path / "empty").write_bytes(b"\n")
    assert read_key_file(str(tmp_path / "key")) == b"reflector-key-0123456789"
    with pytest.raises(UsageError, match="is empty"):
        read_key_file(str(tmp_path / "empty"))
    (tmp_path / "short").write_bytes(b"k\n")  # one byte: an HMAC anyone could forge
    with pytest.raises(UsageError, match=r"key file .*short: a STAMP key needs at least 16 bytes, got 1"):
        read_key_file(str(tmp_path / "short"))
    with pytest.raises(UsageError, match=r"cannot read key file .*: No such file or directory"):
        read_key_file(str(tmp_path / "missing"))


def test_milliseconds_with_microsecond_digits_or_a_dash():
    assert (milliseconds(1_234_567), milliseconds(None)) == ("1.235", "-")
