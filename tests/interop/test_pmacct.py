"""pmacct's pmacctd with the nfprobe plugin as a second real exporter (NetFlow v9 and IPFIX),
capturing live in a network namespace the test creates, exporting to `xnetmon flows collect`
running in the same namespace. Traffic is UDP we send in each slice's DSCP to the slice's
prefix; per-slice byte and packet totals must equal what was sent. pmacct exports the IPv6
traffic class as 0 (like softflowd), so the collector classifies by prefix (`--slices`).

pmacctd 1.7.7 reading a capture file (`pcap_savefile`) loses its nfprobe plugin before it
exports anything on this Debian build, so the capture here is live, on the namespace's
loopback (only the test's traffic is there)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.flow_export_support import PREFIX_RULES, SLICE_DSCP
from tests.support import DEADLINE_S, REPO, XNETMON, LineReader, in_netns, network_namespace, stop_process

pytestmark = [pytest.mark.root, pytest.mark.tool("pmacctd")]
TRAFFIC_PORT = 9100
PACKETS_PER_SLICE = 25

SENDER = f"""
import json, socket
dscps = {dict(SLICE_DSCP)!r}
sent = {{}}
for index, (name, dscp) in enumerate(dscps.items(), start=1):
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, dscp << 2)
    octets = 0
    for n in range({PACKETS_PER_SLICE}):
        payload = bytes(60 + 17 * n)
        sock.sendto(payload, (f"2001:db8:{{index}}::1", {TRAFFIC_PORT}))
        octets += 40 + 8 + len(payload)
    sent[name] = [octets, {PACKETS_PER_SLICE}]
print(json.dumps(sent))
"""


def _packets_collected(line: str) -> int:
    """The packets of one of `xnetmon flows collect --json`'s tables (0 for other lines)."""
    return sum(t["packets"] for t in json.loads(line)["slices"].values()) if line.startswith("{") else 0


@pytest.mark.parametrize("version", ["9", "10"])
def test_pmacctd_nfprobe_totals_per_slice(tmp_path, version):
    config = tmp_path / "pmacctd.conf"
    config.write_text(
        "daemonize: false\npcap_interface: lo\n"
        f"pcap_filter: ip6 and udp and dst port {TRAFFIC_PORT}\n"
        "plugins: nfprobe\nnfprobe_receiver: [::1]:4739\n"
        f"nfprobe_version: {version}\n"
        "nfprobe_timeouts: tcp=1:udp=1:maxlife=1:expint=1:general=1\n"
        "aggregate: src_host, dst_host, src_port, dst_port, proto, tos\n"
    )
    rules = tmp_path / "slices.yaml"
    rules.write_text(yaml.safe_dump({"rules": PREFIX_RULES, "default": "best-effort"}))
    with network_namespace() as ns:
        for index in range(1, len(SLICE_DSCP) + 1):  # each slice's prefix, local to the namespace
            subprocess.run(["ip", "-n", ns, "addr", "add", f"2001:db8:{index}::1/48", "dev", "lo", "nodad"], check=True)
        collector = subprocess.Popen(
            in_netns(
                ns,
                [
                    *XNETMON,
                    "flows",
                    "collect",
                    "--listen",
                    "[::1]:4739",
                    "--slices",
                    str(rules),
                    "--interval",
                    "1",
                    "--json",
                ],
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        collected = LineReader(collector.stdout)
        pmacctd = None
        try:
            collected.wait_for(lambda line: "receiving" in line)
            pmacctd = subprocess.Popen(
                in_netns(ns, ["pmacctd", "-f", str(config)]),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            log = LineReader(pmacctd.stdout)
            log.wait_for(lambda line: "link type is" in line)  # its capture is open
            log.wait_for(lambda line: "Exporting flows to" in line)  # and its nfprobe plugin ready
            sent = json.loads(
                subprocess.run(
                    in_netns(ns, [sys.executable, "-c", SENDER]),
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=DEADLINE_S,
                ).stdout
            )
            # Flows expire (1 s timeouts) and are exported: wait until the collector counted every packet sent.
            collected.wait_for(lambda line: _packets_collected(line) >= len(sent) * PACKETS_PER_SLICE)
            stop_process(pmacctd)  # whatever is left goes out at shutdown
        finally:
            if pmacctd is not None and pmacctd.poll() is None:
                stop_process(pmacctd)
            stop_process(collector)
        final = json.loads(collected.text().strip().splitlines()[-1])
    got = {name: [t["bytes"], t["packets"]] for name, t in final["slices"].items()}
    assert got == sent, (got, sent, log.text()[-2000:])
    assert final["malformed"] == 0
