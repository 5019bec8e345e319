"""The business traffic generator between two namespaces: every slice's flows leave with their
slice's DSCP at about their rate, egov's requests are answered, nothing fails."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from bench._common import NamespacePair
from lab.business_traffic import FLOWS
from tests.capture_support import Capture
from tests.support import REPO, LineReader, stop_process

ADDR_A, ADDR_B = "fd00:b7::1", "fd00:b7::2"
SECONDS = 3.0


@pytest.mark.root
def test_every_slice_flows_with_its_dscp_at_its_rate():
    tag = uuid.uuid4().hex[:6]
    by_dscp: dict[int, int] = {}

    def count(ts_ns: int, frame: bytes, offset: int) -> None:
        if frame[offset] >> 4 == 6:
            dscp = (int.from_bytes(frame[offset : offset + 2], "big") >> 6) & 0x3F
            by_dscp[dscp] = by_dscp.get(dscp, 0) + 1

    with NamespacePair(f"xt-a-{tag}", f"xt-b-{tag}", f"xt-a{tag}", f"xt-b{tag}", ADDR_A, ADDR_B) as pair:
        server = subprocess.Popen(
            ["ip", "netns", "exec", pair.ns_b, sys.executable, "-m", "lab.business_traffic", "serve", "--bind", ADDR_B],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        )  # fmt: skip
        try:
            LineReader(server.stdout).wait_for(lambda line: "serving" in line)
            capture = Capture(pair.ns_b, pair.if_b, "in", count)
            sent = subprocess.run(
                ["ip", "netns", "exec", pair.ns_a, sys.executable, "-m", "lab.business_traffic", "send",
                 "--to", ADDR_B, "--bind", ADDR_A, "--duration", str(SECONDS)],
                capture_output=True, text=True, timeout=120, cwd=REPO,
            )  # fmt: skip
            assert capture.stop() == 0
        finally:
            stop_process(server)
    assert sent.returncode == 0, sent.stderr
    counts = json.loads(sent.stdout)
    for slice_name in {flow.slice for flow in FLOWS}:
        rate = sum(flow.rate for flow in FLOWS if flow.slice == slice_name)
        assert 0.5 * rate * SECONDS <= counts[slice_name]["sent"] <= 1.1 * rate * SECONDS, (slice_name, counts)
        assert counts[slice_name]["errors"] == 0, counts
    assert counts["egov"]["answered"] >= counts["egov"]["sent"] - 1
    for flow in FLOWS:
        assert by_dscp.get(flow.dscp, 0) >= counts[flow.slice]["sent"] // 2, (flow, by_dscp)
