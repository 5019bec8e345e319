"""`xnetmon probe trace`'s output pieces: the fingerprint line, an mtr-style report row, the
observation a report makes, unreachable flags, and the multipath view of several flows.
(tests/xnetmon/test_trace_commands.py traces loopback and namespaces through it.)"""

from __future__ import annotations

import argparse

from collector.contract.records import FlowId, HopAnswer, HopProbe, PathObservation
from collector.probes.trace import TraceEndpoint
from collector.probes.trace_session import HopReport, TraceSettings
from xnetmon.commands.probe_trace import (
    _fingerprint_line,
    _flag,
    _print_multipath,
    _report_line,
    _report_observation,
)

R1, R2, R3, T = "2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8:9::1"
SETTINGS = TraceSettings("core", "video", dscp=34, max_hops=8)


def seen(hops, label: int, reached: bool = True) -> PathObservation:
    return PathObservation("::1", "core", "video", FlowId("udp", label, 40000, 33434), tuple(hops), reached, 0)


def test_the_fingerprint_line_counts_hops_and_says_whether_the_target_answered():
    one = seen([T], 1)
    assert _fingerprint_line(one) == f"path fingerprint {one.fingerprint} (1 hop, destination reached)"
    assert _fingerprint_line(seen([R1, None], 1, reached=False)).endswith("(2 hops, destination not reached)")


def test_a_report_row_shows_loss_and_times_in_ms_and_a_silent_hop_as_question_marks():
    row = HopReport(
        2,
        R1,
        (),
        sent=10,
        received=9,
        last_ns=1_500_000,
        avg_ns=1_250_000,
        best_ns=1_000_000,
        worst_ns=2_000_000,
        stdev_ns=300_000,
    )
    assert _report_line(row, 24) == f"  2.|-- {R1:<24}  10.0%    10    1.5   1.2   1.0   2.0   0.3"
    silent = HopReport(3, None, (), 10, 0, None, None, None, None, None)
    assert _report_line(silent, 3) == "  3.|-- ??? 100.0%    10    0.0   0.0   0.0   0.0   0.0"


def test_a_report_is_reached_only_when_its_last_hop_answered_as_the_target():
    rows = [HopReport(1, R1, (), 2, 2, 1, 1, 1, 1, 0), HopReport(3, T, (), 2, 1, 1, 1, 1, 1, 0)]
    rounds = [[HopProbe(1, 0, 0, HopAnswer.TIME_EXCEEDED, R1), HopProbe(3, 1, 0, HopAnswer.REACHED, T)]]
    flow = FlowId("udp", 0x12345, 40000, 33434)
    observation = _report_observation(SETTINGS, TraceEndpoint("::1"), flow, rows, rounds)
    assert observation.hops == (R1, None, T) and observation.reached and observation.flow == flow
    refused = [[HopProbe(3, 1, 0, HopAnswer.UNREACHABLE, T, detail="no route to destination")]]
    assert not _report_observation(SETTINGS, TraceEndpoint("::1"), flow, rows, refused).reached


def test_refusals_get_traceroutes_flags():
    assert [
        _flag(HopProbe(1, 0, 0, HopAnswer.UNREACHABLE, R1, detail=d))
        for d in ("no route to destination", "administratively prohibited", "something new")
    ] == ["!N", "!X", "!?"]
    assert _flag(HopProbe(1, 0, 0, HopAnswer.TIME_EXCEEDED, R1)) is None


def test_multipath_lists_each_hops_next_hops_and_the_distinct_paths(capsys):
    flows = [seen([R1, R2, T], 0x1), seen([R1, R3, T], 0x2), seen([R1, R2, T], 0x3)]
    _print_multipath(argparse.Namespace(target="core"), SETTINGS, T, flows)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"traceroute to core ({T}), 8 hops max, udp, 3 flows (multipath), slice video (DSCP 34)"
    assert lines[1:5] == [
        f" 1  {R1}  (3 of 3 flows)",
        f" 2  {R2}  (2 of 3 flows)",
        f"    {R3}  (1 of 3 flows)",
        f" 3  {T}  (3 of 3 flows)",
    ]
    assert lines[5] == "2 distinct path(s) over 3 flows:"
    assert lines[6].endswith(f"{R1} > {R2} > {T}  (flow labels 0x00001, 0x00003)")
