"""In-situ flow telemetry across the lab, end to end: real packets marked at the ingress,
counted by the agents' captures, shipped with their windows, paired into segments by the
analyzer; a random 0.5% loss of one slice on one link lands on exactly that link.

Path cnty1a -> city1a -> prov1. The ingress marker (NFQUEUE) in cnty1a marks a steady UDP
flow of the video slice. Agents count on cnty1a's link to city1a, on city1a's link to prov1
and on prov1's link from city1a, and ship over HTTP to an analyzer in this process (its API
also inside the lab, on core's address). A `loss` fault on city1a-cnty1a from cnty1a for the
video slice drops in city1a's PREROUTING: after city1a's ingress capture would see a packet,
so city1a counts only where the flow leaves it, and the segment from leaving cnty1a to
leaving city1a is the span `cnty1a>city1a` (the link and city1a's forwarding). The agents
probe in the egov slice only, so the marked flow is the only video traffic the fault's rule
sees: its packet counter must equal the span's summed loss exactly, every other segment 0.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from analyzer.service import AnalyzerService
from analyzer.sla.policies import LAB_POLICY_FILE, load_policies
from tests.altmark_support import marker_argv
from tests.support import REPO, LineReader, stop_process, wait_until
from xnetmon.netns_sockets import listening_socket_in

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.tool("ip6tables")]

INGRESS, MIDDLE, EGRESS = "cnty1a", "city1a", "prov1"
LOSSY_LINK, NEXT_LINK = "city1a-cnty1a", "prov1-city1a"
POINTS = {INGRESS: [LOSSY_LINK], MIDDLE: [NEXT_LINK], EGRESS: [NEXT_LINK]}  # which links each site counts on
VIDEO_DSCP, FLOW_PORT, QUEUE = 34, 5004, 5
RATE_PPS, BLOCK_S = 1000, 1.0
STAMP_PORT, METRICS_PORT, API_PORT = 8620, 9862, 9871
TOKEN = "insitu-lab-token"


def agent_config(lab, site: str, links: list[str], api: str, token_file) -> str:
    target = EGRESS if site != EGRESS else INGRESS
    captures = ", ".join(
        f"{{interface: {lab.topology.link(link).interface(site)}, sample: 100, altmark_point: {link}}}"
        for link in links
    )
    return f"""
site: {{name: {site}, addresses: ['{lab.address(site)}']}}
targets:
  - {{name: {target}, address: '{lab.address(target)}', port: {STAMP_PORT}, slices: [egov]}}
probing: {{interval_s: 0.1, window_s: 1, timeout_s: 0.3, start_delay_s: 1, trace: {{enabled: false}}}}
reflector: {{enabled: true, bind: ['{lab.address(site)}'], port: {STAMP_PORT}, rate_limit_pps: 0}}
metrics: {{listen: '[{lab.address(site)}]:{METRICS_PORT}'}}
capture: {{interfaces: [{captures}]}}
analyzer: {{url: '{api}', token_file: '{token_file}', spool_dir: '{token_file.parent / ("spool-" + site)}'}}
"""


@contextlib.contextmanager
def running(argv: list[str], log_path) -> Iterator[subprocess.Popen]:
    with log_path.open("w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        yield proc
    finally:
        stop_process(proc)


def sender_argv(lab, seconds: float) -> list[str]:
    script = (
        "import socket,time\n"
        "s=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n"
        f"s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_TCLASS,{VIDEO_DSCP << 2})\n"
        f"s.bind(({lab.address(INGRESS)!r},0))\n"
        f"n=int({RATE_PPS}*{seconds});start=time.monotonic()\n"
        "for i in range(n):\n"
        f"    time.sleep(max(0.0,start+i/{RATE_PPS}-time.monotonic()))\n"
        f"    s.sendto(i.to_bytes(8,'big')+bytes(92),({lab.address(EGRESS)!r},{FLOW_PORT}))\n"
        "print('sent',n,flush=True)\n"
    )
    return lab.exec_argv(INGRESS, [sys.executable, "-c", script])


class InsituLab:
    """The analyzer's API, as the test reads it, and the marker's output."""

    def __init__(self, local: str, marker_lines: LineReader, sender: subprocess.Popen) -> None:
        self.local = local
        self.marker_lines = marker_lines
        self.sender = sender

    def segments(self, **params) -> dict:
        return httpx.get(f"{self.local}/segments", params=params, timeout=30).json()

    def totals(self) -> dict[tuple[str, str], dict]:
        return {(s["segment"], s["kind"]): s for s in self.segments(slice="video", limit=0)["segments"]}

    def hints(self) -> list[dict]:
        return httpx.get(f"{self.local}/hints", params={"slice": "video"}, timeout=30).json()


@contextlib.contextmanager
def insitu_lab(lab, tmp_path, seconds: float, points: dict[str, list[str]] = POINTS) -> Iterator[InsituLab]:
    """Analyzer, agents counting on `points` (site: links), marker and a `seconds`-long marked
    flow, with a few clean blocks paired."""
    assert lab.path(INGRESS, EGRESS) == (INGRESS, MIDDLE, EGRESS)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    service = AnalyzerService(load_policies(LAB_POLICY_FILE), ("::1", 0), token=TOKEN, interval_s=1.0)
    in_lab = listening_socket_in(lab.namespace("core"), lab.address("core"), API_PORT)
    service.serve_in_thread(extra_sockets=[in_lab])
    local = f"http://[::1]:{service.socket.getsockname()[1]}"
    api = f"http://[{lab.address('core')}]:{API_PORT}"
    try:
        with contextlib.ExitStack() as stack:
            for site, links in points.items():
                config = tmp_path / f"agent-{site}.yaml"
                config.write_text(agent_config(lab, site, links, api, token_file))
                argv = lab.exec_argv(site, [sys.executable, "-m", "xnetmon", "agent", "--config", str(config)])
                stack.enter_context(running(argv, tmp_path / f"agent-{site}.log"))
            for site in points:  # captures start before the metrics server: once it answers they count
                url = f"http://[{lab.address(site)}]:{METRICS_PORT}/metrics"
                wait_until(
                    lambda url=url, site=site: lab.exec(site, ["curl", "-sf", "-o", "/dev/null", url]).returncode == 0,
                    interval=0.2,
                    what=f"the agent on {site} serving",
                )
            marker = subprocess.Popen(
                marker_argv(
                    lab.namespace(INGRESS), "--queue", str(QUEUE), "--site-index", "7", "--dscp", str(VIDEO_DSCP),
                    "--protocol", "udp", "--port", str(FLOW_PORT), "--block-s", str(BLOCK_S), "--install-rule",
                ),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
            )  # fmt: skip
            marker_lines = LineReader(marker.stdout)
            stack.callback(stop_process, marker)
            marker_lines.wait_for(lambda line: '"ready"' in line)
            sender = stack.enter_context(running(sender_argv(lab, seconds), tmp_path / "sender.log"))
            insitu = InsituLab(local, marker_lines, sender)
            # a few clean blocks first: every segment paired, none losing
            wait_until(lambda: sum(s["blocks"] for s in insitu.totals().values()) >= 12, what="clean blocks paired")
            clean = insitu.totals()
            assert all(s["lost"] == 0 for s in clean.values()), clean
            yield insitu
    finally:
        service.stop()


def test_segment_loss_lands_on_the_lossy_link_and_equals_the_rules_counter(lab, tmp_path):
    fault = None
    try:
        with insitu_lab(lab, tmp_path, 40.0) as insitu:
            fault = lab.fault_loss(LOSSY_LINK, 0.005, from_site=INGRESS, slice="video")
            fault_at_ns = time.time_ns()

            def hint() -> dict | None:
                return next((h for h in insitu.hints() if h["suspects"] == [f"{INGRESS}>{MIDDLE}"]), None)

            found = wait_until(hint, interval=0.2, what="an in-situ hint naming the lossy link")
            hinted_ns = time.time_ns()
            wait_until(lambda: lab.loss_drops(MIDDLE, fault) >= 40, interval=0.5, what="the fault dropping 40 packets")
            # Freeze the rule's counter before reading it: an ACCEPT above it ends the raw chain
            # for the slice, so nothing more is dropped between the reading and the heal.
            accept = ["PREROUTING", "-m", "dscp", "--dscp", str(VIDEO_DSCP), "-j", "ACCEPT"]
            freeze = ["ip6tables", "-w", "-t", "raw", "-I", accept[0], "1", *accept[1:]]
            lab.exec(MIDDLE, freeze, check=True)
            dropped = lab.loss_drops(MIDDLE, fault)
            lab.heal(fault)
            lab.exec(MIDDLE, ["ip6tables", "-w", "-t", "raw", "-D", *accept], check=True)
            fault = None

            span = (f"{INGRESS}>{MIDDLE}", "span")
            seen: dict = {}

            def all_counted() -> bool:
                nonlocal seen
                seen = insitu.totals()
                return seen.get(span, {}).get("lost", 0) >= dropped

            wait_until(all_counted, interval=0.5, what=lambda: f"{dropped} drops counted on the span ({seen})")
            assert insitu.sender.poll() is None, "the flow must outlast the fault (its last blocks finish after)"
            report = insitu.segments(slice="video", link=span[0], limit=5000)
    finally:
        if fault is not None:
            lab.heal(fault)
    marker_report = json.loads(insitu.marker_lines.wait_for(lambda line: '"marked"' in line)[0])

    assert seen[span]["lost"] == dropped  # exactly what the rule dropped, no more
    others = {key: s["lost"] for key, s in seen.items() if key != span and s["kind"] != "end-to-end"}
    assert others and set(others.values()) == {0}, others
    assert seen[(f"{INGRESS}>{EGRESS}", "end-to-end")]["lost"] == dropped
    assert 0.002 < dropped / seen[span]["packets"] < 0.01  # the fault's 0.5%
    assert found["kind"] == "link-loss" and "in-situ" in found["evidence"][0]
    losing = [b for b in report["blocks"] if b["lost"] > 0]
    first_losing_end_ns = min(b["first_ns"] for b in losing) + int(BLOCK_S * 1e9)
    assert first_losing_end_ns >= fault_at_ns
    latency_blocks = (hinted_ns - first_losing_end_ns) / (BLOCK_S * 1e9)
    print(f"hint {latency_blocks:.2f} block periods after the first losing block ended; "
          f"{(hinted_ns - fault_at_ns) / 1e9:.2f} s after the fault began; dropped {dropped}")  # fmt: skip
    assert latency_blocks <= 3, latency_blocks
    assert marker_report["kernel_queue_dropped"] == 0 and marker_report["skipped"]["flow-limit"] == 0
    assert all(b["delay_ns"] is None or 0 < b["delay_ns"] < 50e6 for b in report["blocks"])


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def test_a_delay_fault_raises_one_segments_one_way_delay_by_the_set_delay(lab, tmp_path):
    """20 ms on prov1-city1a from city1a for video. The lab holds a delayed link's packets at
    the sender's egress (lab/delay.py), before city1a's capture sees them leave, so the delay
    lands on the span that ends where the flow leaves city1a; the link behind it is unchanged."""
    set_ms = 20.0
    span, link = f"{INGRESS}>{MIDDLE}", f"{MIDDLE}>{EGRESS}"
    fault = None
    try:
        with insitu_lab(lab, tmp_path, 30.0) as insitu:

            def delays(segment: str, after_ns: int = 0) -> list[float]:
                blocks = insitu.segments(slice="video", link=segment, limit=5000)["blocks"]
                return [b["delay_ns"] for b in blocks if b["delay_ns"] is not None and b["first_ns"] >= after_ns]

            before = {segment: median(delays(segment)) for segment in (span, link)}
            fault = lab.fault_delay(NEXT_LINK, set_ms, from_site=MIDDLE, slice="video")
            settled_ns = time.time_ns() + int(BLOCK_S * 1e9)  # blocks wholly after the fault began
            wait_until(lambda: len(delays(span, settled_ns)) >= 4, interval=0.5, what="4 delayed blocks paired")
            after = {segment: median(delays(segment, settled_ns)) for segment in (span, link)}
    finally:
        if fault is not None:
            lab.heal(fault)
    rise_ms = {segment: (after[segment] - before[segment]) / 1e6 for segment in (span, link)}
    print(f"one-way delay rise: {rise_ms} (set {set_ms} ms); before {before}")
    # lab/delay.py: the set delay plus the delay line's wake-up, a few ms at most on a loaded host
    assert set_ms - 1 <= rise_ms[span] <= set_ms + 10, rise_ms
    assert abs(rise_ms[link]) < 2, rise_ms


def blocks_since(insitu: InsituLab, after_ns: int) -> list[dict]:
    """Segment blocks of the video slice whose first packet left after `after_ns`."""
    return [b for b in insitu.segments(slice="video", limit=5000)["blocks"] if b["first_ns"] >= after_ns]


def test_packets_reordered_across_block_boundaries_make_no_phantom_loss(lab, tmp_path):
    """Every other packet of the flow held 15 ms where it leaves city1a (the lab's delay line
    for video on prov1-city1a, with an ACCEPT above it for every second packet): at 1000
    packets/s each block's last packets arrive after the next block's first, between city1a's
    two counting points. No segment loses a packet."""
    points = {INGRESS: [LOSSY_LINK], MIDDLE: [LOSSY_LINK, NEXT_LINK], EGRESS: [NEXT_LINK]}
    device = lab.topology.link(NEXT_LINK).interface(MIDDLE)
    spare = ["POSTROUTING", "-o", device, "-m", "dscp", "--dscp", str(VIDEO_DSCP)]
    spare += ["-m", "statistic", "--mode", "nth", "--every", "2", "--packet", "0", "-j", "ACCEPT"]
    fault = None
    try:
        with insitu_lab(lab, tmp_path, 40.0, points) as insitu:
            fault = lab.fault_delay(NEXT_LINK, 15.0, from_site=MIDDLE, slice="video")
            lab.exec(MIDDLE, ["ip6tables", "-w", "-t", "mangle", "-I", spare[0], "1", *spare[1:]], check=True)
            reordered_ns = time.time_ns() + int(BLOCK_S * 1e9)  # blocks wholly after it began

            def reordered_blocks() -> int:
                return sum(1 for b in blocks_since(insitu, reordered_ns) if b["segment"] == MIDDLE)

            wait_until(lambda: reordered_blocks() >= 10, interval=0.5, what="10 reordered blocks across city1a")
            listing = lab.exec(MIDDLE, ["ip6tables", "-w", "-t", "mangle", "-L", "POSTROUTING", "-v", "-x", "-n"])
            lab.exec(MIDDLE, ["ip6tables", "-w", "-t", "mangle", "-D", *spare], check=True)
            lab.heal(fault)
            fault = None
            totals = insitu.totals()
            late = blocks_since(insitu, reordered_ns)
    finally:
        if fault is not None:
            lab.heal(fault)
    held = [int(line.split()[0]) for line in listing.stdout.splitlines() if "NFQUEUE" in line]
    passed = [int(line.split()[0]) for line in listing.stdout.splitlines() if "statistic" in line]
    assert held and passed and min(*held, *passed) > 5000, listing.stdout  # both halves, 5 s and more
    kinds = {(b["segment"], b["kind"]) for b in late}
    assert {(MIDDLE, "node"), (f"{INGRESS}>{EGRESS}", "end-to-end"), (f"{MIDDLE}>{EGRESS}", "link")} <= kinds
    uneven = [b for b in late if b["lost"] != 0]
    assert all(s["lost"] == 0 and s["duplicated"] == 0 for s in totals.values()), (totals, uneven)


def test_a_reroute_mid_flow_makes_no_phantom_loss_and_the_segments_follow_the_new_path(lab, tmp_path):
    """cnty1a -> prov1 moved from city1a -> prov1 to city1a -> prov2 -> core -> prov1 while
    marked. Every counting site on either path counts on each of its links the flow may take
    (the core does not count: prov2 to prov1 is a span). Segments after the move run along the
    new path, the old path's end at city1a>prov1, and no segment loses a packet."""
    new_middle = "prov2"
    via, old_exit = f"{new_middle}-{MIDDLE}", NEXT_LINK
    points = {
        INGRESS: [LOSSY_LINK],
        MIDDLE: [LOSSY_LINK, old_exit, via],
        new_middle: [via, f"core-{new_middle}", f"{EGRESS}-{new_middle}"],
        EGRESS: [old_exit, f"core-{EGRESS}", f"{EGRESS}-{new_middle}"],
    }
    fault = None
    try:
        with insitu_lab(lab, tmp_path, 75.0, points) as insitu:
            fault = lab.fault_reroute(INGRESS, EGRESS, via=new_middle)
            assert lab.path(INGRESS, EGRESS) == (INGRESS, MIDDLE, new_middle, "core", EGRESS)
            moved_ns = time.time_ns() + int(BLOCK_S * 1e9)  # blocks wholly after the move
            end_to_end = (f"{INGRESS}>{EGRESS}", "end-to-end")

            def along_new_path() -> set[tuple[str, str]]:
                return {(b["segment"], b["kind"]) for b in blocks_since(insitu, moved_ns + int(2 * BLOCK_S * 1e9))}

            # The points the flow left are set aside once silent for the analyzer's 30 s.
            wait_until(lambda: end_to_end in along_new_path(), interval=1.0, what="end-to-end blocks after the move")
            assert insitu.sender.poll() is None, "the flow must outlast the wait"
            after = along_new_path()
            totals = insitu.totals()
            old_link = insitu.segments(slice="video", link=f"{MIDDLE}>{EGRESS}", limit=5000)["blocks"]
    finally:
        if fault is not None:
            lab.heal(fault)
    assert after == {
        (f"{INGRESS}>{MIDDLE}", "link"),
        (MIDDLE, "node"),
        (f"{MIDDLE}>{new_middle}", "link"),
        (new_middle, "node"),
        (f"{new_middle}>{EGRESS}", "span"),  # through the core, which does not count
        end_to_end,
    }, after
    assert old_link and max(b["first_ns"] for b in old_link) < moved_ns  # the old exit carried no block after
    assert all(s["lost"] == 0 and s["duplicated"] == 0 for s in totals.values()), totals
