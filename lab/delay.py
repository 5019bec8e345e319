"""A fixed delay for one direction of a link, without netem: an NFQUEUE delay line.

The kernel here has no netem, so the lab sends a link's egress packets to an NFQUEUE
(an ip6tables rule in the sender's mangle/POSTROUTING, before the HTB queues) and this
small program, running in the sending site's namespace, holds each packet's verdict for
the set delay.
Only packet metadata crosses to userspace (copy mode META), the packet itself waits in
the kernel, and since every packet waits the same time they leave in arrival order, so a
single batch verdict ("accept everything up to id N") releases all that are due. The
netlink side is `collector.capture.nfqueue`, the marker's own.

Precision: the added delay is the set value plus the time to wake this process and
deliver the verdict; lab/README.md gives the figures measured on the lab machines.

Run as `python -m lab.delay --queue N --delay-ms D` inside a namespace; the lab does that.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import select
import signal
import sys
import time
from collections import deque
from pathlib import Path

from collector.capture.nfqueue import NfQueue, NfQueueError

QUEUE_MAXLEN = 20000  # packets; about 1 s of a 200 Mbit/s link at 1500 bytes
PR_SET_TIMERSLACK = 29


class Stopped(Exception):
    """Raised by the SIGTERM/SIGINT handler to leave the serving loop at once."""


class DelayLine:
    """Holds every packet of `queue` for `delay` seconds. Metadata only, and no fail-open:
    a full queue drops, as a full link would, rather than let packets skip the delay."""

    def __init__(self, queue: int, delay: float):
        self.delay = delay
        self.queue = NfQueue(queue, max_length=QUEUE_MAXLEN, copy_packets=False, fail_open=False)
        self.queue.settimeout(0)  # drained until empty after each select()
        self.pending: deque[tuple[float, int]] = deque()
        self.last_seen: int | None = None

    def _receive(self) -> None:
        while True:
            try:
                packet = self.queue.receive()
            except BlockingIOError:
                return
            if packet is not None:
                self.pending.append((time.monotonic() + self.delay, packet.packet_id))
                self.last_seen = packet.packet_id

    def release_due(self) -> None:
        now = time.monotonic()
        last = None
        while self.pending and self.pending[0][0] <= now:
            last = self.pending.popleft()[1]
        if last is not None:
            self.queue.verdict_batch(last)

    def run(self) -> None:
        """Serve until a signal raises Stopped."""
        while True:
            timeout = None if not self.pending else max(0.0, self.pending[0][0] - time.monotonic())
            ready, _, _ = select.select([self.queue], [], [], timeout)
            if ready:
                self._receive()
            self.release_due()

    def close(self) -> None:
        # Let everything still held go now, rather than have the kernel drop it on close.
        if self.last_seen is not None:
            try:
                self.queue.verdict_batch(self.last_seen)
            except OSError:
                pass
        self.queue.close()


def _tight_timers() -> None:
    """Make wake-ups punctual; each step is best effort (the delay still works without it)."""
    # The default 50 us timer slack would be added to every wake-up; ask for 1 ns.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    # Real-time priority: wake before the load generators sharing the two cores. The loop
    # always blocks in select(), so it cannot starve anything.
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (OSError, AttributeError):
        pass
    # A garbage-collector pause would hold every packet in flight; the loop makes no cycles.
    gc.disable()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.delay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", type=int, required=True, help="NFQUEUE number to serve")
    parser.add_argument("--delay-ms", type=float, required=True, help="added delay in milliseconds")
    parser.add_argument("--ready-file", type=Path, help="created once the queue is bound")
    args = parser.parse_args(argv)

    def _stop(*_: object) -> None:
        raise Stopped

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    _tight_timers()
    try:
        line = DelayLine(args.queue, args.delay_ms / 1000.0)
    except NfQueueError as exc:
        print(f"NFQUEUE {args.queue}: {exc.strerror}", file=sys.stderr)
        return 1
    if args.ready_file:
        args.ready_file.write_text(str(os.getpid()))
    try:
        line.run()
    except Stopped:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        line.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
