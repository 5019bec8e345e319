"""`xnetmon analyzer` as a user runs it: serves on [::1], takes a shipment with the token,
keeps its state across a restart, and says what is wrong in one line."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time

import httpx
import nats
import nats.js.errors
import pytest

from analyzer.bus_checkpoint import CHECKPOINT_BUCKET, checkpoint_store, load_checkpoint
from analyzer.sla.policies import LAB_POLICY_FILE
from collector.bus.stream import STREAM_NAME, StreamLimits
from collector.contract.codec import encode_body
from collector.contract.examples import example_window
from collector.contract.records import PathKey
from collector.contract.shipment import ShipmentBatch
from collector.outputs.bus_sink import BusSink
from collector.outputs.sinks import Backoff
from tests.analyzer_support import T0, batch, window
from tests.bus_support import SITES, connect_options, running_bus, running_cluster, stream_info
from tests.support import DEADLINE_S, REPO, XNETMON, free_tcp_port, stop_process, wait_until, xnetmon
from xnetmon import bus_setup


def start(*args: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*XNETMON, "analyzer", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    banner = proc.stdout.readline()
    assert "API on http://[::1]:" in banner, f"analyzer did not start: {banner!r} {proc.stderr.read()}"
    return proc


def test_serves_takes_shipments_and_keeps_state_across_a_restart(tmp_path):
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    port = free_tcp_port()
    args = ("--listen", f"[::1]:{port}", "--token-file", str(token), "--state-dir", str(tmp_path / "state"))
    url = f"http://[::1]:{port}"
    body = encode_body(batch(*(window(seq) for seq in range(T0, T0 + 3))))
    proc = start(*args)
    try:
        response = httpx.post(f"{url}/v1/windows", content=body, headers={"Authorization": "Bearer t0ken"}, timeout=5)
        assert response.status_code == 200 and response.json()["accepted"] == 3
        assert httpx.post(f"{url}/v1/windows", content=body, timeout=5).status_code == 401
        assert "video" in {s["name"] for s in httpx.get(f"{url}/slices", timeout=5).json()}
    finally:
        stop_process(proc)
    assert proc.returncode == 0 and "3 windows taken" in proc.stdout.read()
    assert json.loads((tmp_path / "state" / "analyzer-store.json").read_text())["counters"]["windows_ingested"] == 3

    proc = start(*args)
    try:
        again = httpx.post(f"{url}/v1/windows", content=body, headers={"Authorization": "Bearer t0ken"}, timeout=5)
        assert again.json()["duplicates"] == 3  # the restarted analyzer remembers what it had
        assert httpx.get(f"{url}/healthz", timeout=5).json()["store"]["windows_ingested"] == 3
    finally:
        stop_process(proc)


def test_a_sigkill_before_the_next_snapshot_loses_no_acknowledged_window(tmp_path):
    """The 200 means durable: the agent deletes those windows from its spool. Killed before
    its 30 s snapshot, the restarted analyzer still has them (from its intake journal) and
    takes them again as duplicates. (Before the journal they were gone, and taken anew.)"""
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    port = free_tcp_port()
    args = ("--listen", f"[::1]:{port}", "--token-file", str(token), "--state-dir", str(tmp_path / "state"))
    url, auth = f"http://[::1]:{port}", {"Authorization": "Bearer t0ken"}
    body = encode_body(batch(*(window(seq) for seq in range(T0, T0 + 3))))
    proc = start(*args)
    try:
        response = httpx.post(f"{url}/v1/windows", content=body, headers=auth, timeout=DEADLINE_S)
        assert response.status_code == 200 and response.json()["accepted"] == 3
        proc.send_signal(signal.SIGKILL)
        proc.wait(DEADLINE_S)
    finally:
        stop_process(proc)
    assert not (tmp_path / "state" / "analyzer-store.json").exists()  # no snapshot came before the kill

    proc = start(*args)
    try:
        again = httpx.post(f"{url}/v1/windows", content=body, headers=auth, timeout=DEADLINE_S)
        assert again.json()["duplicates"] == 3 and again.json()["accepted"] == 0
        assert httpx.get(f"{url}/healthz", timeout=DEADLINE_S).json()["store"]["windows_ingested"] == 3
    finally:
        stop_process(proc)


def test_without_a_token_file_it_serves_read_only(tmp_path):
    port = free_tcp_port()
    proc = start("--listen", f"[::1]:{port}", "--topology", "small")
    try:
        assert httpx.post(f"http://[::1]:{port}/v1/windows", content=b"{}", timeout=5).status_code == 403
        assert httpx.get(f"http://[::1]:{port}/hints", timeout=5).json() == []  # inference runs, nothing to say
    finally:
        stop_process(proc)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--listen", "[fe80::zz]:80"], "--listen: 'fe80::zz' is not an IP address"),
        (["--listen", "localhost:80"], '--listen: expected "[ADDRESS]:PORT" such as "[::1]:9863"'),
        (["--listen", "[::1]"], '--listen: expected "[ADDRESS]:PORT" such as "[::1]:9863"'),
        (["--token-file", "/nonexistent/token"], "cannot read token file /nonexistent/token"),
        (["--policies", "/nonexistent/policies.yaml"], "/nonexistent/policies.yaml"),
        (["--topology", "/nonexistent/net.yaml"], "--topology: /nonexistent/net.yaml: cannot read"),
        (["--tls-cert", "/nonexistent/x.crt"], "--tls-cert and --tls-key go together"),
        (
            ["--tls-cert", "/nonexistent/x.crt", "--tls-key", "/nonexistent/x.key"],
            "cannot use certificate /nonexistent/x.crt",
        ),
        (["--site-tokens", "/nonexistent/tokens"], "--site-tokens: cannot read /nonexistent/tokens"),
    ],
)
def test_mistakes_are_one_clear_line(args, message):
    result = xnetmon("analyzer", *args, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xnetmon analyzer: ") and message in lines[0], result.stderr


@pytest.mark.parametrize("option", ["--policies", "--topology"])
def test_yaml_thousands_deep_is_one_clear_line_naming_the_file(tmp_path, option):
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 5000 + "]" * 5000)
    result = xnetmon("analyzer", option, str(deep), timeout=30)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{deep}:1:101: invalid YAML: nested too deeply" in lines[0], result.stderr


def test_topology_mistakes_are_said_in_words(tmp_path):
    topology = tmp_path / "net.yaml"
    small = (REPO / "lab" / "topologies" / "small.yaml").read_text()
    topology.write_text(small.replace("bandwidth_mbit: 100\n", "bandwidth_mbit: lots\nsurprise: 1\n", 1))
    result = xnetmon("analyzer", "--topology", str(topology), timeout=30)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "bandwidth_mbit: expected a valid number, got 'lots'" in line, line
    assert "unknown key 'surprise'" in line, line
    assert "Input should be" not in line and "Extra inputs" not in line, line


def test_a_second_analyzer_on_the_same_state_dir_is_refused_naming_the_holder_before_it_touches_anything(tmp_path):
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    state = tmp_path / "state"
    port = free_tcp_port()
    first = start("--listen", f"[::1]:{port}", "--token-file", str(token), "--state-dir", str(state))
    try:
        body = encode_body(batch(window(T0)))
        posted = httpx.post(
            f"http://[::1]:{port}/v1/windows", content=body, headers={"Authorization": "Bearer t0ken"}, timeout=5
        )
        assert posted.status_code == 200
        before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in state.rglob("*")}
        second = xnetmon(
            "analyzer",
            "--listen",
            f"[::1]:{free_tcp_port()}",
            "--token-file",
            str(token),
            "--state-dir",
            str(state),
            timeout=60,
        )
        assert second.returncode == 2, second.stderr
        assert f"state directory {state} is in use by pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in state.rglob("*")} == before
        assert httpx.get(f"http://[::1]:{port}/healthz", timeout=5).json()["store"]["windows_ingested"] == 1
    finally:
        stop_process(first)
    assert first.returncode == 0


def test_a_damaged_snapshot_is_reported_not_overwritten(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "analyzer-store.json").write_text("{broken")
    result = xnetmon("analyzer", "--listen", f"[::1]:{free_tcp_port()}", "--state-dir", str(state), timeout=30)
    assert result.returncode == 2 and "not a store snapshot" in result.stderr and "move the file away" in result.stderr
    assert (state / "analyzer-store.json").read_text() == "{broken"


@pytest.mark.tool("nats-server")
def test_consumes_the_bus_as_its_replica(tmp_path):
    with running_bus(tmp_path) as (pki, server):
        port = free_tcp_port()
        proc = start("--listen", f"[::1]:{port}", "--bus", server.url, "--bus-dir", str(pki), "--replica", "a")
        sink = BusSink(bus_setup.site_endpoint(pki, "cnty1a", (server.url,)), "cnty1a", tmp_path / "spool")
        try:
            assert "consuming the bus" in proc.stdout.readline()
            sink.submit(batch(*(window(seq) for seq in range(T0, T0 + 3))))

            def taken() -> int:
                return httpx.get(f"http://[::1]:{port}/healthz", timeout=5).json()["store"]["windows_ingested"]

            wait_until(lambda: taken() == 3, what="the windows from the bus in the analyzer")
            metrics = httpx.get(f"http://[::1]:{port}/metrics", timeout=10).text
            assert "xnet_analyzer_bus_connected 1.0" in metrics  # the intake's connection, wired
            assert "xnet_analyzer_bus_disconnections_total 0.0" in metrics
        finally:
            sink.close()
            stop_process(proc)
        assert proc.returncode == 0 and "3 windows taken" in proc.stdout.read()


def test_two_partitions_and_a_combiner_from_the_command_line_judge_every_slice(tmp_path):
    sites = tuple(f"site{i}" for i in range(6))
    with running_bus(tmp_path, sites, partitions=2) as (pki, server):
        bus = ("--bus", server.url, "--bus-dir", str(pki))
        ports = [free_tcp_port() for _ in range(3)]
        procs = [
            start("--listen", f"[::1]:{ports[i]}", *bus, "--partitions", "2", "--partition", str(i)) for i in (0, 1)
        ]
        procs.append(start("--listen", f"[::1]:{ports[2]}", *bus, "--partitions", "2", "--combiner"))
        sinks = [
            BusSink(
                bus_setup.site_endpoint(pki, site, (server.url,)), site, tmp_path / site, backoff=Backoff(0.05, 0.2)
            )
            for site in sites
        ]
        try:
            banners = [proc.stdout.readline() for proc in procs]
            assert "as analyzer-p0 (partition 0 of 2)" in banners[0] and "as analyzer-p1" in banners[1]
            assert "as analyzer-combiner (the combiner of 2 partitions)" in banners[2]
            for seq in range(T0, T0 + 4):
                for site, sink in zip(sites, sinks, strict=True):
                    sink.submit(batch(window(seq, source=site, sent=200), site=site))

            def video() -> dict:
                return httpx.get(f"http://[::1]:{ports[2]}/slices/video", timeout=5).json()["verdict"]

            def partition_paths(port: int) -> int:
                return httpx.get(f"http://[::1]:{port}/healthz", timeout=5).json()["store"]["paths"]

            # each path's first two windows are its warm-up: the third interval is the first judged
            wait_until(lambda: video()["intervals"] >= 1, what="the combiner's verdict on the video slice")
            assert partition_paths(ports[0]) and partition_paths(ports[1])
            assert partition_paths(ports[0]) + partition_paths(ports[1]) == len(sites)
            # root-cause hints come from the combiner (these windows carry no traces: none)
            assert httpx.get(f"http://[::1]:{ports[2]}/hints", timeout=5).json() == []
        finally:
            for sink in sinks:
                sink.close()
            for proc in procs:
                stop_process(proc)
        assert all(proc.returncode == 0 for proc in procs)
        # the partitions' epochs, one an interval each, were all taken
        assert "refused" not in procs[2].stderr.read()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--partitions", "2", "--partition", "0"], "--partitions is for an analysis over the bus"),
        (["--partition", "0"], "--partition and --combiner need --partitions P"),
        (["--bus", "tls://127.0.0.1:4222", "--partitions", "2"], "--partitions needs a role"),
        (["--bus", "tls://127.0.0.1:4222", "--partitions", "2", "--partition", "2"], "--partition 2: from 0 to 1"),
    ],
)
def test_partition_options_that_do_not_fit_are_one_clear_line(tmp_path, args, message):
    pki = bus_setup.init(tmp_path / "pki")
    with_dir = ["--bus-dir", str(pki)] if "--bus" in args else []
    result = xnetmon("analyzer", *args, *with_dir, timeout=30)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_bus_options_go_together(tmp_path):
    alone = xnetmon("analyzer", "--bus", "tls://127.0.0.1:4222")
    assert alone.returncode == 2 and "--bus and --bus-dir go together" in alone.stderr
    empty = xnetmon("analyzer", "--bus", "tls://127.0.0.1:4222", "--bus-dir", str(tmp_path))
    assert empty.returncode == 2 and "xnetmon bus init" in empty.stderr


def test_site_tokens_bind_shipments_to_their_site(tmp_path):
    tokens = tmp_path / "site-tokens"
    tokens.mkdir()
    (tokens / "cnty1a").write_text("cnty1a-token-0123456789\n")
    port = free_tcp_port()
    proc = start("--listen", f"[::1]:{port}", "--site-tokens", str(tokens))
    url = f"http://[::1]:{port}"
    try:
        forged = encode_body(batch(window(T0), window(T0, source="cnty2a", target="edge")))
        auth = {"Authorization": "Bearer cnty1a-token-0123456789"}
        taken = httpx.post(f"{url}/v1/windows", content=forged, headers=auth, timeout=10).json()
        assert (taken["accepted"] + taken["stale"], taken["refused"]) == (1, 1)
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert 'xnet_analyzer_windows_refused_total{reason="source-mismatch"} 1.0' in metrics
    finally:
        stop_process(proc, timeout=15)


def test_tls_read_token_and_openapi_from_the_command_line(tmp_path):
    import ssl

    from tests.api_support import write_self_signed_cert

    cert, key = write_self_signed_cert(tmp_path)
    (tmp_path / "read").write_text("r3ad-t0ken-0123456789\n")
    port = free_tcp_port()
    proc = subprocess.Popen(
        [
            *XNETMON,
            "analyzer",
            "--listen",
            f"[::1]:{port}",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            "--read-token-file",
            str(tmp_path / "read"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        banner = proc.stdout.readline()
        assert f"API on https://[::1]:{port}, slices" in banner and "reads need the read token" in banner, banner
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), timeout=10) as client:
            url = f"https://[::1]:{port}"
            assert client.get(f"{url}/slices").status_code == 401
            reading = {"Authorization": "Bearer r3ad-t0ken-0123456789"}
            assert client.get(f"{url}/slices", headers=reading).status_code == 200
            assert client.get(f"{url}/docs", headers=reading).status_code == 404  # no --openapi
    finally:
        stop_process(proc, timeout=15)


def test_bus_and_state_dir_do_not_go_together(tmp_path):
    both = xnetmon(
        "analyzer",
        "--bus",
        "tls://[::1]:4222",
        "--bus-dir",
        str(bus_setup.init(tmp_path / "pki")),
        "--state-dir",
        str(tmp_path / "state"),
    )
    assert both.returncode == 2 and "with --bus the state is checkpointed on the bus" in both.stderr


SECOND_NS = 1_000_000_000
SLICES = {"video": 0, "egov": 6}  # slice -> packets lost of 10 per window: one healthy, one breaching


class SyntheticAgents:
    """Each of SITES ships its windows of the interval that just ended, once a second, through
    its own BusSink, as an agent with 1 s windows does."""

    def __init__(self, pki, url: str, spool_dir) -> None:
        self.sinks = {
            site: BusSink(
                bus_setup.site_endpoint(pki, site, (url,)), site, spool_dir / site, backoff=Backoff(0.05, 0.5)
            )
            for site in SITES
        }
        self.shipped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        number = time.time_ns() // SECOND_NS
        while not self._stop.wait((number + 1) * SECOND_NS / 1e9 - time.time()):  # the next boundary
            for site, sink in self.sinks.items():
                windows = tuple(
                    example_window(
                        PathKey(site, "core", name, "stamp"),
                        number,
                        interval_ns=SECOND_NS,
                        lost_forward=lost,
                        received=10 - lost,
                        sent=10,
                    )
                    for name, lost in SLICES.items()
                )
                sink.submit(ShipmentBatch(site, windows, created_ns=(number + 1) * SECOND_NS))
                self.shipped += len(windows)
            number += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sink in self.sinks.values():
            sink.close()


def replica(pki, server, name: str, port: int) -> subprocess.Popen:
    proc = start(
        "--listen",
        f"[::1]:{port}",
        "--bus",
        server.url,
        "--bus-dir",
        str(pki),
        "--replica",
        name,
        "--interval",
        "1",
        "--checkpoint-every",
        "1",
        "--policies",  # seconds-long lookbacks: a breach shows within the test's patience
        str(LAB_POLICY_FILE),
    )
    assert "consuming the bus" in proc.stdout.readline()
    return proc


def statuses(port: int) -> dict[str, str]:
    """The statuses of the slices the agents report on (the others are no-data in both)."""
    found = httpx.get(f"http://[::1]:{port}/slices", timeout=5).json()
    return {s["name"]: s["status"] for s in found if s["name"] in SLICES}


def taken(port: int) -> dict[str, int]:
    return httpx.get(f"http://[::1]:{port}/healthz", timeout=5).json()["store"]


def checkpoint_seq(pki, server, name: str) -> int:
    async def read() -> int:
        client = await nats.connect(**connect_options(bus_setup.analyzer_endpoint(pki, (server.url,))))
        try:
            found = await load_checkpoint(await checkpoint_store(client.jetstream()), name)
            return 0 if found is None else found.seq
        finally:
            await client.close()

    return asyncio.run(read())


@pytest.mark.tool("nats-server")
def test_a_replica_killed_costs_its_peer_no_verdict_and_catches_up_from_its_checkpoint(tmp_path):
    expected = {"video": "ok", "egov": "breached"}
    with running_bus(tmp_path) as (pki, server):
        port_a, port_b = free_tcp_port(), free_tcp_port()
        a, b = replica(pki, server, "a", port_a), replica(pki, server, "b", port_b)
        agents = SyntheticAgents(pki, server.url, tmp_path / "spools")
        seen_by_b: list[dict[str, str]] = []
        watching = threading.Event()

        def watch_b() -> None:  # b's verdicts, as often as a dashboard could ask, while a is away
            while not watching.wait(0.1):
                seen_by_b.append(statuses(port_b))

        try:
            for port in (port_a, port_b):
                wait_until(
                    lambda port=port: statuses(port) == expected,
                    what=lambda port=port: f"the verdicts of :{port} ({statuses(port)}, store {taken(port)})",
                )
            wait_until(lambda: checkpoint_seq(pki, server, "a") > 0, what="a checkpoint of replica a")
            watcher = threading.Thread(target=watch_b, daemon=True)
            watcher.start()
            a.send_signal(signal.SIGKILL)
            a.wait()
            before = taken(port_b)["windows_ingested"]
            wait_until(  # a few intervals without a
                lambda: taken(port_b)["windows_ingested"] >= before + 3 * len(SITES) * len(SLICES),
                what="three more intervals in replica b",
            )
            a = replica(pki, server, "a", port_a)
            wait_until(lambda: statuses(port_a) == statuses(port_b) == expected, what="a's verdicts equal b's again")
            watching.set()
            watcher.join(10)
            agents.close()
            wait_until(
                lambda: taken(port_a)["windows_ingested"] == taken(port_b)["windows_ingested"] == agents.shipped,
                what=lambda: f"every window in both replicas: a {taken(port_a)}, b {taken(port_b)}, {agents.shipped}",
            )
            assert taken(port_a)["windows_duplicate"] == 0  # resumed after its checkpoint, not before
        finally:
            watching.set()
            agents.close()
            stop_process(a)
            stop_process(b)
    assert seen_by_b and all(seen == expected for seen in seen_by_b), seen_by_b


@pytest.mark.tool("nats-server")
def test_an_analyzer_given_a_clusters_three_servers_makes_a_stream_r3_sized_for_its_sites(tmp_path):
    with running_cluster(tmp_path) as (pki, cluster):
        bus = [arg for url in cluster.urls for arg in ("--bus", url)]
        sizing = ["--stream-sites", "100", "--stream-hours", "2", "--stream-window", "10"]  # a disk's room, x3
        proc = start("--listen", f"[::1]:{free_tcp_port()}", *bus, "--bus-dir", str(pki), *sizing)
        try:
            assert "consuming the bus" in proc.stdout.readline()
            endpoint = bus_setup.analyzer_endpoint(pki, cluster.urls)
            info = wait_until(lambda: _stream_or_none(endpoint, STREAM_NAME), what="the stream the analyzer creates")
            bucket = wait_until(
                lambda: _stream_or_none(endpoint, f"OBJ_{CHECKPOINT_BUCKET}"), what="its checkpoint bucket"
            )
        finally:
            stop_process(proc, timeout=15)
    assert info.config.num_replicas == 3 and bucket.config.num_replicas == 3
    assert info.config.max_bytes == StreamLimits.for_sites(100, 2, 10).max_bytes
    assert info.config.max_age == 7200


def _stream_or_none(endpoint, name: str):
    try:
        return stream_info(endpoint, name)
    except (nats.js.errors.NotFoundError, TimeoutError):  # not made yet, or a cluster still electing
        return None
