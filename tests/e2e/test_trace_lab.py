"""Paris traceroute across the lab: the hop list routing gives, path changes, loss per hop, slices.

One `small` lab for the run (brought up once, shared with the lab's own suite, always torn
down); faults are healed after every test, even a failing one. Our traces run as a user
runs them, with `xnetmon probe trace` inside a site's namespace; Debian's `traceroute -6`
runs beside them between the same sites as the independent reference.
"""

from __future__ import annotations

import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from collector.contract.records import path_fingerprint

pytestmark = [pytest.mark.root, pytest.mark.lab]

# Pairs with paths of 1, 3 and 6 hops; cnty1a -> cnty2b crosses the core.
PAIRS = [("cnty1a", "city1a"), ("city1a", "core"), ("cnty1a", "cnty2b")]
TRACEROUTE_FLAGS = {"udp": [], "icmp": ["-I"], "tcp": ["-T"]}


def our_trace(lab, source: str, destination: str, *args: str) -> dict:
    argv = [sys.executable, "-m", "xnetmon", "probe", "trace", lab.address(destination), "--json", *args]
    done = lab.exec(source, argv, timeout=60)
    assert done.returncode in (0, 1) and done.stdout, done.stderr
    return json.loads(done.stdout)


def their_trace(lab, source: str, destination: str, protocol: str) -> list[str | None]:
    """Debian traceroute's hop list: the first address on each hop line, None for a silent hop."""
    argv = [
        "traceroute",
        "-6",
        "-n",
        "-q",
        "3",
        "-w",
        "1",
        "-m",
        "12",
        *TRACEROUTE_FLAGS[protocol],
        lab.address(destination),
    ]
    done = lab.exec(source, argv, timeout=60)
    assert done.returncode == 0, done.stderr
    hops = []
    for line in done.stdout.splitlines()[1:]:
        addresses = [token for token in line.split()[1:] if ":" in token]
        hops.append(addresses[0] if addresses else None)
    return hops


def lab_hops(lab, source: str, destination: str) -> list[str]:
    """What the lab's routing says, as the addresses that answer (routers answer from loopbacks)."""
    return [lab.address(site) for site in lab.path(source, destination)[1:]]


@pytest.mark.tool("traceroute")
@pytest.mark.parametrize("protocol", ["udp", "icmp", "tcp"])
def test_hop_lists_equal_the_labs_routing_and_debian_traceroute(lab, protocol):
    def both(pair):
        source, destination = pair
        return our_trace(lab, source, destination, "--proto", protocol), their_trace(lab, source, destination, protocol)

    with ThreadPoolExecutor(max_workers=len(PAIRS)) as pool:
        results = list(pool.map(both, PAIRS))
    for (source, destination), (ours, theirs) in zip(PAIRS, results):
        path = ours["flows"][0]["path"]
        expected = lab_hops(lab, source, destination)
        assert path["hops"] == expected, (source, destination)
        assert theirs == expected, (source, destination)
        assert path["reached"] and path["fingerprint"] == path_fingerprint(tuple(expected))
        assert path["flow"]["protocol"] == protocol
        for hop in ours["flows"][0]["hops"]:
            assert [p["responder"] for p in hop["probes"]] == [hop["address"]] * 3  # one flow, one path
            assert all(p["rtt_ns"] > 0 for p in hop["probes"])


def test_a_reroute_changes_the_fingerprint_and_healing_restores_it(lab):
    source, destination = "cnty1a", "cnty2b"
    before = our_trace(lab, source, destination)["flows"][0]["path"]
    assert before["hops"] == lab_hops(lab, source, destination)
    fault = lab.fault_reroute(source, destination)
    try:
        during = our_trace(lab, source, destination)["flows"][0]["path"]
        assert during["hops"] == lab_hops(lab, source, destination) != before["hops"]
        assert during["fingerprint"] != before["fingerprint"] and during["reached"]
    finally:
        lab.heal(fault)
    after = our_trace(lab, source, destination)["flows"][0]["path"]
    assert after["fingerprint"] == before["fingerprint"]


def test_report_shows_loss_from_the_hop_after_the_lossy_link(lab):
    source, destination = "cnty1a", "cnty2b"  # city1a, prov1, core, prov2, city2b, cnty2b
    fault = lab.fault_loss("prov1-core", 0.3)
    try:
        report = our_trace(lab, source, destination, "--report", "-c", "30", "-i", "0.02", "-W", "0.5", "-m", "8")
    finally:
        lab.heal(fault)
    rows = report["report"]
    assert [r["address"] for r in rows] == lab_hops(lab, source, destination)
    assert all(r["sent"] == 30 for r in rows)
    losses = [r["loss_ratio"] for r in rows]
    assert losses[:2] == [0.0, 0.0], losses  # before the link: untouched
    assert all(loss >= 0.15 for loss in losses[2:]), losses  # core onward: ~51% (30% each way)
    assert report["path"]["reached"]


def test_report_text_is_the_mtr_table(lab):
    done = lab.exec(
        "cnty1a",
        [sys.executable, "-m", "xnetmon", "probe", "trace", lab.address("core"), "--report", "-c", "5", "-i", "0.02"],
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.match(r"^HOST: \S+\s+Loss%   Snt   Last   Avg  Best  Wrst StDev$", lines[1])
    for number, site in enumerate(["city1a", "prov1", "core"], 1):
        address = re.escape(lab.address(site))
        assert re.match(rf"^\s+{number}\.\|-- {address}\s+0\.0%\s+5(\s+\d+\.\d){{5}}$", lines[1 + number])
    assert re.match(r"^path fingerprint [0-9a-f]{16} \(3 hops, destination reached\)$", lines[-1])


@pytest.mark.parametrize("protocol", ["udp", "icmp"])
def test_every_probe_keeps_the_slice_marking(lab, protocol):
    """A link that drops only the video slice stops a video trace there and nothing else."""
    source, destination = "cnty1a", "cnty2b"
    fault = lab.fault_loss("prov1-core", 1.0, slice="video")
    try:
        video = our_trace(lab, source, destination, "--proto", protocol, "--slice", "video", "-W", "0.3", "-m", "7")
        egov = our_trace(lab, source, destination, "--proto", protocol, "--slice", "egov", "-W", "0.3")
    finally:
        lab.heal(fault)
    assert video["flows"][0]["path"]["hops"] == lab_hops(lab, source, destination)[:2]
    assert not video["flows"][0]["path"]["reached"]
    assert egov["flows"][0]["path"]["hops"] == lab_hops(lab, source, destination)
    if protocol == "icmp":  # the routers' quotes show the DSCP each probe still had there
        seen = {
            p["quoted_dscp"] for h in egov["flows"][0]["hops"] for p in h["probes"] if p["answer"] == "time-exceeded"
        }
        assert seen == {26}
