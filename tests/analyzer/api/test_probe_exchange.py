"""analyzer.api.probe_exchange: a POST /probe request as the local probe command's options, and
the command's --json output as the API's result, for each kind."""

from __future__ import annotations

import json
from typing import get_args

import pytest

from analyzer.api.models import ProbeRequest
from analyzer.api.probe_exchange import API_INTERVAL_S, probe_answer, probe_start
from collector.bus.probe_requests import PROBE_KINDS, command_args

REQUEST_ID = "req-0123456789"


def request(kind: str, count: int = 5) -> ProbeRequest:
    return ProbeRequest(agent="cnty1a", target="fd00::1", kind=kind, slice="video", count=count)


def test_the_api_offers_every_kind_the_bus_carries():
    assert set(get_args(ProbeRequest.model_fields["kind"].annotation)) == set(PROBE_KINDS)


def test_stamp_and_icmp_send_count_probes_and_only_stamp_takes_the_reflectors_port():
    stamp = probe_start(request("stamp"), REQUEST_ID, stamp_port=8620)
    assert command_args(stamp) == [
        "stamp", "--slice", "video", "-c", "5", "-i", str(API_INTERVAL_S), "-p", "8620", "--json", "--", "fd00::1"
    ]  # fmt: skip
    icmp = probe_start(request("icmp"), REQUEST_ID, stamp_port=8620)
    assert icmp.port is None and not icmp.report and icmp.count == 5


def test_a_trace_runs_count_rounds_of_its_report():
    trace = probe_start(request("trace", count=20), REQUEST_ID, stamp_port=8620)
    assert command_args(trace) == [
        "trace", "--slice", "video", "-c", "20", "-i", str(API_INTERVAL_S), "--report", "--json", "--", "fd00::1"
    ]  # fmt: skip


def test_the_answer_is_the_summary_line_or_the_trace_document():
    summary = {"summary": {"sent": 2, "received": 2}}
    printed = ['{"seq": 0, "rtt_ms": 0.1}', "not json", json.dumps(summary)]
    assert probe_answer("icmp", printed) == summary
    document = {"target": "fd00::1", "report": [{"hop": 1, "address": "fd00::1"}]}
    assert probe_answer("trace", ["Start: ...", json.dumps(document)]) == {"trace": document}


@pytest.mark.parametrize("kind", ["stamp", "icmp", "trace"])
def test_nothing_printed_is_no_answer(kind):
    assert probe_answer(kind, ["xnetmon probe: cannot send"]) is None
    assert probe_answer(kind, []) is None
