"""The all-in-one's marked business traffic on the lab: what runs where, and what each
ingress marker selects (the business ports towards the receiver, nothing of the agents')."""

from __future__ import annotations

from lab.business_traffic import FLOWS
from lab.lab import Lab
from xnetmon.allinone import AGENT_METRICS_PORT, BUS_PORT, LAB_SITES, LAB_STAMP_PORT
from xnetmon.lab_business import BUSINESS_PAIRS, business_processes, marker_args

SMALL = Lab.from_name("small")


def option(args: list[str], name: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args) if arg == name]


def test_every_pair_runs_between_sites_with_agents_and_receivers_and_markers_start_before_senders():
    ready, senders = business_processes(SMALL)
    assert all(s in LAB_SITES and r in LAB_SITES and s != r for s, r in BUSINESS_PAIRS)
    assert [(p.name, p.site) for p in senders] == [(f"business-send-{s}", s) for s, _ in BUSINESS_PAIRS]
    assert {(p.name, p.site) for p in ready} == {
        *((f"business-serve-{r}", r) for _, r in BUSINESS_PAIRS),
        *((f"marker-{proto}-{s}", s) for s, _ in BUSINESS_PAIRS for proto in ("udp", "tcp")),
    }
    send = senders[0].argv
    assert send[send.index("--to") + 1] == SMALL.address(BUSINESS_PAIRS[0][1])


def test_markers_select_the_business_ports_towards_the_receiver_only():
    sender, receiver = BUSINESS_PAIRS[0]
    udp, tcp = (marker_args(SMALL, sender, receiver, proto) for proto in ("udp", "tcp"))
    assert option(udp, "--destination") == option(tcp, "--destination") == [f"{SMALL.address(receiver)}/128"]
    marked = {int(p) for p in option(udp, "--port") + option(tcp, "--port")}
    assert marked == {flow.port for flow in FLOWS}
    assert {int(p) for p in option(udp, "--port")} == {f.port for f in FLOWS if f.kind == "udp-cbr"}
    assert not marked & {LAB_STAMP_PORT, AGENT_METRICS_PORT, BUS_PORT}  # probes, scrapes and the bus pass unmarked
    assert option(udp, "--queue") != option(tcp, "--queue")
    # FlowMonIDs unique across the lab: every marker its own index, also the two of one site
    # (sharing one gave a UDP and a TCP flow one FlowMonID, counted in the first one's slice)
    everyone = [(s, r) for s in SMALL.sites for r in SMALL.sites if s != r]
    indexes = [option(marker_args(SMALL, s, r, p), "--site-index")[0] for s, r in everyone for p in ("udp", "tcp")]
    assert len(set(indexes)) == 2 * len(SMALL.sites)
    assert all(int(i) < 1 << 12 for i in indexes)  # the marker's default site bits
