"""`xnetmon run` on the lab receives real flow exports: softflowd on every link of each
probing site exports IPFIX to the site's agent, whose /metrics then carry xnet_flow_* for
the probe traffic and whose /flows/top names the sites that send it.

softflowd 1.1.0 exports IPv6 flows with a traffic class of 0, and the lab's slices differ
by DSCP only (every slice probes between the same site addresses), so every flow lands in
best-effort here; the test says so rather than pretend the other slices have flows."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.prometheus_support import _get
from tests.support import wait_until
from xnetmon.allinone import AGENT_METRICS_PORT, lab_deployment

pytestmark = [pytest.mark.root, pytest.mark.lab, pytest.mark.tool("softflowd")]

CPU_BUDGET = 0.05  # of one core, per site


def samples(lab, site: str, name: str) -> list:
    text = _get(f"http://[{lab.address(site)}]:{AGENT_METRICS_PORT}/metrics", lab.namespace(site), parse=False)
    return [s for family in text_string_to_metric_families(text.decode()) for s in family.samples if s.name == name]


def total(lab, site: str, name: str, **labels: str) -> float:
    return sum(s.value for s in samples(lab, site, name) if all(s.labels.get(k) == v for k, v in labels.items()))


def flows_counted(lab, site: str) -> bool:
    """Whether the site's agent counts flow bytes yet; an agent still starting (on a loaded
    machine, its /metrics may open after the deployment is up) counts as not yet."""
    try:
        return total(lab, site, "xnet_flow_bytes_total") > 0
    except OSError:
        return False


def top(lab, site: str, slice_name: str) -> dict:
    url = f"http://[{lab.address(site)}]:{AGENT_METRICS_PORT}/flows/top?slice={slice_name}&limit=10"
    return _get(url, lab.namespace(site))


def test_agents_receive_softflowd_exports_of_their_probe_traffic(lab, tmp_path):
    with lab_deployment(lab, tmp_path, api_port=0) as deployment:
        sites = deployment.sites
        assert "softflowd" in deployment.flows, deployment.flows
        fleet = deployment.exporters
        captured = {(e.site, e.interface) for e in fleet.exporters}
        assert captured == {(site, link.interface(site)) for site in sites for link in lab.topology.links_of(site)}
        processes = [e.process for e in fleet.exporters]

        started = time.monotonic()
        for site in sites:  # after the agents' start, the 4 s start delay, a capture block, maxlife 5 s, expint 1 s
            wait_until(lambda site=site: flows_counted(lab, site), interval=1, what=f"flows on {site}")
        print(f"\nflows on every site {time.monotonic() - started:.1f} s after softflowd started")
        # Every probe a site sent before now leaves by one of its links, so its exports must
        # count at least as many outgoing packets soon after (reflector replies, traces and
        # shipped windows add to them).
        sent = {site: total(lab, site, "xnet_probe_sent_total") for site in sites}
        assert all(sent.values()), sent
        for site in sites:
            wait_until(
                lambda site=site: total(lab, site, "xnet_flow_packets_total", direction="out") >= sent[site],
                interval=1,
                what=f"{site}'s exports covering its {sent[site]:.0f} probes",
            )

        for site in sites:  # each link's capture counts from its first block's end, softflowd on its own time
            links = {f"capture:{link.interface(site)}" for link in lab.topology.links_of(site)}
            wait_until(
                lambda site=site, links=links: (
                    links <= {s.labels["exporter"] for s in samples(lab, site, "xnet_flow_bytes_total")}
                ),
                interval=1,
                what=f"{site}'s captures of {sorted(links)} counting flows",
            )
            series = samples(lab, site, "xnet_flow_bytes_total")
            exported = [s for s in series if s.labels["exporter"] == lab.address(site)]
            assert {s.labels["direction"] for s in exported} == {"in", "out"}
            # No DSCP in softflowd's IPv6 records: the probes of every slice count as best-effort.
            assert {s.labels["slice"] for s in exported} == {"best-effort"}, exported
            # The agent's own capture of its links sees the DSCP: every probed slice has flows.
            assert {s.labels["exporter"] for s in series} == {lab.address(site)} | links, series
            captured_slices = {s.labels["slice"] for s in series if s.labels["exporter"] in links and s.value > 0}
            assert captured_slices == {"video", "egov", "data", "best-effort"}, (site, captured_slices)
            answer = top(lab, site, "best-effort")
            talkers = {t["address"] for t in answer["talkers"]}
            assert {lab.address(other) for other in sites} <= talkers, (site, answer)
            assert answer["total_bytes"] >= sum(t["bytes"] - t["error"] for t in answer["talkers"]) > 0, answer
            assert top(lab, site, "video")["total_bytes"] > 0  # from the capture only
            assert total(lab, site, "xnet_flow_datagrams_total", protocol="ipfix") > 0
            assert not samples(lab, site, "xnet_malformed_packets_total")

        cpu = fleet.cpu_by_site()
        print("softflowd CPU share per site: " + ", ".join(f"{site} {share:.2%}" for site, share in cpu.items()))
        assert set(cpu) == set(sites)
        assert all(share < CPU_BUDGET for share in cpu.values()), cpu
    assert all(proc.poll() is not None for proc in processes)
    assert all(not lab.processes_matching(site, "softflowd") for site in sites)
