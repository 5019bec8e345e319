"""`xnetmon flows collect` as a user runs it: datagrams in over UDP, the per-slice table out,
/metrics and /flows/top served, usage errors with status 2."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.error
import urllib.request

from collector.flow_export.receiver import FlowReceiver, ReceiverSettings
from tests.flow_export_support import V6_FIELDS, data_set, ipfix_message, ipfix_template_set, record, v6_values
from tests.support import REPO, XNETMON, free_udp_port, stop_process, wait_until, xnetmon


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_collect_counts_slices_and_serves_metrics_and_top_talkers(tmp_path):
    port, metrics_port = free_udp_port(), free_udp_port()
    proc = subprocess.Popen(
        [
            *XNETMON,
            "flows",
            "collect",
            "--listen",
            f"[::1]:{port}",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            f"[::1]:{metrics_port}",
            "--state-dir",
            str(tmp_path),
            "--default-sampling",
            "::1=2",
            "--interval",
            "60",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        banner = proc.stdout.readline()
        assert "receiving flow exports on [::1]" in banner and "127.0.0.1:" in banner, banner + proc.stderr.read()
        rows = [
            record(V6_FIELDS, v6_values("2001:db8::1", "2001:db8::2", dscp=34, octets=1000, packets=2)),
            record(V6_FIELDS, v6_values("2001:db8::7", "2001:db8::2", dscp=34, octets=300, packets=1)),
            record(V6_FIELDS, v6_values("2001:db8::3", "2001:db8::4", dscp=18, octets=10, packets=1)),
        ]
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.sendto(ipfix_message([ipfix_template_set(256, V6_FIELDS), data_set(256, rows)]), ("::1", port))
            sock.sendto(b"\x00\x0a\x00", ("::1", port))  # malformed

        def both_handled() -> str | None:  # the malformed datagram came second
            status, text = fetch(f"http://[::1]:{metrics_port}/metrics")
            handled = status == 200 and 'xnet_malformed_packets_total{kind="truncated",protocol="ipfix"} 1.0' in text
            return text if handled else None

        text = wait_until(both_handled, interval=0.1, what="both datagrams counted in /metrics")
        assert 'xnet_flow_bytes_total{direction="in",exporter="::1",slice="video"} 2600.0' in text
        assert 'xnet_flow_sampling_rate{exporter="::1"} 2.0' in text
        assert 'xnet_flow_templates{exporter="::1"} 1.0' in text
        assert "\nxnet_collector_http_responses_cut_off_total 0.0\n" in text  # as the agent shows it
        status, top = fetch(f"http://[::1]:{metrics_port}/flows/top?slice=video&limit=1")
        assert status == 200
        assert json.loads(top)["talkers"] == [{"address": "2001:db8::1", "bytes": 2000, "error": 0}]
        status, bad = fetch(f"http://[::1]:{metrics_port}/flows/top?slice=gold")
        assert status == 400 and "unknown slice 'gold'" in json.loads(bad)["error"]
        status, bad = fetch(f"http://[::1]:{metrics_port}/flows/top?slice=video&limit=0")
        assert status == 400 and "limit" in json.loads(bad)["error"]
    finally:
        stop_process(proc)
    out = proc.stdout.read()
    final = json.loads(out.strip().splitlines()[-1])
    assert final["slices"]["video"] == {"bytes": 2600, "packets": 6, "flows": 2}
    assert final["slices"]["data"]["bytes"] == 20 and final["malformed"] == 1
    assert json.loads((tmp_path / "templates.json").read_text())["templates"][0]["id"] == 256


def test_bad_arguments_are_usage_errors():
    result = xnetmon("flows", "collect", "--listen", "nowhere:1", "--duration", "0.1")
    assert result.returncode == 2 and "--listen" in result.stderr
    result = xnetmon("flows", "collect", "--listen", "[::1]:0", "--default-sampling", "x=3", "--duration", "0.1")
    assert result.returncode == 2 and "EXPORTER_ADDRESS=N" in result.stderr


def test_a_second_receiver_on_the_same_state_dir_exits_2_naming_the_holder_and_leaves_the_files(tmp_path):
    state = tmp_path / "state"
    seeded = FlowReceiver(ReceiverSettings(listen=[], state_dir=state))  # a template learnt by an earlier run
    seeded.handle_datagram(ipfix_message([ipfix_template_set(256, V6_FIELDS)]), "2001:db8::e", 4739)
    seeded.stop()
    port = free_udp_port()
    first = subprocess.Popen(
        [*XNETMON, "flows", "collect", "--listen", f"[::1]:{port}", "--state-dir", str(state), "--interval", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        banner = first.stdout.readline()
        assert "receiving flow exports on [::1]" in banner, banner + first.stderr.read()
        before = {p.name: p.read_bytes() for p in state.iterdir()}
        second = xnetmon("flows", "collect", "--listen", "[::1]:0", "--state-dir", str(state), "--duration", "5")
        assert second.returncode == 2, second.stdout + second.stderr
        assert second.stderr.splitlines() == [
            f"xnetmon flows: flow state directory {state} is in use by pid {first.pid}: "
            "each receiver needs its own state_dir"
        ]
        assert {p.name: p.read_bytes() for p in state.iterdir()} == before
        assert first.poll() is None
    finally:
        stop_process(first)
    assert first.returncode == 0
    assert json.loads((state / "templates.json").read_text())["templates"][0]["id"] == 256
