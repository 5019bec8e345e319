"""`xnetmon probe stamp`, `xnetmon reflect` and `xnetmon run`, run as a user runs them."""

from __future__ import annotations

import json
import re
import signal
import subprocess

from tests.support import (
    REPO,
    XNETMON,
    LineReader,
    free_udp_port,
    running_reflector,
    stop_process,
    wait_until,
    xnetmon,
)


def test_probe_prints_one_line_per_reply_and_a_ping_like_summary():
    port = str(free_udp_port())
    with running_reflector("--bind", "::1", "--port", port, "--stateful"):
        done = xnetmon("probe", "stamp", "::1", "-p", port, "-c", "3", "-i", "0.05", "--slice", "egov")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"STAMP ::1 (::1) port {port}: slice egov, DSCP 26")
    replies = [line for line in lines if line.startswith("reply from ::1")]
    assert [re.search(r"seq=(\d+)", r).group(1) for r in replies] == ["0", "1", "2"]
    assert all("dscp=26/26" in r for r in replies)
    assert "3 sent, 3 received, 0.0% loss" in done.stdout
    assert re.search(r"rtt min/avg/p50/p99/max = [\d.]+/[\d.]+/[\d.]+/[\d.]+/[\d.]+ ms", done.stdout)
    assert "jitter (IPDV, RFC 3393)" in done.stdout


def test_probe_json_is_one_object_per_reply_then_the_summary():
    port = str(free_udp_port())
    with running_reflector("--bind", "::1", "--port", port):
        done = xnetmon("probe", "stamp", "::1", "-p", port, "-c", "2", "-i", "0.05", "--json", "--dscp", "46")
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["seq"] for r in records[:-1]] == [0, 1]
    assert all(r["rtt_ns"] > 0 and r["reply_dscp"] == 46 for r in records[:-1])
    assert records[-1]["summary"]["received"] == 2


def test_probe_to_a_port_without_reflector_says_so_and_fails():
    done = xnetmon("probe", "stamp", "::1", "-p", str(free_udp_port()), "-c", "2", "-i", "0.05", "-W", "0.5")
    assert done.returncode == 1
    assert "lost (port unreachable from ::1)" in done.stdout
    assert "2 sent, 0 received, 100.0% loss (forward 2" in done.stdout


def test_probe_usage_errors_are_one_clear_line():
    cases = {
        ("--slice", "nope"): "unknown slice 'nope' (known slices: video, egov, data, best-effort)",
        ("--auth-key-file", "/nonexistent/key"): "cannot read key file /nonexistent/key",
        ("--size", "20"): "--size must be at least",
        ("--flow-label", "0x100000"): "flow label 1048576 is not in 1..0xFFFFF",
    }
    for extra, message in cases.items():
        done = xnetmon("probe", "stamp", "::1", "-c", "1", *extra)
        assert done.returncode == 2 and message in done.stderr, (extra, done.stderr)
        assert "Traceback" not in done.stderr
    unresolvable = xnetmon("probe", "stamp", "no-such-host.invalid", "-c", "1")
    assert unresolvable.returncode == 2 and "cannot resolve 'no-such-host.invalid'" in unresolvable.stderr


def test_reflect_prints_its_counters_when_stopped(tmp_path):
    port = str(free_udp_port())
    with running_reflector("--bind", "::1", "--port", port) as proc:
        xnetmon("probe", "stamp", "::1", "-p", port, "-c", "2", "-i", "0.05")
    assert "2 received, 2 reflected, 0 malformed" in proc.stdout.read()


def test_reflect_refuses_a_bad_prefix_with_the_key_named():
    done = xnetmon("reflect", "--allow", "10.0.0.0/33")
    assert done.returncode == 2 and "allow: '10.0.0.0/33'" in done.stderr


def test_run_on_loopback_judges_every_slice_and_serves_the_api():
    proc = subprocess.Popen(
        [*XNETMON, "run", "--loopback", "--report-every", "3600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    output = LineReader(proc.stdout)
    statuses: dict = {}

    def every_slice_ok() -> bool:
        nonlocal statuses
        assert proc.poll() is None, "xnetmon run ended early"
        done = xnetmon("status", "--json")  # the run's own API, on the default [::1]:9863
        if done.returncode == 0:
            statuses = {s["name"]: s["status"] for s in json.loads(done.stdout)}
        return bool(statuses) and all(v == "ok" for v in statuses.values())

    try:
        # Its own API first: another run on this machine may answer on the default port meanwhile.
        output.wait_for(lambda line: "API      http://[::1]:9863/slices" in line)
        wait_until(every_slice_ok, interval=1, what=lambda: f"every slice ok (last seen: {statuses})")
        assert set(statuses) == {"video", "egov", "data", "best-effort"}, statuses
        assert all(v == "ok" for v in statuses.values()), statuses
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = output.text(), proc.stderr.read()
        finally:
            proc.kill()  # only if Ctrl-C did not end it, which has failed the test: leave nothing running
            proc.wait()
    assert proc.returncode == 0, err
    assert "API      http://[::1]:9863/slices" in out and "metrics  http://[::1]:9863/metrics" in out
    at_exit = out.split("at exit")[1]
    for name in ("video", "egov", "data", "best-effort"):
        assert re.search(rf"\b{name}\s+│ ok\b", at_exit), at_exit


def test_status_asks_a_running_analyzer(tmp_path):
    token = tmp_path / "token"
    token.write_text("t0ken")
    port = str(free_udp_port())
    proc = subprocess.Popen(
        [*XNETMON, "analyzer", "--listen", f"[::1]:{port}", "--token-file", str(token)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )

    def answered():
        done = xnetmon("status", "--analyzer", f"http://[::1]:{port}", "--json")
        return done if done.returncode == 0 else None

    try:
        done = wait_until(answered, interval=0.3, what="the analyzer answering `xnetmon status`")
        assert {s["name"] for s in json.loads(done.stdout)} == {"video", "egov", "data", "best-effort"}
        table = xnetmon("status", "--analyzer", f"http://[::1]:{port}", "--slice", "video")
        assert "two-way-delay-percentile p99" in table.stdout and "no-data" in table.stdout
        unknown = xnetmon("status", "--analyzer", f"http://[::1]:{port}", "--slice", "nope")
        assert unknown.returncode == 2 and "unknown slice 'nope'" in unknown.stderr
    finally:
        stop_process(proc)
    away = xnetmon("status", "--analyzer", f"http://[::1]:{port}")
    assert away.returncode == 2 and "no analyzer answers at" in away.stderr


def test_ctrl_c_stops_an_endless_probe_with_the_summary():
    port = str(free_udp_port())
    with running_reflector("--bind", "::1", "--port", port):
        proc = subprocess.Popen(
            [*XNETMON, "probe", "stamp", "::1", "-p", port, "-i", "0.05"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        output = LineReader(proc.stdout)
        try:  # Ctrl-C once five probes have had their line (a reply or a loss), however long that took
            output.wait_for(lambda line: re.search(r"\bseq=\d+", line) is not None, count=5)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                out, err = output.text(), proc.stderr.read()
            finally:
                proc.kill()  # only if Ctrl-C did not end it, which has failed the test
                proc.wait()
    assert proc.returncode == 0, err
    assert "--- ::1 STAMP statistics ---" in out
    sent = int(re.search(r"(\d+) sent, (\d+) received", out).group(1))
    assert sent >= 5 and "Traceback" not in err


def test_output_into_a_closed_pipe_ends_quietly():
    port = str(free_udp_port())
    with running_reflector("--bind", "::1", "--port", port):
        done = subprocess.run(
            f"{' '.join(XNETMON)} probe stamp ::1 -p {port} -c 200 -i 0.005 | head -1",
            shell=True,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
    assert done.stdout.startswith("STAMP ::1")
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
