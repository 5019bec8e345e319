"""Running the analyzer: the store from its snapshot, snapshots from a thread, the in-process
feeder, the API's listening sockets and server, and the service every command assembles from
them (what an agent in the same process feeds in is served and survives a restart; a damaged
snapshot or a taken port fails before it starts)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from analyzer.rootcause.hints import Hint
from analyzer.service import (
    SNAPSHOT_NAME,
    AnalyzerService,
    ApiServer,
    SnapshotKeeper,
    StoreFeeder,
    listening_socket,
    open_store,
)
from analyzer.sla.verdicts import default_policies
from collector.contract.shipment import ShipmentBatch
from tests.analyzer_support import T0, W, batch, window
from tests.support import wait_until


def new_store(state_dir=None):
    return open_store(state_dir, default_policies(), catch_up_s=0)


def test_a_store_is_new_without_a_snapshot_and_restored_from_one(tmp_path):
    assert new_store(None).stats()["windows_ingested"] == 0
    store = new_store(tmp_path)  # a state directory with no snapshot yet
    store.ingest(batch(window(T0), window(T0 + 1)), (T0 + 2) * W)
    keeper = SnapshotKeeper(store, tmp_path, every_s=3600, tick_s=3600)
    keeper.stop()  # writes the snapshot once more at the end
    restored = new_store(tmp_path)
    assert restored.latest_window(window(T0).key) == window(T0 + 1)
    assert restored.stats()["windows_ingested"] == 2


def test_a_stop_without_the_final_snapshot_leaves_the_store_as_a_crash_would(tmp_path):
    store = new_store(tmp_path)
    store.ingest(batch(window(T0)), (T0 + 1) * W)
    keeper = SnapshotKeeper(store, tmp_path, every_s=3600, tick_s=3600)
    keeper.save()  # a periodic snapshot: one window
    store.ingest(batch(window(T0 + 1)), (T0 + 2) * W)
    keeper.stop(final_snapshot=False)
    assert new_store(tmp_path).stats()["windows_ingested"] == 1  # the second is lost, as in a crash


def test_a_snapshot_that_cannot_be_read_stops_the_start_naming_the_file(tmp_path):
    (tmp_path / SNAPSHOT_NAME).mkdir()
    with pytest.raises(ValueError, match=f"cannot read {tmp_path / SNAPSHOT_NAME}: Is a directory"):
        new_store(tmp_path)


def test_the_keeper_writes_snapshots_while_it_runs(tmp_path):
    keeper = SnapshotKeeper(new_store(tmp_path), tmp_path, every_s=0.0, tick_s=0.01)
    try:
        wait_until((tmp_path / SNAPSHOT_NAME).exists)
    finally:
        keeper.stop()
    assert keeper.failures == 0


def test_a_snapshot_that_cannot_be_written_is_counted_and_the_keeper_goes_on(tmp_path):
    not_a_directory = tmp_path / "state"
    not_a_directory.write_text("")
    keeper = SnapshotKeeper(new_store(), not_a_directory, every_s=0.0, tick_s=0.01)
    try:
        wait_until(lambda: keeper.failures >= 2)  # one failed save does not end the thread
    finally:
        keeper.stop()


def test_the_feeder_ingests_in_order_and_a_bad_batch_does_not_stop_it():
    store = new_store()
    feeder = StoreFeeder(store, clock=lambda: (T0 + 3) * W)
    feeder.queue.put(batch(window(T0)))
    feeder.queue.put(ShipmentBatch("cnty1a", (None,)))  # not a window
    feeder.queue.put(batch(window(T0 + 1)))
    feeder.join()
    feeder.stop()
    assert feeder.failures == 1
    assert store.latest_window(window(T0).key) == window(T0 + 1)


def test_the_unspecified_address_listens_on_ipv6_and_ipv4_alike():
    sock = listening_socket("", 0)
    try:
        assert sock.family == socket.AF_INET6 and sock.getsockname()[0] == "::"
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        sock.close()
    ipv4 = listening_socket("127.0.0.1", 0)
    ipv4.close()
    assert ipv4.family == socket.AF_INET


def test_a_port_in_use_is_an_error():
    taken = listening_socket("[::1]", 0)
    try:
        with pytest.raises(OSError):
            listening_socket("::1", taken.getsockname()[1])
    finally:
        taken.close()


async def hello(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.mark.parametrize("host, shown", [("::1", "[::1]"), ("127.0.0.1", "127.0.0.1")])
def test_the_api_server_serves_on_the_port_it_picked_until_stopped(host, shown):
    with ApiServer(hello, (host, 0)) as server:
        port = server.address[1]
        assert port > 0 and server.url == f"http://{shown}:{port}"
        assert httpx.get(server.url, timeout=5).text == "hello"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{shown}:{port}", timeout=5)


def test_what_an_agent_feeds_in_is_served_and_kept_across_a_restart(tmp_path):
    now = time.time_ns() // W  # windows of the last intervals: the feeder ingests at the wall clock
    service = AnalyzerService(
        default_policies(), ("::1", 0), state_dir=tmp_path, feed=True, token="secret", catch_up_s=0
    )
    try:
        url = service.serve_in_thread().url
        service.feeder.queue.put(batch(window(now - 2), window(now - 1)))
        service.feeder.join()
        assert [a["site"] for a in httpx.get(f"{url}/healthz", timeout=5).json()["agents"]] == ["cnty1a"]
        assert httpx.get(f"{url}/hints", timeout=5).json() == []  # inference runs, nothing to say
        assert httpx.post(f"{url}/v1/windows", content=b"{}", timeout=5).status_code == 401  # writes need the token
    finally:
        service.stop()  # the last snapshot
    restored = AnalyzerService(default_policies(), ("::1", 0), state_dir=tmp_path, catch_up_s=0)
    try:
        assert restored.store.stats()["windows_ingested"] == 2
        assert [a.site for a in restored.store.agents()] == ["cnty1a"]
    finally:
        restored.stop()


def test_a_damaged_snapshot_or_a_taken_port_fails_before_any_thread_starts(tmp_path):
    (tmp_path / SNAPSHOT_NAME).write_text("{broken")
    before = set(threading.enumerate())
    with pytest.raises(ValueError, match="not a store snapshot"):
        AnalyzerService(default_policies(), ("::1", 0), state_dir=tmp_path)
    taken = listening_socket("::1", 0)
    try:
        with pytest.raises(OSError):
            AnalyzerService(default_policies(), taken.getsockname()[:2])
    finally:
        taken.close()
    assert set(threading.enumerate()) == before
    assert (tmp_path / SNAPSHOT_NAME).read_text() == "{broken"  # left for the operator to look at


def poisoned_window(seq: int):
    """A window whose interval cannot be closed: a float of its histogram overflows. Intake over
    HTTP refuses it (collector.contract.codec bounds); an in-process agent could still hand it over."""
    import dataclasses

    good = window(seq)
    buckets = list(good.rtt_buckets)
    buckets[3] = 10**309
    return dataclasses.replace(good, sent=10**309, received=10**309, rtt_buckets=tuple(buckets))


def test_background_loops_survive_an_interval_that_cannot_close_and_say_so(tmp_path):
    from analyzer.service import RootCauseRunner
    from collector.system.loop_errors import LoopErrors

    store = new_store()
    seq = time.time_ns() // W - 3  # due at once on the real clock
    store.ingest(batch(poisoned_window(seq)), seq * W)  # still open: its interval closes in a thread
    errors = LoopErrors()
    keeper = SnapshotKeeper(store, tmp_path, every_s=0.0, tick_s=0.01, errors=errors)
    runner = RootCauseRunner(store, poll_s=0.01, errors=errors)
    try:
        wait_until(lambda: errors.counts().get("intervals", 0) >= 1, what="the failed close counted")
        assert "OverflowError" in errors.latest()["intervals"].last
        (tmp_path / SNAPSHOT_NAME).unlink(missing_ok=True)
        wait_until((tmp_path / SNAPSHOT_NAME).exists, what="a snapshot after the error")
        epochs = runner.epochs
        store.ingest(batch(window(seq + 1)), time.time_ns())
        wait_until(lambda: runner.epochs > epochs, what="inference after the error")
        assert keeper._thread.is_alive() and runner._thread.is_alive()
    finally:
        keeper.stop()
        runner.stop()


def test_the_service_shows_loop_errors_in_healthz_and_metrics(tmp_path):
    service = AnalyzerService(default_policies(), ("::1", 0), state_dir=tmp_path, catch_up_s=0)
    server = service.serve_in_thread()
    try:
        seq = time.time_ns() // W - 3
        service.store.ingest(batch(poisoned_window(seq)), seq * W)
        wait_until(lambda: service.errors.counts().get("intervals", 0) >= 1)
        health = httpx.get(f"{server.url}/healthz", timeout=10).json()
        assert health["status"] == "degraded" and health["errors"]["intervals"]["count"] >= 1
        assert "OverflowError" in health["errors"]["intervals"]["last"]
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert 'xnet_analyzer_errors_total{component="intervals"}' in metrics
        assert "xnet_build_info{" in metrics
    finally:
        service.stop()


def test_the_api_serves_https_with_its_certificate_and_a_read_token(tmp_path):
    import ssl

    from analyzer.service import TlsFiles
    from tests.api_support import write_self_signed_cert

    cert, key = write_self_signed_cert(tmp_path)
    tls = TlsFiles(cert, key)
    tls.check()
    service = AnalyzerService(
        default_policies(), ("::1", 0), api_options={"read_token": "r3ad-t0ken-0123456789"}, tls=tls
    )
    server = service.serve_in_thread()
    try:
        assert server.url.startswith("https://[::1]:")
        trusted = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(verify=trusted, timeout=10) as client:
            assert client.get(f"{server.url}/healthz").status_code == 401
            reading = {"Authorization": "Bearer r3ad-t0ken-0123456789"}
            assert client.get(f"{server.url}/healthz", headers=reading).json()["status"] == "ok"
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{server.url}/healthz", timeout=10)  # not trusted without the CA
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(server.url.replace("https", "http") + "/healthz", timeout=10)  # no clear text
    finally:
        service.stop()


def test_tls_files_that_do_not_fit_are_refused_naming_them(tmp_path):
    from analyzer.service import TlsFiles
    from tests.api_support import write_self_signed_cert

    cert, _ = write_self_signed_cert(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, other_key = write_self_signed_cert(other)
    with pytest.raises(ValueError, match=f"cannot use certificate {cert} with key {other_key}"):
        TlsFiles(cert, other_key).check()


def test_a_combiner_serves_the_hints_of_its_combined_inference_and_a_partition_sends_its_epochs(tmp_path):
    epochs = []
    partition = AnalyzerService(default_policies(), ("::1", 0), diagnose=lambda e: epochs.append(e) or (), catch_up_s=0)
    combiner = AnalyzerService(default_policies(), ("::1", 0), catch_up_s=0)
    try:
        seen = Hint("link-loss", ("prov1>core",), ("video",), 0.9, ("2 paths lost 15%",), T0 * W, (T0 + 1) * W)
        combiner.hints_source = lambda: (seen,)
        url = combiner.serve_in_thread().url
        (hint,) = httpx.get(f"{url}/hints", timeout=5).json()
        assert (hint["kind"], hint["suspects"]) == ("link-loss", ["prov1>core"])
        assert 'suspect="prov1>core"' in httpx.get(f"{url}/metrics", timeout=5).text
        partition.inference.run_once(W)  # an interval closed: its epoch goes to `diagnose`, no hint comes
        assert W in [e.at_ns for e in epochs] and partition.inference.hints() == ()
    finally:
        partition.stop()
        combiner.stop()
