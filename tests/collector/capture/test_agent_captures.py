"""The agent with a `capture:` section: `xnetmon agent` samples its veth inside a namespace
pair this test creates, and its /metrics and /flows/top show what crossed it; SIGHUP applies
a new sampling rate; configuration mistakes name the file, the key and the expectation.

Test traffic is UDP in video (DSCP 34) and egov (26), counted exactly at 1:1, and a TCP
exchange with timestamps in data (18) for the passive RTT. Neighbour discovery and MLD
carry DSCP 0, so that noise lands in best-effort and leaves the counted slices alone."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from collector.agent.config import ConfigError
from collector.agent.plan import load_plan
from tests.capture_support import created_in
from tests.flow_export_support import V6_FIELDS, data_set, ipfix_message, ipfix_template_set, record, v6_values
from tests.support import DEADLINE_S, REPO, XNETMON, free_tcp_port, network_namespace, stop_process, wait_until

A, B = "fd00:cafe:8::1", "fd00:cafe:8::2"
IF_A, IF_B = "xac-a", "xac-b"
METRICS_PORT, FLOWS_PORT = 9872, 4739
EXPORTED = "2001:db8::77"  # the source of the one IPFIX record sent to the agent's flow receiver
UDP = {"video": (34, 100, 9034), "egov": (26, 200, 9026)}  # DSCP, payload, port
PER_SLICE = 600
TCP_DSCP, TCP_PORT, EXCHANGES = 18, 9018, 60

CONFIG = """
site: {{name: capture-site}}
reflector: {{enabled: false}}
metrics: {{listen: "[::1]:{port}"}}
capture:
  interfaces:
    - {{interface: {interface}, sample: {sample}, tcp_rtt: {tcp_rtt}, active_timeout_s: 2, idle_timeout_s: 1}}
"""
FLOWS = f'flows: {{listen: ["[::1]:{FLOWS_PORT}"]}}\n'


def _veth_pair(ns_a: str, ns_b: str) -> None:
    subprocess.run(
        ["ip", "link", "add", IF_A, "netns", ns_a, "type", "veth", "peer", "name", IF_B, "netns", ns_b], check=True
    )
    for ns, dev, address in ((ns_a, IF_A, A), (ns_b, IF_B, B)):
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{address}/64", "dev", dev, "nodad"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True)
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


def _get(ns: str, path: str) -> tuple[int, str]:
    """GET http://[::1]:METRICS_PORT/PATH inside the namespace."""
    sock = created_in(ns, lambda: socket.create_connection(("::1", METRICS_PORT), timeout=DEADLINE_S))
    connection = http.client.HTTPConnection("::1", METRICS_PORT, timeout=DEADLINE_S)
    connection.sock = sock
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


def _scrape(ns: str) -> str:
    return _get(ns, "/metrics")[1]


def _value(text: str, name: str, **labels: str) -> float | None:
    """The sample `name` whose labels include `labels`, summed over the other labels; None if absent."""
    found = None
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if not match:
            continue
        present = dict(re.findall(r'(\w+)="([^"]*)"', match[1]))
        if all(present.get(k) == v for k, v in labels.items()):
            found = (found or 0.0) + float(match[2])
    return found


def _wait_for(ns: str, ready) -> str:
    """The agent's /metrics once `ready(text)` holds."""
    last = ""

    def scraped() -> str | None:
        nonlocal last
        try:
            last = _scrape(ns)
        except OSError:
            last = ""
        return last if last and ready(last) else None

    return wait_until(scraped, interval=0.3, what=lambda: f"the awaited metrics; last scrape:\n{last[-3000:]}")


def _udp_receivers(ns_b: str) -> list[socket.socket]:
    """Bound ports on B, so no port-unreachable error comes back across the capture."""

    def bound(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((B, port))
        return sock

    return [created_in(ns_b, lambda port=port: bound(port)) for _, _, port in UDP.values()]


def _send_udp(ns_a: str) -> None:
    senders = []
    for dscp, size, port in UDP.values():
        sock = created_in(ns_a, lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, dscp << 2)
        senders.append((sock, b"x" * size, port))
    try:
        for i in range(PER_SLICE):
            for sock, payload, port in senders:
                sock.sendto(payload, (B, port))
            if i % 25 == 24:
                time.sleep(0.002)  # paced: the veth backlog must not overflow
    finally:
        for sock, _, _ in senders:
            sock.close()


def _tcp_exchange(ns_a: str, ns_b: str) -> None:
    """Request and answer, EXCHANGES times, in the data slice both ways (timestamps are on by default)."""

    def listening() -> socket.socket:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, TCP_DSCP << 2)  # the SYN-ACK's class
        sock.bind((B, TCP_PORT))
        sock.listen(1)
        return sock

    server = created_in(ns_b, listening)
    served: list[int] = []

    def serve() -> None:
        connection, _ = server.accept()
        with connection:
            connection.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, TCP_DSCP << 2)
            total = 0
            while chunk := connection.recv(65536):
                total += len(chunk)
                if total % 1000 == 0:
                    connection.sendall(b"y" * 1000)
            served.append(total)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = created_in(ns_a, lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
    try:
        client.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, TCP_DSCP << 2)
        client.settimeout(10)
        client.connect((B, TCP_PORT))
        for _ in range(EXCHANGES):
            client.sendall(b"x" * 1000)
            answered = 0
            while answered < 1000:
                answered += len(client.recv(1000 - answered))
            time.sleep(0.005)
        client.shutdown(socket.SHUT_WR)
        client.recv(1)  # the server's FIN
    finally:
        client.close()
        thread.join(10)
        server.close()
    assert served == [EXCHANGES * 1000]


def _export_one_record(ns_b: str) -> None:
    """An IPFIX record in egov (100 bytes, 1 packet) to the agent's flow receiver."""
    rows = [record(V6_FIELDS, v6_values(EXPORTED, "2001:db8::2", dscp=26, octets=100, packets=1))]
    sock = created_in(ns_b, lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
    with sock:
        sock.sendto(ipfix_message([ipfix_template_set(256, V6_FIELDS), data_set(256, rows)]), ("::1", FLOWS_PORT))


@pytest.mark.root
@pytest.mark.parametrize("with_flows", [False, True], ids=["capture only", "with a flow receiver"])
def test_agent_captures_its_interface_into_flow_and_passive_rtt_metrics(tmp_path: Path, with_flows: bool) -> None:
    flows = FLOWS if with_flows else ""
    config = tmp_path / "agent.yaml"
    config.write_text(CONFIG.format(port=METRICS_PORT, interface=IF_B, sample=1, tcp_rtt="true") + flows)
    exporter = f"capture:{IF_B}"
    with network_namespace() as ns_a, network_namespace() as ns_b:
        _veth_pair(ns_a, ns_b)
        receivers = _udp_receivers(ns_b)
        agent = subprocess.Popen(
            ["ip", "netns", "exec", ns_b, *XNETMON, "agent", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        try:
            _wait_for(ns_b, lambda text: _value(text, "xnet_flow_sampling_rate", exporter=exporter) == 1.0)
            _tcp_exchange(ns_a, ns_b)
            _send_udp(ns_a)

            def counted(text: str) -> bool:
                return all(
                    _value(text, "xnet_flow_packets_total", slice=name, exporter=exporter) == PER_SLICE for name in UDP
                )

            text = _wait_for(ns_b, counted)
            for name, (_, size, _) in UDP.items():
                assert _value(text, "xnet_flow_bytes_total", slice=name, exporter=exporter) == PER_SLICE * (
                    40 + 8 + size
                )
            assert _value(text, "xnet_flow_packets_total", slice="data", exporter=exporter) >= 2 * EXCHANGES
            assert _value(text, "xnet_passive_rtt_seconds_count", slice="data") > 0
            assert _value(text, "xnet_passive_rtt_seconds_bucket", slice="data", le="+Inf") == _value(
                text, "xnet_passive_rtt_seconds_count", slice="data"
            )
            assert _value(text, "xnet_capture_packets_total", exporter=exporter) >= 2 * PER_SLICE + 2 * EXCHANGES
            assert _value(text, "xnet_capture_kernel_drops_total", exporter=exporter) == 0
            assert text.count("# TYPE xnet_malformed_packets_total counter") == 1
            expected = [{"address": A, "bytes": PER_SLICE * (40 + 8 + 200), "error": 0}]
            if with_flows:  # one set of counters: the export's talker beside the capture's
                _export_one_record(ns_b)
                text = _wait_for(
                    ns_b, lambda t: _value(t, "xnet_flow_bytes_total", slice="egov", exporter="::1") == 100
                )
                assert _value(text, "xnet_flow_packets_total", slice="egov", exporter=exporter) == PER_SLICE
                assert _value(text, "xnet_flow_sampling_rate", exporter="::1") == 1.0
                assert text.count("# TYPE xnet_flow_bytes_total counter") == 1
                expected.append({"address": EXPORTED, "bytes": 100, "error": 0})
            status, body = _get(ns_b, "/flows/top?slice=egov")
            assert status == 200
            assert json.loads(body)["talkers"] == expected

            # SIGHUP with another rate: the capture restarts at 1:100; the counters stay.
            config.write_text(CONFIG.format(port=METRICS_PORT, interface=IF_B, sample=100, tcp_rtt="false") + flows)
            agent.send_signal(signal.SIGHUP)
            text = _wait_for(ns_b, lambda t: _value(t, "xnet_flow_sampling_rate", exporter=exporter) == 100.0)
            assert _value(text, "xnet_flow_packets_total", slice="egov", exporter=exporter) == PER_SLICE
            assert "xnet_passive_rtt_seconds" not in text  # that meter went with the old capture
        finally:
            stop_process(agent)
            for sock in receivers:
                sock.close()
        _, err = agent.communicate()
        assert agent.returncode == 0, err
        assert "Traceback" not in err


def test_capture_section_errors_name_file_key_and_expectation(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        "site: {name: here}\n"
        "capture:\n"
        "  interfaces:\n"
        "    - {interface: eth0, sample: 100, tcp_rtt: true}\n"
        "    - {interface: 'eth 1', sample: 0}\n"
        "    - {interface: eth2, altmark_point: p, tcp_rt: true}\n"
    )
    with pytest.raises(ConfigError) as error:
        load_plan(config)
    assert error.value.problems == (
        f"{config}: capture.interfaces[0]: tcp_rtt needs every packet: expected sample 1 with tcp_rtt true, "
        "got sample 100",
        f"{config}: capture.interfaces[1].interface: 'eth 1' is not an interface name: give 1 to 15 characters "
        "without spaces or '/'",
        f"{config}: capture.interfaces[1].sample: expected greater than or equal to 1, got 0",
        f"{config}: capture.interfaces[2].tcp_rt: unknown key 'tcp_rt'; did you mean 'tcp_rtt'? (keys here are: "
        "interface, sample, tcp_rtt, altmark_point, active_timeout_s, idle_timeout_s)",
    )
    config.write_text("site: {name: here}\ncapture: {interfaces: [{interface: eth0}, {interface: eth0}]}\n")
    with pytest.raises(ConfigError) as error:
        load_plan(config)
    assert error.value.problems == (f"{config}: capture.interfaces: 'eth0' appears twice",)


def test_capture_slices_file_errors_name_both_files(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {slice: video, dscp: 99}\n")
    config = tmp_path / "agent.yaml"
    config.write_text("site: {name: here}\ncapture: {slices: rules.yaml, interfaces: [{interface: eth0}]}\n")
    with pytest.raises(ConfigError) as error:
        load_plan(config)
    [problem] = error.value.problems
    assert problem.startswith(f"{config}: capture.slices: {rules}: rules[0].dscp")
    rules.write_text("default: data\nrules:\n  - {slice: video, dscp: 34}\n")
    plan = load_plan(config)
    assert plan.capture is not None
    assert plan.capture.classifier.names == ("video", "data")
    assert plan.capture.interfaces[0].exporter == "capture:eth0"


def test_an_interface_that_is_not_there_stops_the_agent_with_a_message(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(CONFIG.format(port=free_tcp_port(), interface="xnm-absent0", sample=1, tcp_rtt="false"))
    done = subprocess.run(
        [*XNETMON, "agent", "--config", str(config)], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 1
    assert "capture on xnm-absent0: no interface 'xnm-absent0' in this network namespace" in done.stderr
    assert "Traceback" not in done.stderr
