"""The all-in-one's softflowd fleet with stand-in processes: the argv it builds, ports seen
in a process's own namespace, CPU shares per site, and a stop that also ends stopped ones.
(tests/interop/test_softflowd.py runs softflowd itself against the flow receiver.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support import free_udp_port, in_netns, network_namespace
from xnetmon.softflowd import SOFTFLOWD_TIMEOUTS, SoftflowdFleet, cpu_seconds, softflowd_argv, wait_until_bound

BIND_AND_WAIT = (
    "import socket, sys; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); "
    "s.bind(('::1', int(sys.argv[1]))); print('bound', flush=True); sys.stdin.read()"
)
BUSY = "import sys\nwhile True: pass"


def test_the_argv_exports_ipfix_to_an_ipv4_collector_with_every_short_timeout(tmp_path):
    argv = softflowd_argv("eth0", ("192.0.2.9", 4739), tmp_path / "c.ctl", tmp_path / "p.pid", bpf="ip6 and udp")
    assert argv[:5] == ["softflowd", "-d", "-i", "eth0", "-n"] and argv[5] == "192.0.2.9:4739"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "-t"] == [f"{k}={v}" for k, v in SOFTFLOWD_TIMEOUTS.items()]
    assert argv[argv.index("-c") + 1] == str(tmp_path / "c.ctl") and argv[-1] == "ip6 and udp"


@pytest.mark.root
def test_a_port_is_looked_for_in_the_namespace_of_the_process_that_bound_it():
    port = free_udp_port()
    with network_namespace() as namespace:
        inside = subprocess.Popen(
            in_netns(namespace, [sys.executable, "-c", BIND_AND_WAIT, str(port)]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        idle = subprocess.Popen(in_netns(namespace, ["sleep", "60"]))
        try:
            assert inside.stdout.readline() == "bound\n"
            # the process that bound it sees it; our namespace does not; a quiet one times out
            assert wait_until_bound({"inside": inside.pid, "here": os.getpid()}, port, timeout=0.5) == {"inside"}
            assert wait_until_bound({"inside": inside.pid, "idle": idle.pid}, port, timeout=0.5) == {"inside", "idle"}
        finally:
            inside.kill()
            idle.kill()
            inside.wait()
            idle.wait()


def test_the_fleet_sums_cpu_per_site_and_stops_even_a_stopped_exporter(tmp_path):
    fleet = SoftflowdFleet(tmp_path)
    stand_in = {"busy": [sys.executable, "-c", BUSY], "quiet": ["sleep", "60"]}
    busy = fleet.start("cnty1a", "to-city1a", ("::1", 4739), lambda site, argv: stand_in["busy"])
    quiet = fleet.start("cnty1a", "to-city1b", ("::1", 4739), lambda site, argv: stand_in["quiet"])
    other = fleet.start("core", "to-prov1", ("::1", 4739), lambda site, argv: stand_in["quiet"])
    try:
        deadline = time.monotonic() + 30
        while cpu_seconds(busy.process.pid) < 0.3 and time.monotonic() < deadline:  # its work outweighs start-up
            time.sleep(0.01)
        shares = fleet.cpu_by_site()
        assert set(shares) == {"cnty1a", "core"} and shares["cnty1a"] > shares["core"] >= 0
        assert (tmp_path / "softflowd-cnty1a-to-city1a.log").exists()
        os.kill(quiet.process.pid, signal.SIGSTOP)  # as a lab fault may leave it
    finally:
        fleet.stop()
    assert [e.process.returncode for e in (busy, quiet, other)] == [-signal.SIGTERM] * 3
    assert fleet.exporters == [] and cpu_seconds(busy.process.pid) == 0.0
