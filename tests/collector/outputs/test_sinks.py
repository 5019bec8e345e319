"""Sinks: the in-process sink, and HttpSink against a real HTTP receiver that can answer
errors and be stopped and restarted on the same port (analyzer outages). The wire format
itself is tested with its codec (tests/collector/contract/test_codec.py)."""

from __future__ import annotations

import asyncio
import collections
import errno
import json
import logging
import os
import queue
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from collector.contract.codec import ShipmentParser, encode_body
from collector.contract.examples import example_health
from collector.contract.marked_blocks import MarkedBlock
from collector.contract.records import FlowId, PathObservation
from collector.contract.shipment import ShipmentBatch
from collector.outputs.sinks import Backoff, HttpSink, InProcessSink, Outcome, WindowSink, classify
from collector.outputs.spool import WindowSpool
from tests.analyzer_support import W, window
from tests.support import (
    DEADLINE_S,
    REPO,
    XNETMON,
    CountingBackoff,
    LineReader,
    Stopwatch,
    failing_fsync,
    fill_filesystem,
    free_tcp_port,
    free_udp_port,
    small_filesystem,
    stop_process,
    wait_until,
)

TOKEN = "s3cret"
FAST = Backoff(initial_s=0.01, cap_s=0.05)  # keeps outage tests quick


def batch(*seqs: int, **extra) -> ShipmentBatch:
    return ShipmentBatch("cnty1a", tuple(window(s) for s in seqs), created_ns=17 * W, **extra)


def blocks(count: int) -> tuple[MarkedBlock, ...]:
    return tuple(
        MarkedBlock("cnty1a", "cnty1a-core", "out", "video", 7, i, i % 2, 100, i * W, i * W + W // 2, ())
        for i in range(count)
    )


OBSERVATION = PathObservation(
    "cnty1a", "core", "video", FlowId("udp", 0x12345, 33434, 862), ("fd00::1", None, "fd00::2"), True, 17 * W
)
HEALTH = example_health(observed_ns=17 * W)


# -- a real receiver --------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True


class Receiver:
    """An analyzer stand-in on [::1]: checks the token, answers scripted statuses, records
    every request and the windows of every batch it accepted."""

    def __init__(self) -> None:
        self.port = free_tcp_port("::1")
        self.url = f"http://[::1]:{self.port}"
        self.script: collections.deque[int] = collections.deque()
        self.requests: list[tuple[int, dict, dict]] = []  # (status, headers, body)
        self.accepted: list[dict] = []
        self.token = TOKEN  # the one it accepts: changed to play an analyzer started with another
        self._server: _Server | None = None

    @property
    def window_ids(self) -> list[tuple[str, int]]:
        return [(w["key"]["target"], w["seq"]) for b in self.accepted for w in b["windows"]]

    def answer(self, *statuses: int) -> None:
        self.script.extend(statuses)

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/windows":
                    status, reply = 404, {"error": "no such endpoint"}
                elif self.headers.get("Authorization") != f"Bearer {receiver.token}":
                    status, reply = 401, {"error": "invalid bearer token"}
                else:
                    status = receiver.script.popleft() if receiver.script else 200
                    reply = {"error": "malformed window: seq missing"} if status == 400 else {}
                receiver.requests.append((status, dict(self.headers), body))
                if 200 <= status < 300:
                    receiver.accepted.append(body)
                payload = json.dumps(reply).encode()
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self._server = _Server(("::1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def make_sink(tmp_path):
    sinks: list[HttpSink] = []

    def make(url: str, token: str = TOKEN, max_windows: int = 1000, *, spool_dir=None, **options) -> HttpSink:
        options.setdefault("backoff", FAST)
        options.setdefault("timeout_s", 2.0)
        sink = HttpSink(url, token, spool_dir or tmp_path / "spool", max_windows, **options)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close(timeout=0)


# -- policies --------------------------------------------------------------------------------------


def test_response_policy():
    assert [classify(s) for s in (200, 202, 204)] == [Outcome.DELIVERED] * 3
    assert [classify(s) for s in (400, 404, 413, 422)] == [Outcome.REJECTED] * 4
    assert [classify(s) for s in (401, 403, 408, 429, 500, 502, 503, 301)] == [Outcome.RETRY] * 8


def test_backoff_grows_with_jitter_up_to_a_cap():
    backoff = Backoff(initial_s=1.0, cap_s=8.0)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (10, 8.0), (10_000, 8.0)]:
        delays = [backoff.delay(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


# -- in-process ------------------------------------------------------------------------------------


def test_in_process_sink_hands_batches_to_a_callable():
    seen = []
    sink = InProcessSink(seen.append)
    assert isinstance(sink, WindowSink)
    sink.submit(batch(1, 2))
    assert seen == [batch(1, 2)]
    assert (sink.delivered_total, sink.spool_depth) == (2, 0)


def test_in_process_sink_counts_an_analyzer_failure_and_goes_on():
    def broken(_):
        raise ValueError("bug")

    sink = InProcessSink(broken)
    sink.submit(batch(1))
    assert (sink.delivered_total, sink.rejected_total) == (0, 1)


def test_in_process_sink_feeds_a_queue_and_drops_when_full():
    q: queue.Queue = queue.Queue(maxsize=1)
    sink = InProcessSink(q)
    sink.submit(batch(1))
    sink.submit(batch(2, 3))
    assert [w.seq for w in q.get_nowait().windows] == [1]
    assert (sink.delivered_total, sink.dropped_total) == (1, 2)
    sink.close()
    with pytest.raises(RuntimeError):
        sink.submit(batch(4))


def test_in_process_sink_counts_the_in_situ_blocks_of_a_batch_it_drops():
    q: queue.Queue = queue.Queue(maxsize=1)
    sink = InProcessSink(q)
    sink.submit(batch(1))
    sink.submit(batch(marked_blocks=blocks(3)))
    assert (sink.dropped_total, sink.marked_blocks_dropped_total) == (0, 3)


def test_in_process_sink_feeds_an_asyncio_queue():
    q: asyncio.Queue = asyncio.Queue()
    InProcessSink(q).submit(batch(1))
    assert q.get_nowait().windows[0].seq == 1


# -- HTTP ------------------------------------------------------------------------------------------


def test_delivers_batches_with_the_bearer_token(receiver, make_sink):
    receiver.start()
    sink = make_sink(receiver.url)
    assert isinstance(sink, WindowSink)
    sink.submit(batch(1, 2, observations=(OBSERVATION,), health=HEALTH))
    sink.submit(batch(3))
    wait_until(lambda: sink.delivered_total == 3)
    assert receiver.window_ids == [("core", 1), ("core", 2), ("core", 3)]
    _, headers, first = receiver.requests[0]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Content-Type"] == "application/json"
    assert ShipmentParser().from_dict(first) == batch(1, 2, observations=(OBSERVATION,), health=HEALTH)
    assert (sink.spool_depth, sink.dropped_total, sink.rejected_total) == (0, 0, 0)


def test_analyzer_outage_loses_and_duplicates_nothing(receiver, make_sink):
    receiver.start()
    backoff = CountingBackoff(FAST)
    sink = make_sink(receiver.url, backoff=backoff)
    sink.submit(batch(0))
    wait_until(lambda: sink.delivered_total == 1)

    receiver.stop()  # the analyzer goes away for a while
    for seq in range(1, 21):
        sink.submit(ShipmentBatch("cnty1a", (window(seq, target="core"), window(seq, target="prov3")), created_ns=seq))
    wait_until(lambda: sink.spool_depth == 40)
    wait_until(lambda: backoff.retries >= 3)  # several failed retries
    assert sink.delivered_total == 1

    receiver.start()  # same port
    wait_until(lambda: sink.delivered_total == 41)
    expected = [("core", 0)] + [(t, s) for s in range(1, 21) for t in ("core", "prov3")]
    assert receiver.window_ids == expected  # each exactly once, in order
    assert (sink.spool_depth, sink.dropped_total, sink.rejected_total) == (0, 0, 0)


def test_5xx_and_429_are_retried_until_delivered(receiver, make_sink):
    receiver.answer(500, 503, 429)
    receiver.start()
    sink = make_sink(receiver.url)
    sink.submit(batch(1))
    sink.submit(batch(2))
    wait_until(lambda: sink.delivered_total == 2)
    assert [status for status, _, _ in receiver.requests] == [500, 503, 429, 200, 200]
    assert receiver.window_ids == [("core", 1), ("core", 2)]


def test_400_is_rejected_not_retried_and_counted(receiver, make_sink, caplog):
    receiver.answer(400)
    receiver.start()
    sink = make_sink(receiver.url)
    with caplog.at_level(logging.ERROR, logger="collector.outputs.sinks"):
        sink.submit(batch(1, 2))
        sink.submit(batch(3))
        wait_until(lambda: sink.delivered_total == 1)
    assert sink.rejected_total == 2
    assert [status for status, _, _ in receiver.requests] == [400, 200]  # never sent again
    assert receiver.window_ids == [("core", 3)]
    assert "HTTP 400" in caplog.text and "malformed window: seq missing" in caplog.text


def test_a_refused_token_keeps_the_spool_and_retries_until_the_analyzer_takes_it(receiver, make_sink, caplog):
    receiver.token = "the analyzer lost its token file"
    receiver.start()
    sink = make_sink(receiver.url)
    with caplog.at_level(logging.ERROR, logger="collector.outputs.sinks"):
        for seq in range(0, 50, 5):
            sink.submit(batch(*range(seq, seq + 5)))
        wait_until(lambda: sink.ship_failures["auth"] >= 3)  # retried, with backoff
    assert (sink.rejected_total, sink.dropped_total, sink.delivered_total) == (0, 0, 0)
    assert sink.spool_depth == 50  # nothing thrown away: the token is the operator's mistake
    assert sink.ship_failures["rejected"] == 0
    assert "refused the agent's token (HTTP 401)" in caplog.text
    assert "invalid bearer token" in caplog.text
    assert TOKEN not in caplog.text  # the token itself never reaches a log
    assert caplog.text.count("refused the agent's token") == 1  # once per episode, not per retry

    receiver.token = TOKEN  # the operator fixed it
    wait_until(lambda: sink.delivered_total == 50)
    assert receiver.window_ids == [("core", s) for s in range(50)]
    assert sink.spool_depth == 0


def test_ship_failures_are_counted_by_reason(receiver, make_sink):
    sink = make_sink(receiver.url)  # receiver down: the network fails
    sink.submit(batch(1))
    wait_until(lambda: sink.ship_failures["network"] >= 1)
    receiver.answer(503, 400)
    receiver.start()
    wait_until(lambda: sink.ship_failures["rejected"] == 1)
    assert sink.ship_failures["unavailable"] == 1
    assert set(sink.ship_failures) == {"auth", "rejected", "unavailable", "network"}


def test_a_full_spool_drops_the_oldest_windows_and_delivers_the_rest_in_order(receiver, make_sink):
    sink = make_sink(receiver.url, max_windows=5)  # receiver not started yet
    for seq in range(0, 12, 2):
        sink.submit(batch(seq, seq + 1))  # 12 windows for a 5-window spool
    wait_until(lambda: sink.dropped_total == 7)
    assert sink.spool_depth == 5
    receiver.start()
    wait_until(lambda: sink.delivered_total == 5)
    assert receiver.window_ids == [("core", s) for s in range(7, 12)]
    assert sink.dropped_total == 7


def test_shipments_of_blocks_alone_are_bounded_in_bytes_counted_and_never_push_windows_out(receiver, make_sink):
    """The agent ships ended in-situ blocks every quarter second in shipments of their own:
    with the analyzer away they used to pile up to max_windows records whatever their size,
    and those dropped went uncounted."""
    line = len(encode_body(batch(marked_blocks=blocks(4)))) + 100  # a spool line: the body and its header
    sink = make_sink(receiver.url, max_windows=1000, max_blocks_only_bytes=10 * line)  # receiver not started yet
    sink.submit(batch(1))
    for _ in range(40):
        sink.submit(batch(marked_blocks=blocks(4)))
    sink.submit(batch(2))
    wait_until(lambda: sink.marked_blocks_dropped_total > 0, what="blocks past the bound dropped")
    dropped = sink.marked_blocks_dropped_total
    assert dropped % 4 == 0 and 100 <= dropped < 160 and sink.dropped_total == 0
    receiver.start()
    wait_until(lambda: sink.delivered_total == 2, what="both windows delivered")
    wait_until(lambda: sink.spool_depth == 0 and len(receiver.accepted) == 2 + 40 - dropped // 4)
    assert receiver.window_ids == [("core", 1), ("core", 2)]
    shipped = sum(len(body.get("marked_blocks", [])) for body in receiver.accepted)
    assert shipped + dropped == 160  # every block delivered or counted


def test_a_full_disk_counts_the_in_situ_blocks_it_refused(receiver, make_sink, tmp_path):
    with small_filesystem(tmp_path / "disk") as disk:
        sink = make_sink(receiver.url, spool_dir=disk / "spool", segment_bytes=1)  # analyzer away
        sink.submit(batch(1))
        filler = fill_filesystem(disk)
        sink.submit(batch(marked_blocks=blocks(5)))
        assert sink.marked_blocks_dropped_total == 5  # refused by the disk: counted, not silent
        filler.unlink()
        sink.close(timeout=0)


def test_a_new_sink_delivers_what_a_stopped_one_left_in_order(receiver, make_sink):
    first = make_sink(receiver.url)  # receiver down
    for seq in range(5):
        first.submit(batch(seq))
    first.close(timeout=0.2)
    with pytest.raises(RuntimeError):
        first.submit(batch(99))

    second = make_sink(receiver.url)  # would fail if the first still held the spool
    assert second.spool_depth == 5
    second.submit(batch(5))
    receiver.start()
    wait_until(lambda: second.delivered_total == 6)
    assert receiver.window_ids == [("core", s) for s in range(6)]


def test_damaged_spool_lines_are_skipped_and_counted_not_fatal(receiver, make_sink, tmp_path):
    first = make_sink(receiver.url)
    for seq in range(3):
        first.submit(batch(seq))
    first.close(timeout=0)
    [segment] = (tmp_path / "spool").glob("*.jsonl")
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(lines[0] + b"garbage\n" + lines[1][:40] + b"\n" + lines[2] + lines[2][:25])

    receiver.start()
    second = make_sink(receiver.url)
    wait_until(lambda: second.delivered_total == 2)
    assert receiver.window_ids == [("core", 0), ("core", 2)]
    assert second.corrupt_total == 3  # garbage, the cut-short line 1, the crash mid-write at the end


def test_close_gives_up_on_an_absent_analyzer_within_its_timeout(receiver, make_sink):
    sink = make_sink(receiver.url)
    sink.submit(batch(1))
    watch = Stopwatch()  # the machine's share excused
    sink.close(timeout=0.3)
    assert watch.seconds() < 1.0
    assert sink.spool_depth == 1 and sink.delivered_total == 0


def test_a_big_batch_goes_out_as_several_posts(receiver, make_sink):
    receiver.start()
    sink = make_sink(receiver.url, max_windows_per_post=4)
    sink.submit(batch(*range(10), observations=(OBSERVATION,), health=HEALTH))
    wait_until(lambda: sink.delivered_total == 10)
    assert [len(b["windows"]) for b in receiver.accepted] == [4, 4, 2]
    assert [len(b["observations"]) for b in receiver.accepted] == [1, 0, 0]
    assert [b["health"] is not None for b in receiver.accepted] == [True, False, False]
    assert receiver.window_ids == [("core", s) for s in range(10)]


class FailingOnce(httpx.HTTPTransport):
    """A real transport whose first request meets an error no destination expects (a bug)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a bug in the transport")
        return super().handle_request(request)


def test_an_unexpected_error_while_sending_is_counted_and_the_body_sent_again(receiver, make_sink):
    """Before, the shipping thread ended on it for good: nothing more left the spool."""
    receiver.start()
    sink = make_sink(receiver.url, transport=FailingOnce())
    sink.submit(batch(1))
    wait_until(lambda: sink.delivered_total == 1)
    assert sink.errors_total == {"spool": 0, "ship": 1}
    sink.submit(batch(2))
    wait_until(lambda: sink.delivered_total == 2)
    assert receiver.window_ids == [("core", 1), ("core", 2)]


@pytest.mark.root
def test_a_full_disk_drops_counted_batches_and_the_sink_recovers_when_space_returns(receiver, make_sink, tmp_path):
    with small_filesystem(tmp_path / "disk") as disk:
        sink = make_sink(receiver.url, spool_dir=disk / "spool", segment_bytes=1)  # analyzer away
        sink.submit(batch(1))
        wait_until(lambda: list((disk / "spool").glob("*.jsonl")))  # on disk, not only handed over
        filler = fill_filesystem(disk)
        sink.submit(batch(2, 3))
        wait_until(lambda: sink.dropped_total == 2)  # refused by the disk: counted, not silent
        filler.unlink()
        sink.submit(batch(4))
        receiver.start()
        wait_until(lambda: sink.delivered_total == 2)
        assert receiver.window_ids == [("core", 1), ("core", 4)]
        assert (sink.dropped_total, sink.spool_depth) == (2, 0)
        sink.close(timeout=0)


def test_a_failed_fsync_is_counted_and_flushed_again_until_an_fsync_succeeds(receiver, make_sink, monkeypatch):
    """The spooling thread used to close the descriptors whose fsync failed: counted once,
    the records' sync was never tried again (and the count raced submit's)."""
    synced = failing_fsync(monkeypatch, failures=2)  # the segment's fsync and the directory's, in the first flush
    sink = make_sink(receiver.url)  # analyzer away
    sink.submit(batch(1))
    wait_until(lambda: len(synced) == 2, what="the segment and the directory synced by a retry, with no new write")
    assert sink.errors_total == {"spool": 1, "ship": 0}  # one failed flush
    receiver.start()
    wait_until(lambda: sink.delivered_total == 1, what="the batch delivered")
    assert receiver.window_ids == [("core", 1)] and sink.dropped_total == 0


def test_a_failed_fsync_at_close_is_counted_and_the_connection_still_closed(receiver, make_sink, monkeypatch):
    """The spool's close raises the last flush's failure: it used to escape the shipping
    thread's finally, so the thread died with a traceback and never closed the transport."""
    sink = make_sink(receiver.url)  # analyzer away: the batch stays spooled
    sink.submit(batch(1))
    wait_until(lambda: sink.spool_depth == 1, what="the batch spooled")

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", fsync)
    died: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", died.append)
    sink.submit(batch(2))  # written, never synced
    sink.close(timeout=0)
    assert not sink._thread.is_alive() and not died, died
    assert sink._client.is_closed, "the HTTP client was left open"
    assert sink.errors_total["spool"] >= 2  # the spooling thread's last flush, then the close's


def test_a_sigkilled_agent_has_spooled_every_window_but_the_one_being_closed(tmp_path):
    """A real `xnetmon agent` ships to an analyzer that takes the connection and never
    answers, so its sends hang for their whole timeout; windows keep closing meanwhile. After
    a SIGKILL its spool holds every window /metrics had counted, but at most the one interval
    that was being closed. (When batches were spooled by the thread that also sends, they
    waited in memory behind the hanging send, and the kill lost them all.)"""
    reflector_port, metrics_port = free_udp_port(), free_tcp_port("::1")
    silent = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)  # connections queue, never answered
    silent.bind(("::1", 0))
    silent.listen(64)
    (tmp_path / "token").write_text(TOKEN)
    config = tmp_path / "agent.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        site: {{name: here}}
        reflector: {{bind: ["::1"], port: {reflector_port}}}
        metrics: {{listen: "[::1]:{metrics_port}"}}
        probing: {{interval_s: 0.2, window_s: 1, timeout_s: 0.5, trace: {{enabled: false}}}}
        targets: [{{name: self, address: "::1", port: {reflector_port}, slices: [video]}}]
        analyzer: {{url: "http://[::1]:{silent.getsockname()[1]}", token_file: token, spool_dir: spool}}
    """)
    )
    proc = subprocess.Popen([*XNETMON, "agent", "--config", str(config)], stderr=subprocess.PIPE, text=True, cwd=REPO)
    stderr = LineReader(proc.stderr)
    try:
        # Four windows counted: the first body's send hangs for 10 s from the first window on.
        counted = wait_until(
            lambda: (sent := probes_sent(metrics_port, "here", "self")) >= 20 and sent,
            what=lambda: f"four windows on /metrics; agent said: {''.join(stderr.lines)[-1500:]}",
        )
        proc.kill()
        proc.wait(DEADLINE_S)
    finally:
        stop_process(proc)
        silent.close()
    windows = spooled_windows(tmp_path / "spool")
    assert windows, "nothing spooled"
    one_interval = max(w["sent"] for w in windows)
    assert sum(w["sent"] for w in windows) >= counted - one_interval, (counted, windows)
    seqs = sorted(w["seq"] for w in windows)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs  # none missing in between


# The sink in a child process on a disk whose fsync takes a second (a disk other writers keep
# busy): it prints the seq of each batch once submit() has returned, until it is killed.
SUBMITTING_CHILD = """
import os, sys, time
from collector.contract.shipment import ShipmentBatch
from collector.outputs.sinks import Backoff, HttpSink
from tests.analyzer_support import W, window

flush = os.fsync
os.fsync = lambda fd: (time.sleep(1.0), flush(fd))[1]
sink = HttpSink(sys.argv[1], "t", sys.argv[2], backoff=Backoff(initial_s=0.05, cap_s=0.1))
for seq in range(1, 10_000):
    sink.submit(ShipmentBatch("cnty1a", (window(seq),), created_ns=17 * W))
    print(seq, flush=True)
sys.stdin.read()
"""


def test_every_batch_a_sink_accepted_survives_a_sigkill_and_ships_once_after_a_restart(receiver, make_sink, tmp_path):
    """Before, submit() handed batches to a thread that appended and fsync'd them one by one:
    behind a slow fsync they waited in memory, and a SIGKILL lost every one of them."""
    spool = tmp_path / "spool"
    # Bound and not listening, so every send is refused and retried (a port found free and
    # let go could be taken meanwhile by another test's server).
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as refusing:
        refusing.bind(("::1", 0))
        absent = f"http://[::1]:{refusing.getsockname()[1]}"
        proc = subprocess.Popen(
            [sys.executable, "-c", SUBMITTING_CHILD, absent, str(spool)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        accepted = LineReader(proc.stdout)
        try:
            accepted.wait_for(lambda line: line.strip() == "10")
            proc.kill()
            proc.wait(DEADLINE_S)
        finally:
            stop_process(proc)
    seqs = [int(line) for line in accepted.text().split()]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 10, seqs

    receiver.start()
    # The child's bound (100,000), not the fixture's 1,000: on a loaded machine the child
    # submitted up to ~1,400 before the kill, and a smaller bound drops the oldest, as it should.
    sink = make_sink(receiver.url, max_windows=100_000, spool_dir=spool)
    wait_until(lambda: sink.spool_depth == 0)  # everything the spool held, delivered
    shipped = [seq for _, seq in receiver.window_ids]
    # Every accepted batch, once and in order; at most one more, submitted as the kill came.
    assert shipped[: len(seqs)] == seqs and len(shipped) - len(seqs) in (0, 1), (seqs, shipped)
    assert shipped == list(range(1, len(shipped) + 1))


def probes_sent(metrics_port: int, src: str, dst: str) -> float:
    """The agent's xnet_probe_sent_total for the path, 0 until it is shown."""
    try:
        text = urllib.request.urlopen(f"http://[::1]:{metrics_port}/metrics", timeout=10).read().decode()
    except OSError:
        return 0.0  # not listening yet
    prefix = f'xnet_probe_sent_total{{dst="{dst}",probe="stamp",slice="video",src="{src}"}} '
    return next((float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)), 0.0)


def spooled_windows(directory) -> list[dict]:
    """Every window a spool directory holds, oldest first (read by a spool of its own)."""
    windows = []
    with WindowSpool(directory, max_windows=1_000_000) as spool:
        while (body := spool.head()) is not None:
            windows.extend(json.loads(body)["windows"])
            spool.pop_head()
    return windows
