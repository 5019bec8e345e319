"""`xnetmon probe ping`, run as a user runs it: iputils-shaped output, JSON, errors, Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess

import pytest

from tests.support import REPO, XNETMON, LineReader, in_netns, network_namespace, xnetmon

pytestmark = pytest.mark.root  # raw sockets (ping sockets are off for root's group here)


def test_output_is_shaped_like_iputils_ping():
    done = xnetmon("probe", "ping", "::1", "-c", "3", "-i", "0.05", "--slice", "egov")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "PING ::1 (::1) 56 data bytes, slice egov, DSCP 26"
    replies = [line for line in lines if " bytes from " in line]
    assert len(replies) == 3
    for n, line in enumerate(replies, start=1):
        assert re.fullmatch(rf"64 bytes from ::1: icmp_seq={n} hlim=64 time=\d+\.\d{{3}} ms", line), line
    assert "--- ::1 ping statistics ---" in lines
    assert re.search(r"^3 packets transmitted, 3 received, 0% packet loss, time \d+ms$", done.stdout, re.M)
    assert re.search(r"^rtt min/avg/max/mdev = [\d.]+/[\d.]+/[\d.]+/[\d.]+ ms$", done.stdout, re.M)


def test_size_changes_the_bytes_reported():
    done = xnetmon("probe", "ping", "::1", "-c", "1", "-s", "1000")
    assert "1008 bytes from ::1: icmp_seq=1" in done.stdout and "1000 data bytes" in done.stdout


def test_json_is_one_object_per_reply_then_the_summary():
    done = xnetmon("probe", "ping", "::1", "-c", "2", "-i", "0.05", "--json", "--dscp", "46")
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["seq"] for r in records[:-1]] == [1, 2]
    assert all(r["rtt_ns"] > 0 and r["reply_dscp"] == 46 and r["loss"] == "none" for r in records[:-1])
    summary = records[-1]["summary"]
    assert (summary["sent"], summary["received"], summary["loss_ratio"]) == (2, 2, 0.0)
    assert summary["socket"] in ("ping", "raw") and summary["rtt_mdev_ns"] >= 0


def test_usage_errors_are_one_clear_line_with_status_2():
    cases = {
        ("::1", "--slice", "nope"): "unknown slice 'nope' (known slices: video, egov, data, best-effort)",
        ("127.0.0.1",): "127.0.0.1 is an IPv4 address: ping probes ICMPv6 only",
        ("no-such-host.invalid",): "cannot resolve 'no-such-host.invalid'",
        ("::1", "--flow-label", "0x100000"): "flow label 1048576 is not in 1..0xFFFFF",
        ("::1", "-s", "4"): "--size must be in 8..65527 octets",
        ("::1", "-c", "0"): "count must be at least 1",
        ("::1", "-S", "2001:db8::77"): "cannot send from 2001:db8::77",
    }
    for argv, message in cases.items():
        done = xnetmon("probe", "ping", *argv, "-c", "1") if "-c" not in argv else xnetmon("probe", "ping", *argv)
        assert done.returncode == 2 and message in done.stderr, (argv, done.stderr)
        assert "Traceback" not in done.stderr


def test_without_permission_it_says_what_to_do():
    # As nobody, in a namespace whose ping_group_range admits no group (the sysctl is per namespace).
    with network_namespace() as ns:
        subprocess.run(in_netns(ns, ["sysctl", "-qw", "net.ipv4.ping_group_range=1 0"]), check=True)
        done = subprocess.run(
            in_netns(
                ns,
                [
                    "setpriv",
                    "--reuid",
                    "nobody",
                    "--regid",
                    "nogroup",
                    "--clear-groups",
                    *XNETMON,
                    "probe",
                    "ping",
                    "::1",
                    "-c",
                    "1",
                ],
            ),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=REPO,
        )
    assert done.returncode == 2, done.stderr
    assert "run as root, or allow ping sockets: sysctl -w net.ipv4.ping_group_range='0 2147483647'" in done.stderr
    assert "Traceback" not in done.stderr


def test_ctrl_c_prints_the_summary():
    proc = subprocess.Popen(
        [*XNETMON, "probe", "ping", "::1", "-i", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    output = LineReader(proc.stdout)
    try:
        output.wait_for(lambda line: " bytes from ::1" in line, count=3)
        proc.send_signal(signal.SIGINT)
        out, err = output.text(), proc.stderr.read()
        proc.wait()
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "--- ::1 ping statistics ---" in out and "Traceback" not in err
    assert re.search(r"\d+ packets transmitted, \d+ received", out)


def test_a_non_root_user_cannot_flood():
    done = subprocess.run(
        [
            "setpriv",
            "--reuid",
            "nobody",
            "--regid",
            "nogroup",
            "--clear-groups",
            *XNETMON,
            "probe",
            "ping",
            "::1",
            "-c",
            "1",
            "-i",
            "0.001",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert done.returncode == 2 and "cannot flood: the shortest interval for a non-root user is 2 ms" in done.stderr
