"""`xnetmon probe stamp`'s lines: a reply with one-way delays and both ends' markings, a
duplicate, losses with their direction or reason, and the summary without replies.
(tests/xnetmon/test_stamp_commands.py runs it against a reflector.)"""

from __future__ import annotations

import argparse
import json

from collector.contract.records import LossDirection, ProbeResult
from collector.probes.summary import ProbeSummary
from xnetmon.commands.probe_stamp import _print_result, _print_summary

TEXT = argparse.Namespace(json=False, target="core")


class Probe:
    send_errors = 2


def test_each_fate_prints_on_one_line(capsys):
    timed = ProbeResult(
        "core",
        "video",
        4,
        0,
        2_500_000,
        forward_owd_ns=1_000_000,
        reverse_owd_ns=1_500_000,
        reflector_hop_limit=62,
        reply_hop_limit=61,
        reflector_dscp=34,
        reply_dscp=None,
    )
    _print_result(TEXT, timed)
    _print_result(TEXT, ProbeResult("core", "video", 4, 0, 2_600_000, duplicate=True))
    _print_result(TEXT, ProbeResult("core", "video", 5, 0, None, LossDirection.REVERSE))
    _print_result(
        TEXT, ProbeResult("core", "video", 6, 0, None, LossDirection.FORWARD, icmp_error="port unreachable from ::1")
    )
    assert capsys.readouterr().out.splitlines() == [
        "reply from core: seq=4 rtt=2.500 ms fwd=1.000 rev=1.500 hlim=62/61 dscp=34/-",
        "reply from core: seq=4 rtt=2.600 ms hlim=None/None dscp=-/- (DUP!)",
        "seq=5 lost (no reply, reverse path)",
        "seq=6 lost (port unreachable from ::1)",
    ]


def test_a_summary_without_replies_has_no_delay_lines(capsys):
    lost = [ProbeResult("core", "video", n, 0, None, LossDirection.FORWARD) for n in range(3)]
    _print_summary(TEXT, "::1", ProbeSummary.from_results(lost), Probe())
    assert capsys.readouterr().out.splitlines() == [
        "--- core STAMP statistics ---",
        "3 sent, 0 received, 100.0% loss (forward 3, reverse 0, unknown 0), 0 duplicates, 0 reordered",
    ]


def test_the_json_summary_adds_the_target_and_send_errors(capsys):
    results = [
        ProbeResult("core", "video", 0, 0, 1_000_000),
        ProbeResult("core", "video", 1, 0, None, LossDirection.UNKNOWN),
    ]
    _print_summary(argparse.Namespace(json=True, target="core"), "::1", ProbeSummary.from_results(results), Probe())
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert (summary["target"], summary["address"], summary["send_errors"]) == ("core", "::1", 2)
    assert (summary["sent"], summary["received"], summary["loss_ratio"]) == (2, 1, 0.5)
