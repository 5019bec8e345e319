"""tshark capturing for a test, started only once the capture is known to be live.

dumpcap says "Capturing on" a little before packets reach its file: on this machine the
first one to three datagrams sent right after that line were missing from the capture now
and then. So a `TsharkCapture` is primed: a sender in the given namespace sends warm-up
datagrams to a port of their own until tshark shows one, and only then does the test send
what it means to capture. The warm-ups are left out of the pcap the test reads.

    with TsharkCapture(ns, "lo", "udp port 8621", tmp_path / "probe.pcap") as capture:
        capture.prime(ns, "::1")
        ...send...
        capture.wait_for(4)
    rows = capture.fields("ipv6.tclass", "ipv6.flow")
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from scapy.layers.inet import UDP
from scapy.utils import rdpcap, wrpcap

from tests.support import DEADLINE_S, LineReader, in_netns, stop_process

WARM_UP_PORT = 19_999  # no test sends to it, and nothing listens on it


class TsharkCapture:
    """tshark on `interface` in `netns`, keeping what `capture_filter` admits (and the
    warm-ups) in a pcap; on exit, `pcap` holds the admitted frames only."""

    def __init__(self, netns: str, interface: str, capture_filter: str, pcap: Path) -> None:
        self.pcap = pcap
        self._raw = pcap.with_suffix(".raw.pcap")
        argv = ["tshark", "-i", interface, "-f", f"({capture_filter}) or (udp dst port {WARM_UP_PORT})"]
        argv += ["-F", "pcap", "-w", str(self._raw), "-P", "-l", "-T", "fields", "-e", "udp.dstport"]
        self._tshark = subprocess.Popen(
            in_netns(netns, argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self._lines = LineReader(self._tshark.stdout)  # one line a captured frame: its UDP port, if any

    def __enter__(self) -> TsharkCapture:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._tshark.poll() is None:
            self._tshark.send_signal(signal.SIGINT)  # tshark closes its file and ends
            try:
                self._tshark.wait(timeout=DEADLINE_S)
            finally:
                stop_process(self._tshark)
        if exc_info[0] is None:
            frames = [frame for frame in rdpcap(str(self._raw)) if not _warm_up(frame)]
            wrpcap(str(self.pcap), frames)

    def prime(self, netns: str, address: str) -> None:
        """Send warm-ups from `netns` to `address` until the capture has one."""
        script = (
            "import socket,time\n"
            f"s=socket.socket(socket.{'AF_INET6' if ':' in address else 'AF_INET'},socket.SOCK_DGRAM)\n"
            f"end=time.monotonic()+{DEADLINE_S}\n"
            "while time.monotonic()<end:\n"
            f"    s.sendto(b'warm-up',({address!r},{WARM_UP_PORT}))\n"
            "    time.sleep(0.02)\n"
        )
        sender = subprocess.Popen(in_netns(netns, [sys.executable, "-c", script]))
        try:
            self._lines.wait_for(lambda line: line.strip() == str(WARM_UP_PORT))
        finally:
            stop_process(sender)

    def wait_for(self, count: int) -> None:
        """Return once the capture has `count` frames besides the warm-ups."""
        self._lines.wait_for(lambda line: line.strip() != str(WARM_UP_PORT), count=count)

    def fields(self, *names: str, options: tuple[str, ...] = ()) -> list[list[str]]:
        """tshark's reading of the pcap (after exit): a row of `names` per frame."""
        argv = ["tshark", "-r", str(self.pcap), *options, "-T", "fields", "-E", "separator=\t"]
        argv += [arg for name in names for arg in ("-e", name)]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        return [line.split("\t") for line in out.splitlines()]


def _warm_up(frame) -> bool:
    return UDP in frame and frame[UDP].dport == WARM_UP_PORT and bytes(frame[UDP].payload) == b"warm-up"
