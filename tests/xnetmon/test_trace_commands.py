"""`xnetmon probe trace`, run as a user runs it: output shapes, JSON, the report table, errors."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from collector.contract.records import path_fingerprint
from tests.support import REPO, XNETMON, network_namespace, xnetmon

UNPRIVILEGED = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_trace_prints_a_line_per_hop_and_the_path_fingerprint():
    done = xnetmon("probe", "trace", "::1", "--slice", "egov")
    assert done.returncode == 0, done.stderr
    banner, hop, fingerprint = done.stdout.splitlines()
    assert re.match(
        r"^traceroute to ::1 \(::1\), 30 hops max, udp flow label 0x[0-9a-f]{5} ports \d+>33434, "
        r"slice egov \(DSCP 26\)$",
        banner,
    )
    assert re.match(r"^ 1  ::1  \d+\.\d{3} ms  \d+\.\d{3} ms  \d+\.\d{3} ms$", hop)
    assert fingerprint == f"path fingerprint {path_fingerprint(('::1',))} (1 hop, destination reached)"


def test_trace_json_has_the_probes_and_the_path_observation():
    done = xnetmon("probe", "trace", "::1", "--json", "-q", "2", "--dscp", "46", "--flow-label", "0x2345")
    document = json.loads(done.stdout)
    assert (document["protocol"], document["dscp"]) == ("udp", 46)
    (flow,) = document["flows"]
    assert flow["flow"]["flow_label"] == 0x2345 and flow["flow"]["destination_port"] == 33434
    (hop,) = flow["hops"]
    assert [p["answer"] for p in hop["probes"]] == ["reached", "reached"]
    assert all(p["responder"] == "::1" and p["rtt_ns"] > 0 for p in hop["probes"])
    path = flow["path"]
    assert path["hops"] == ["::1"] and path["reached"] and path["source"] == "::1"
    assert path["fingerprint"] == path_fingerprint(("::1",)) and path["observed_ns"] > 0


def test_report_prints_the_mtr_table():
    done = xnetmon("probe", "trace", "::1", "--report", "-c", "4", "-i", "0.02")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Start: ") and "traceroute to ::1 (::1)" in lines[0]
    assert re.match(r"^HOST: \S+\s+Loss%   Snt   Last   Avg  Best  Wrst StDev$", lines[1])
    assert re.match(r"^  1\.\|-- ::1\s+0\.0%     4(\s+\d+\.\d){5}$", lines[2])
    assert lines[3].startswith("path fingerprint ")


def test_report_json_counts_every_round():
    done = xnetmon("probe", "trace", "::1", "--report", "-c", "3", "-i", "0.02", "--json")
    document = json.loads(done.stdout)
    (row,) = document["report"]
    assert (row["hop"], row["address"], row["sent"], row["received"], row["loss_ratio"]) == (1, "::1", 3, 3, 0.0)
    assert row["best_ns"] <= row["avg_ns"] <= row["worst_ns"] and document["rounds"] == 3


def test_multipath_traces_distinct_flows():
    done = xnetmon("probe", "trace", "::1", "--multipath", "--flows", "4", "--json")
    document = json.loads(done.stdout)
    flows = [f["flow"] for f in document["flows"]]
    assert len({f["flow_label"] for f in flows}) == 4 and len({f["source_port"] for f in flows}) == 4
    assert document["next_hops"] == [{"hop": 1, "responders": {"::1": [0, 1, 2, 3]}}]
    text = xnetmon("probe", "trace", "::1", "--multipath", "--flows", "3").stdout
    assert " 1  ::1  (3 of 3 flows)" in text and "1 distinct path(s) over 3 flows:" in text


@pytest.mark.root
@pytest.mark.parametrize("protocol,detail", [("icmp", None), ("tcp", "port closed")])
def test_raw_probe_types_reach_the_target(protocol, detail):
    done = xnetmon("probe", "trace", "::1", "--proto", protocol, "--json", "--slice", "video")
    (flow,) = json.loads(done.stdout)["flows"]
    assert flow["flow"]["protocol"] == protocol
    assert {(p["answer"], p["detail"]) for p in flow["hops"][0]["probes"]} == {("reached", detail)}


@pytest.mark.root
def test_a_target_without_a_route_gives_stars_and_says_why():
    with network_namespace() as ns:
        done = xnetmon("probe", "trace", "2001:db8::1", "-m", "2", "-W", "0.2", netns=ns)
    assert done.returncode == 1
    assert "could not send: Network is unreachable" in done.stderr and "Traceback" not in done.stderr
    assert "(0 hops, destination not reached)" in done.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["127.0.0.1"], "'127.0.0.1' has no IPv6 address"),
        (["no-such-host.invalid"], "cannot resolve 'no-such-host.invalid'"),
        (["::1", "--slice", "gold"], "unknown slice 'gold' (known slices: video, egov, data, best-effort)"),
        (["::1", "--multipath", "--report"], "do not combine"),
        (["::1", "-m", "300"], "hop limits must satisfy"),
        (["::1", "--flow-label", "0x100000"], "flow label 1048576 is not in 1..0xFFFFF"),
        (["::1", "--report", "-c", "0"], "must be at least 1"),
    ],
)
def test_usage_errors_are_one_line_without_traceback(args, message):
    done = xnetmon("probe", "trace", *args)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("xnetmon probe: ") and message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


@pytest.mark.root
@pytest.mark.tool("setpriv")
def test_without_privilege_raw_probes_say_what_to_do_and_udp_works():
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*UNPRIVILEGED, *XNETMON, "probe", "trace", "::1", *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )

    for protocol in ("icmp", "tcp"):
        refused = run("--proto", protocol)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert f"--proto {protocol} needs raw sockets" in refused.stderr
        assert "run as root, or use --proto udp" in refused.stderr
    assert run("--proto", "udp").returncode == 0


def test_hop_lines_flag_refusals_and_remarked_dscp():
    from collector.contract.records import HopAnswer, HopProbe
    from collector.probes.trace_session import TraceHop
    from xnetmon.commands.probe_trace import _hop_line

    probes = (
        HopProbe(3, 6, 0, HopAnswer.TIME_EXCEEDED, "2001:db8::1", 1_250_000, quoted_dscp=0),
        HopProbe(3, 7, 0, HopAnswer.NONE),
        HopProbe(3, 8, 0, HopAnswer.UNREACHABLE, "2001:db8::2", 2_000_000, "no route to destination", 34),
    )
    assert _hop_line(TraceHop(3, probes), 34) == (
        " 3  2001:db8::1  1.250 ms * 2001:db8::2  2.000 ms !N  [DSCP 34 arrived as 0]"
    )
