"""Alternate marking across the lab: per-block loss between two points equals what a loss fault dropped.

A marked UDP flow leaves cnty1a for prov1 through city1a. The upstream point captures it
leaving cnty1a, the downstream point arriving at prov1; between them, a `loss` fault drops
packets as they enter city1a (an ip6tables statistic rule, whose packet counter is the
ground truth). The fault only matches the video slice's DSCP from cnty1a. Every packet it
can see passes the upstream capture first, which also counts the video packets that are
not ours: when there are none (the lab runs nothing else in that slice there), the rule's
counter must equal our loss exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from collector.capture.altmark import MarkingPoint, block_loss
from tests.capture_support import Capture
from tests.support import REPO, wait_until

pytestmark = [pytest.mark.root, pytest.mark.lab]

SENDER, MIDDLE, RECEIVER = "cnty1a", "city1a", "prov1"
LOSSY_LINK, DOWNSTREAM_LINK = "city1a-cnty1a", "prov1-city1a"
FLOW_MON_ID = 0x5A17
PACKETS, BLOCK = 3000, 150
VIDEO_DSCP = 34


def send_marked(lab, header: str) -> dict:
    argv = [
        sys.executable,
        "-m",
        "collector.capture.altmark_sender",
        lab.address(RECEIVER),
        "--flow-mon-id",
        str(FLOW_MON_ID),
        "--count",
        str(PACKETS),
        "--block-packets",
        str(BLOCK),
        "--interval-ms",
        "0.3",
        "--dscp",
        str(VIDEO_DSCP),
        "--header",
        header,
        "--source",
        lab.address(SENDER),
    ]
    done = subprocess.run(lab.exec_argv(SENDER, argv), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("header", ["hop-by-hop", "destination"])
def test_block_loss_sums_to_the_packets_the_fault_dropped(lab, header):
    assert lab.path(SENDER, RECEIVER) == (SENDER, MIDDLE, RECEIVER)
    upstream, downstream = MarkingPoint(SENDER), MarkingPoint(RECEIVER)
    video_frames = []

    def upstream_point(ts_ns: int, frame: bytes, offset: int) -> None:
        if frame[offset] >> 4 == 6 and (int.from_bytes(frame[offset : offset + 2], "big") >> 6) & 0x3F == VIDEO_DSCP:
            video_frames.append(ts_ns)
        upstream.observe(ts_ns, frame, offset)

    captures = [
        Capture(lab.namespace(SENDER), lab.interface(LOSSY_LINK, SENDER), "out", upstream_point),
        Capture(lab.namespace(RECEIVER), lab.interface(DOWNSTREAM_LINK, RECEIVER), "in", downstream.observe),
    ]
    fault = lab.fault_loss(LOSSY_LINK, 0.1, from_site=SENDER, slice="video")

    def ours(point: MarkingPoint) -> int:
        return sum(point.packets.get((FLOW_MON_ID, colour), 0) for colour in (0, 1))

    def crossed() -> bool:
        """Every packet of ours left upstream, and downstream has all the rule let through.
        The rule may also have dropped others; then this holds at most that many packets
        early, which the rule's count still covers (total_lost <= dropped_by_rule below)."""
        return ours(upstream) >= PACKETS and ours(downstream) + lab.loss_drops(MIDDLE, fault) >= PACKETS

    try:
        sent = send_marked(lab, header)
        wait_until(crossed, interval=0.1, what="our packets crossing the lab")
    finally:
        dropped_by_kernel = [capture.stop() for capture in captures]
    dropped_by_rule = lab.loss_drops(MIDDLE, fault)
    lab.heal(fault)
    upstream.flush()
    downstream.flush()

    assert dropped_by_kernel == [0, 0], "a capture missed frames; the counts would be meaningless"
    assert sent["per_block"] == [BLOCK] * (PACKETS // BLOCK)
    assert [b.packets for b in upstream.blocks(FLOW_MON_ID)] == sent["per_block"]
    losses = block_loss(upstream, downstream)
    assert len(losses) == PACKETS // BLOCK  # every block paired, none twice
    assert [loss.upstream_sequence for loss in losses] == list(range(PACKETS // BLOCK))
    total_lost = sum(loss.lost for loss in losses)
    seen_downstream = ours(downstream)
    assert total_lost == PACKETS - seen_downstream
    others = len(video_frames) - PACKETS  # video packets that were not ours, which the rule may also drop
    assert total_lost <= dropped_by_rule <= total_lost + others
    if others == 0:
        assert dropped_by_rule == total_lost
    assert 0.05 * PACKETS < total_lost < 0.15 * PACKETS  # the fault's 10%, give or take
    delays = [loss.mean_delay_ns for loss in losses if loss.mean_delay_ns is not None]
    assert len(delays) >= len(losses) // 2  # a block loses its delay only when its D packet was dropped
    assert all(0 < delay < 50_000_000 for delay in delays)  # two veth hops on one host: well under 50 ms
