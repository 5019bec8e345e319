"""The record contract's own behaviour: loss arithmetic, flow ids as text,
and the fixed RTT buckets every histogram shares."""

from __future__ import annotations

import dataclasses

import pytest

from collector.contract.records import (
    RTT_BUCKETS_NS,
    RTT_BUCKETS_S,
    FlowId,
    HopAnswer,
    HopProbe,
    LossDirection,
    ProbeResult,
)
from tests.analyzer_support import T0, window


def test_losses_add_up_by_direction_and_nothing_sent_is_no_loss():
    lossy = dataclasses.replace(window(T0, sent=20, lost=2), lost_reverse=1, lost_unknown=1)
    assert (lossy.lost, lossy.loss_ratio) == (4, 0.2)
    assert dataclasses.replace(window(T0), sent=0, received=0).loss_ratio == 0.0


def test_a_probe_or_hop_is_lost_exactly_when_nothing_answered():
    assert ProbeResult("core", "video", 1, 0, None, LossDirection.FORWARD).lost
    assert not ProbeResult("core", "video", 1, 0, 1000).lost
    assert HopProbe(1, 0, 0, HopAnswer.NONE).lost
    assert not HopProbe(1, 0, 0, HopAnswer.UNREACHABLE, "fd00::1", detail="no route").lost


def test_flow_ids_read_as_ports_or_as_an_echo_identifier():
    assert str(FlowId("udp", 0x12345, 40000, 33434)) == "udp flow label 0x12345 ports 40000>33434"
    assert str(FlowId("icmp", 0x1, 0x4242)) == "icmp flow label 0x00001 id 16962"


def test_rtt_buckets_rise_in_whole_nanoseconds_and_keep_to_twelve():
    assert list(RTT_BUCKETS_NS) == sorted(set(RTT_BUCKETS_NS))
    assert RTT_BUCKETS_NS[0] == 500_000 and RTT_BUCKETS_NS[-1] == 1_000_000_000
    assert [ns / 1e9 for ns in RTT_BUCKETS_NS] == pytest.approx(list(RTT_BUCKETS_S))
    assert len(RTT_BUCKETS_NS) == 12  # with +Inf, within the metric contract's 25 series per path


def test_records_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        window(T0).sent = 0
