"""Live AF_PACKET capture on a veth between two namespaces this test creates: known UDP
traffic in every slice; per-slice totals equal what was sent at 1:1, and are within the
sampling error at 1:N. Also the sampler on its own, and a counting point told of the blocks
its capture socket dropped packets in."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import pytest

from collector.capture.live import Sampler
from tests.capture_support import wait_until_drained
from tests.support import REPO, network_namespace, stop_process, wait_until

A, B = "fd00:cafe::1", "fd00:cafe::2"
SLICES = {"video": (34, 100), "egov": (26, 200), "data": (18, 300), "best-effort": (0, 400)}  # DSCP, payload

SENDER = textwrap.dedent("""
    import socket, sys, time
    destination, count = sys.argv[1], int(sys.argv[2])
    sockets = []
    for dscp, size in ((34, 100), (26, 200), (18, 300), (0, 400)):
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, dscp << 2)
        sockets.append((s, b"x" * size, 9000 + dscp))
    for i in range(count):
        for s, payload, port in sockets:
            s.sendto(payload, (destination, port))
        if i % 25 == 24:
            time.sleep(0.002)  # paced: the veth backlog must not overflow
""")

CAPTURER = textwrap.dedent("""
    import json, sys, threading
    from collector.capture.aggregate import FlowAggregator
    from collector.capture.live import LiveCapture, Sampler
    interface, rate, source = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    capture = LiveCapture(interface, FlowAggregator("capture:" + interface, sampling_rate=rate),
                          sampler=Sampler(rate, seed=11))
    print("ready", flush=True)
    threading.Thread(target=lambda: (sys.stdin.readline(), capture.stop()), daemon=True).start()
    records = capture.run()
    totals = {}
    for r in records:
        if r.source == source and r.protocol == 17:
            into = totals.setdefault(r.slice, [0, 0])
            into[0] += r.packets
            into[1] += r.bytes
    print(json.dumps({"totals": totals, "packets": capture.stats.packets, "sampled": capture.stats.sampled,
                      "drops": capture.stats.kernel_drops, "rates": sorted({r.sampling_rate for r in records})}))
""")


def _veth_pair(ns_a: str, ns_b: str) -> None:
    subprocess.run(
        ["ip", "link", "add", "xc-a", "netns", ns_a, "type", "veth", "peer", "name", "xc-b", "netns", ns_b], check=True
    )
    for ns, dev, address in ((ns_a, "xc-a", A), (ns_b, "xc-b", B)):
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{address}/64", "dev", dev, "nodad"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
    # Neighbour discovery done, so no packet waits in the unresolved queue.
    wait_until(
        lambda: (
            subprocess.run(
                ["ip", "netns", "exec", ns_a, "ping", "-6", "-c", "1", "-W", "1", B], capture_output=True
            ).returncode
            == 0
        ),
        interval=0.1,
        what="the veth pair reachable",
    )


def _capture_while_sending(rate: int, per_slice: int) -> dict:
    with network_namespace() as ns_a, network_namespace() as ns_b:
        _veth_pair(ns_a, ns_b)
        capturer = subprocess.Popen(
            ["ip", "netns", "exec", ns_b, sys.executable, "-c", CAPTURER, "xc-b", str(rate), A],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        try:
            assert capturer.stdout.readline().strip() == "ready", capturer.stderr.read()
            subprocess.run(
                ["ip", "netns", "exec", ns_a, sys.executable, "-c", SENDER, B, str(per_slice)], check=True, timeout=300
            )
            wait_until_drained(capturer.pid)  # the last packets counted
            out, err = capturer.communicate("stop\n", timeout=120)
        finally:
            if capturer.poll() is None:
                stop_process(capturer)
        assert capturer.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])


@pytest.mark.root
def test_unsampled_totals_equal_what_was_sent() -> None:
    per_slice = 1500
    result = _capture_while_sending(1, per_slice)
    assert result["drops"] == 0
    assert result["rates"] == [1]
    assert result["totals"] == {name: [per_slice, per_slice * (40 + 8 + size)] for name, (_, size) in SLICES.items()}
    assert result["sampled"] == result["packets"] >= 4 * per_slice


@pytest.mark.root
def test_sampled_totals_are_within_the_sampling_error() -> None:
    per_slice, rate = 5000, 10
    result = _capture_while_sending(rate, per_slice)
    assert result["drops"] == 0
    assert result["rates"] == [rate]
    assert result["packets"] >= 4 * per_slice  # every packet is counted, sampled or not
    # Each packet is sampled with probability 1/rate: the estimate's standard deviation is
    # rate * sqrt(n p (1-p)). Five of them (a fixed seed makes the run repeatable anyway).
    bound = 5 * rate * math.sqrt(per_slice * (1 / rate) * (1 - 1 / rate))
    for name, (_, size) in SLICES.items():
        packets, octets = result["totals"][name]
        assert abs(packets - per_slice) <= bound, (name, packets)
        assert octets == packets * (40 + 8 + size)  # one size per slice: bytes scale with packets


def test_sampler_rate_and_independence() -> None:
    sampler = Sampler(20, seed=3)
    picks = [sampler.take() for _ in range(200_000)]
    taken = sum(picks)
    assert abs(taken - 10_000) <= 5 * math.sqrt(200_000 * 0.05 * 0.95)
    # not every 20th packet: the gaps between samples vary (geometric, mean 20)
    positions = [i for i, picked in enumerate(picks) if picked]
    gaps = {b - a for a, b in zip(positions, positions[1:])}
    assert len(gaps) > 50
    assert all(Sampler(1).take() for _ in range(100))
    with pytest.raises(ValueError):
        Sampler(0)


SURVIVOR = textwrap.dedent("""
    import json, sys, threading
    from collector.capture.aggregate import FlowAggregator
    from collector.capture.live import LiveCapture
    interface = sys.argv[1]
    capture = LiveCapture(interface, FlowAggregator("capture:" + interface))
    ended = []
    thread = threading.Thread(target=lambda: (capture.run(), ended.append("returned")), daemon=True)
    thread.start()
    print("ready", flush=True)
    for line in sys.stdin:  # "stats": the counters so far; "stop": stop and report
        if line.strip() == "stop":
            capture.stop()
            thread.join(30)
        print(json.dumps({"packets": capture.stats.packets, "errors": capture.stats.errors,
                          "alive": thread.is_alive(), "ended": ended}), flush=True)
        if line.strip() == "stop":
            break
""")


DROPPING = textwrap.dedent("""
    import json, socket, threading, time
    from collector.capture.aggregate import FlowAggregator
    from collector.capture.altmark_sender import AltMarkSender, Marker
    from collector.capture.counting_point import CountingPoint
    from collector.capture.live import LiveCapture
    from collector.traffic.classifier import SliceClassifier
    from tests.support import DEADLINE_S, wait_until

    BLOCK = 100

    class Gate:
        # holds the capture thread on a packet while shut: a busy capture whose socket fills up
        def __init__(self):
            self.open, self.held = threading.Event(), threading.Event()
            self.open.set()
        def observe(self, ts_ns, frame, offset):
            if not self.open.is_set():
                self.held.set()
                self.open.wait(DEADLINE_S)

    point = CountingPoint("lo", SliceClassifier.from_rules([{"slice": "video", "dscp": 34}]))
    gate = Gate()
    # one packet taken per receive and a receive buffer of a few dozen: a burst overflows it
    capture = LiveCapture("lo", FlowAggregator("capture:lo"), observers=(gate, point), batch=1,
                          receive_buffer_bytes=16384)
    sink = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sink.bind(("::1", 0))
    sender = AltMarkSender("::1", sink.getsockname()[1], Marker(0x77, block_packets=BLOCK), dscp=34)
    runner = threading.Thread(target=capture.run, daemon=True)
    runner.start()
    counted = lambda: sum(point.packets.values())

    def paced(blocks):  # five packets at a time, each five counted and the drop counter read before the next
        for _ in range(blocks * BLOCK // 5):
            before, sent_ns = counted(), time.time_ns()
            sender.send(5)
            wait_until(lambda: counted() >= before + 5 and (point.drops_read_ns or 0) > sent_ns, interval=0.002,
                       what="five packets counted")

    paced(2)  # blocks 0 and 1
    gate.open.clear()
    sender.send(BLOCK)  # block 2 in one burst while the capture is held
    assert gate.held.wait(DEADLINE_S)
    gate.open.set()
    wait_until(lambda: point.capture_drops, interval=0.002, what="the drops read")
    paced(3)  # blocks 3, 4, 5
    capture.stop()
    runner.join(DEADLINE_S)
    point.flush()
    print(json.dumps({"blocks": [[b.sequence, b.packets, b.capture_dropped] for b in point.take_final("lo")],
                      "kernel_drops": capture.stats.kernel_drops, "point_drops": point.capture_drops}))
""")


@pytest.mark.root
def test_blocks_counted_while_the_capture_socket_dropped_packets_are_flagged() -> None:
    """A real capture socket on a namespace's loopback, held busy while a block arrives in
    one burst: the kernel drops what its small buffer cannot hold, and that block (and the
    next, whose first packets could have been among them) ships flagged; the blocks counted
    whole away from the drops do not."""
    result = script_in_a_namespace(DROPPING, timeout=300)
    blocks = result["blocks"]
    assert [b[0] for b in blocks] == [0, 1, 2, 3, 4, 5]
    assert [(b[1], b[2]) for b in blocks if b[0] in (0, 4, 5)] == [(100, False)] * 3  # counted whole, clear
    assert blocks[2][1] < 100 and blocks[2][2]
    # a block left short lets the next block's first packets count as late ones of the block
    # before it: every block whose count the drops changed is flagged
    assert all(flagged for _, packets, flagged in blocks if packets != 100)
    assert result["kernel_drops"] == result["point_drops"] > 0


@pytest.mark.root
def test_a_capture_survives_its_interface_going_down_and_counts_again_once_up() -> None:
    """In the soak, a fault that set a link down ended that capture's thread for good (an
    ENETDOWN from recvmmsg): the agent's flow counters froze until its restart."""
    with network_namespace() as ns_a, network_namespace() as ns_b:
        _veth_pair(ns_a, ns_b)
        capturer = subprocess.Popen(
            ["ip", "netns", "exec", ns_b, sys.executable, "-c", SURVIVOR, "xc-b"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )

        def stats() -> dict:
            capturer.stdin.write("stats\n")
            capturer.stdin.flush()
            line = capturer.stdout.readline()
            assert line, capturer.stderr.read()
            return json.loads(line)

        def send() -> None:
            subprocess.run(["ip", "netns", "exec", ns_a, sys.executable, "-c", SENDER, B, "20"], check=True, timeout=60)

        try:
            assert capturer.stdout.readline().strip() == "ready", capturer.stderr.read()
            subprocess.run(["ip", "-n", ns_b, "link", "set", "xc-b", "down"], check=True)
            wait_until(lambda: stats()["errors"] >= 1, what="the capture told of its interface going down")
            subprocess.run(["ip", "-n", ns_b, "link", "set", "xc-b", "up"], check=True)
            before = stats()["packets"]
            wait_until(lambda: send() or stats()["packets"] > before, what="packets counted after the link came up")
            capturer.stdin.write("stop\n")
            capturer.stdin.flush()
            final = json.loads(capturer.stdout.readline())
        finally:
            stop_process(capturer)
        assert final["ended"] == ["returned"] and not final["alive"]  # it ran until stopped, no error ended it


FLOODED = textwrap.dedent("""
    import json, subprocess, sys, threading, time
    from collector.capture.aggregate import FlowAggregator
    from collector.capture.live import LiveCapture
    BLAST = "import socket\\ns = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\\n" \\
            "while True: s.sendto(b'x', ('::1', 9))"
    deadline_s = float(sys.argv[1])
    # Every packet ends the record before it (no idle time allowed): records end all the time.
    capture = LiveCapture("lo", FlowAggregator("capture:lo", idle_timeout_s=0))
    delivered = []
    runner = threading.Thread(target=capture.run, kwargs={"on_records": delivered.append, "expire_every_s": 0.2})
    runner.start()
    blasters = [subprocess.Popen([sys.executable, "-c", BLAST]) for _ in range(2)]
    started = time.monotonic()
    while capture.stats.packets < 100_000 and time.monotonic() - started < deadline_s:
        time.sleep(0.01)  # a poll of the condition: the flood under way
    flooded_at = capture.stats.packets
    while not delivered and time.monotonic() - started < deadline_s:
        time.sleep(0.01)
    reported = bool(delivered)
    capture.stop()
    runner.join(deadline_s)
    print(json.dumps({"flooded": flooded_at >= 100_000, "reported": reported, "stopped": not runner.is_alive(),
                      "still_blasting": all(b.poll() is None for b in blasters)}), flush=True)
    for b in blasters:
        b.kill()
""")


@pytest.mark.root
def test_a_flooded_capture_still_reports_its_records_and_stops() -> None:
    """Before, the capture read bursts for as long as the socket had packets: on a busy
    interface it never got to its expiry, so ended records piled up unreported in memory (the
    soak's core agent held thousands), and stop() was never seen."""
    result = script_in_a_namespace(FLOODED, "30")
    assert result == {"flooded": True, "reported": True, "stopped": True, "still_blasting": True}


SCRIPTED_TURNS = textwrap.dedent("""
    import json, socket, threading, time
    from collector.capture.aggregate import FlowAggregator
    from collector.capture.live import LiveCapture

    class Watcher:
        def __init__(self):
            self.drained = []
        def observe(self, ts_ns, frame, offset):
            pass
        def note_drops(self, after_ns, read_ns, dropped, drained_ns):
            self.drained.append(drained_ns)

    watcher = Watcher()
    capture = LiveCapture("lo", FlowAggregator("capture:lo"), observers=(watcher,))
    # one datagram nothing reads keeps the socket readable; the receives are scripted
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sender.sendto(b"x", ("::1", 9))
    flooded = True
    def receive(fd):
        time.sleep(0.001)
        return 1 if flooded else 0
    capture._receive_burst = receive
    runner = threading.Thread(target=capture.run, kwargs={"expire_every_s": 0.05})
    runner.start()
    def wait(condition):
        deadline = time.monotonic() + 30
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)  # a poll of the condition
    wait(lambda: len(watcher.drained) >= 3)
    during_flood = set(watcher.drained)
    emptied_after = time.time_ns()
    flooded = False
    wait(lambda: watcher.drained[-1] is not None)
    capture.stop()
    runner.join(30)
    print(json.dumps({"during_flood": sorted(map(str, during_flood)),
                      "drained_after_the_flood": watcher.drained[-1] >= emptied_after}), flush=True)
""")


@pytest.mark.root
def test_a_turn_that_leaves_packets_queued_tells_the_counting_points_nothing_was_drained() -> None:
    """Counting points end blocks by the time a receive last found the socket empty: a flooded
    turn, cut short with packets still queued, must not move it."""
    result = script_in_a_namespace(SCRIPTED_TURNS)
    assert result == {"during_flood": ["None"], "drained_after_the_flood": True}


def script_in_a_namespace(script: str, *args: str, timeout: float = 120) -> dict:
    """Run `script` in a fresh network namespace; what its last line printed, as JSON."""
    with network_namespace() as ns:
        run = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", script, *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=timeout,
        )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])
