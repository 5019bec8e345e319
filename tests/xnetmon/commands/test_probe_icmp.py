"""`xnetmon probe icmp`'s (alias `ping`) own arithmetic and lines: iputils' mdev, and how a
reply, a duplicate, a loss and an ICMP error print. (tests/xnetmon/test_ping_command.py runs it.)"""

from __future__ import annotations

import argparse
import statistics

from collector.contract.records import LossDirection, ProbeResult
from xnetmon.commands.probe_icmp import _print_result, mean_deviation_ns

ARGS = argparse.Namespace(json=False, size=56)


def reply(seq: int, rtt_ns: int | None, **extra) -> ProbeResult:
    return ProbeResult(
        "core",
        "video",
        seq,
        0,
        rtt_ns,
        LossDirection.NONE if rtt_ns else LossDirection.UNKNOWN,
        reply_hop_limit=61,
        **extra,
    )


def test_mdev_is_the_standard_deviation_of_the_round_trips_without_duplicates():
    results = [reply(1, 1_000_000), reply(2, 3_000_000), reply(3, None), reply(2, 9_000_000, duplicate=True)]
    assert mean_deviation_ns(results) == int(statistics.pstdev([1_000_000, 3_000_000]))
    assert mean_deviation_ns([reply(1, 2_000_000)]) == 0
    assert mean_deviation_ns([reply(1, None)]) is None


def test_each_fate_prints_like_ping(capsys):
    _print_result(ARGS, "::1", reply(1, 1_234_000))
    _print_result(ARGS, "::1", reply(1, 2_000_000, duplicate=True))
    _print_result(ARGS, "::1", reply(2, None))
    _print_result(ARGS, "::1", reply(3, None, icmp_error="address unreachable from 2001:db8::ff"))
    assert capsys.readouterr().out.splitlines() == [
        "64 bytes from ::1: icmp_seq=1 hlim=61 time=1.234 ms",
        "64 bytes from ::1: icmp_seq=1 hlim=61 time=2.000 ms (DUP!)",
        "no answer yet for icmp_seq=2",
        "icmp_seq=3 address unreachable from 2001:db8::ff",
    ]
