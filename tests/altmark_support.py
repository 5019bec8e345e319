"""Two namespaces joined by a veth, with the ingress marker (`collector.capture.altmark_ingress`)
running in the first on the traffic of one DSCP; and a UDP sender paced so the veth keeps up.

    with marked_pair(dscp=34) as pair:
        send_udp(pair.ns_a, ADDR_B, PORT, count=50, dscp=34)
        report = pair.stop_marker()   # the marker's JSON counters
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator

from bench._common import NamespacePair
from tests.support import DEADLINE_S, REPO, LineReader, stop_process

ADDR_A, ADDR_B = "fd00:a1:7::1", "fd00:a1:7::2"
PORT = 5004
QUEUE = 7
SITE_INDEX = 9


class MarkedPair:
    def __init__(self, pair: NamespacePair, marker: subprocess.Popen, lines: LineReader) -> None:
        self.ns_a, self.ns_b, self.if_a, self.if_b = pair.ns_a, pair.ns_b, pair.if_a, pair.if_b
        self.site_index = SITE_INDEX
        self._marker = marker
        self._lines = lines
        self.report: dict | None = None

    def stop_marker(self) -> dict:
        """SIGTERM the marker; its last line is its report."""
        if self.report is None:
            stop_process(self._marker)
            self.report = json.loads(self._lines.wait_for(lambda line: '"marked"' in line)[0])
        return self.report


def marker_argv(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-m", "collector.capture.altmark_ingress", *args]


@contextlib.contextmanager
def marked_pair(*, dscp: int, block_s: float = 1.0, extra: tuple[str, ...] = ()) -> Iterator[MarkedPair]:
    tag = uuid.uuid4().hex[:6]
    with NamespacePair(f"xm-a-{tag}", f"xm-b-{tag}", f"xm-a{tag}", f"xm-b{tag}", ADDR_A, ADDR_B) as pair:
        argv = marker_argv(
            pair.ns_a,
            "--queue", str(QUEUE), "--site-index", str(SITE_INDEX), "--dscp", str(dscp),
            "--protocol", "udp", "--block-s", str(block_s), "--install-rule", *extra,
        )  # fmt: skip
        marker = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        lines = LineReader(marker.stdout)
        try:
            lines.wait_for(lambda line: '"ready"' in line, timeout=DEADLINE_S)
            marked = MarkedPair(pair, marker, lines)
            yield marked
            marked.stop_marker()
        finally:
            if marker.poll() is None:
                stop_process(marker)


def send_udp(ns: str, address: str, port: int, *, count: int, dscp: int, interval_s: float = 0.002) -> None:
    """`count` datagrams from one socket (one flow), paced: the veth's backlog must not overflow."""
    script = (
        "import socket,sys,time\n"
        "s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n"
        f"s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_TCLASS,{dscp << 2})\n"
        f"start=time.monotonic()\n"
        f"for i in range({count}):\n"
        f"    time.sleep(max(0.0,start+i*{interval_s}-time.monotonic()))\n"
        f"    s.sendto(i.to_bytes(8,'big')+bytes(56),({address!r},{port}))\n"
    )
    subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", script], check=True, timeout=DEADLINE_S)
