"""The resolved plan's parts that tests/collector/agent/test_config.py (targets, defaults and
every problem's wording) leaves out: the flow receiver and capture sections, where windows
wait while the analyzer is away, and the smallest probe each kind can send."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from collector.agent.config import parse_config
from collector.agent.plan import DEFAULT_SPOOL_ROOT, AgentPlan, resolve_plan, stable_flow_label
from collector.probes.registry import PROBERS
from collector.probes.stamp_session import SenderSettings
from collector.system.config_files import ConfigError
from collector.wire.icmp6 import COOKIE_LEN


def plan_of(text: str, base_dir: Path | None = None) -> AgentPlan:
    return resolve_plan(parse_config(textwrap.dedent(text), source="agent.yaml", base_dir=base_dir))


def test_the_flows_section_becomes_receiver_settings_with_the_slices_dscps(tmp_path):
    plan = plan_of(
        """\
        site: {name: cnty1a}
        slices: [{name: video, dscp: 34}, {name: other, dscp: 0}]
        flows: {listen: ["[::1]:4739", "127.0.0.1:2055"], state_dir: flows, default_sampling: {"2001:db8::e": 64},
                template_timeout_s: 600}
    """,
        base_dir=tmp_path,
    )
    flows = plan.flows
    assert flows.listen == [("::1", 4739), ("127.0.0.1", 2055)]
    assert flows.state_dir == tmp_path / "flows"
    assert (flows.default_sampling, flows.template_timeout_s) == ({"2001:db8::e": 64.0}, 600.0)
    assert flows.slice_rules == [{"slice": "video", "dscp": 34}, {"slice": "other", "dscp": 0}]
    assert flows.rules_source == "agent.yaml"
    assert (flows.exporters, flows.max_exporters, flows.max_templates, flows.max_templates_per_exporter) == (
        None,
        1024,
        4096,
        256,
    )
    assert plan_of("site: {name: a}\n").flows is None


def test_the_flows_section_bounds_the_receiver_and_lists_its_exporters():
    flows = plan_of("""\
        site: {name: cnty1a}
        flows: {exporters: ["2001:db8:ff::/48", 192.0.2.7], max_exporters: 10, max_templates: 100,
                max_templates_per_exporter: 20}
    """).flows
    assert flows.listen == [("::1", 4739)]  # loopback unless configured
    assert flows.exporters == ["2001:db8:ff::/48", "192.0.2.7/32"]
    assert (flows.max_exporters, flows.max_templates, flows.max_templates_per_exporter) == (10, 100, 20)


def test_the_capture_section_classifies_by_the_slices_dscps_unless_a_rules_file_says_otherwise(tmp_path):
    by_dscp = plan_of("""\
        site: {name: cnty1a}
        capture: {interfaces: [{interface: eth0, sample: 100}, {interface: eth1, tcp_rtt: true, altmark_point: e1}]}
    """).capture
    assert by_dscp.classifier.names == ("video", "egov", "data", "best-effort")
    assert by_dscp.rules_source == "DSCP, as the slices section says"
    assert [(i.interface, i.sample, i.tcp_rtt, i.altmark_point) for i in by_dscp.interfaces] == [
        ("eth0", 100, False, None),
        ("eth1", 1, True, "e1"),
    ]
    (tmp_path / "rules.yaml").write_text("rules:\n  - {slice: voice, dscp: 46}\ndefault: rest\n")
    by_rules = plan_of(
        "site: {name: a}\ncapture: {interfaces: [{interface: eth0}], slices: rules.yaml}\n", base_dir=tmp_path
    ).capture
    assert by_rules.classifier.names == ("voice", "rest")
    assert by_rules.rules_source == f"the rules in {tmp_path / 'rules.yaml'}"


def test_windows_wait_in_a_spool_per_site_unless_one_is_configured():
    plan = plan_of("site: {name: cnty1a}\nanalyzer: {url: 'http://centre:8080'}\n")
    assert plan.spool_dir == f"{DEFAULT_SPOOL_ROOT}/cnty1a"
    assert plan_of("site: {name: cnty1a}\n").spool_dir is None  # nothing to ship, nothing to keep


def test_the_smallest_probes_are_a_bare_stamp_request_and_an_echo_cookie():
    minimum_size = {kind: prober.minimum_size for kind, prober in PROBERS.items()}
    assert minimum_size == {"stamp": SenderSettings("", "").minimum_size(), "icmp": COOKIE_LEN}
    plan = plan_of(f"""\
        site: {{name: a}}
        targets: [{{name: t, address: "::1", probes: [stamp, icmp], size: {max(minimum_size.values())},
                    slices: [video]}}]
    """)
    assert [(p.kind, p.size) for p in plan.probes] == [("stamp", 68), ("icmp", 68)]


def test_a_flow_label_falls_anywhere_in_a_one_label_range_only_on_that_label():
    assert {stable_flow_label(f"fd00::{n:x}", "video", (0x777, 0x777)) for n in range(50)} == {0x777}
    labels = {stable_flow_label(f"fd00::{n:x}", "video", (1, 4)) for n in range(200)}
    assert labels == {1, 2, 3, 4}  # every label of a small range is used


BUS = "bus: {servers: ['tls://[fd00::1]:4222'], ca_file: ca.pem, cert_file: s.pem, key_file: s-key.pem}\n"


def test_the_bus_section_becomes_the_sites_bus_identity_relative_to_the_file(tmp_path):
    for name in ("ca.pem", "s.pem", "s-key.pem"):
        (tmp_path / name).write_text("x")
    plan = plan_of("site: {name: cnty1a}\n" + BUS, base_dir=tmp_path)
    assert plan.bus is not None and plan.analyzer_url is None
    assert plan.bus.servers == ("tls://[fd00::1]:4222",) and plan.bus.identity == "site-cnty1a"
    assert (plan.bus.ca_file, plan.bus.cert_file, plan.bus.key_file) == (
        tmp_path / "ca.pem",
        tmp_path / "s.pem",
        tmp_path / "s-key.pem",
    )
    assert plan.spool_dir == f"{DEFAULT_SPOOL_ROOT}/cnty1a"


def test_on_demand_probes_are_answered_only_with_a_bus_and_take_their_bounds(tmp_path):
    for name in ("ca.pem", "s.pem", "s-key.pem"):
        (tmp_path / name).write_text("x")
    assert plan_of("site: {name: cnty1a}\n").on_demand is None  # nobody can ask without a bus
    plan = plan_of("site: {name: cnty1a}\n" + BUS, base_dir=tmp_path)
    assert plan.on_demand is not None and plan.on_demand.max_concurrent == 10 and plan.on_demand.allowed_prefixes == ()
    tuned = plan_of(
        "site: {name: cnty1a}\n" + BUS + "on_demand: {allowed_prefixes: ['fd78::/32'], max_concurrent: 3}\n",
        base_dir=tmp_path,
    )
    assert tuned.on_demand is not None and tuned.on_demand.max_concurrent == 3
    assert [str(p) for p in tuned.on_demand.allowed_prefixes] == ["fd78::/32"]
    off = plan_of("site: {name: cnty1a}\n" + BUS + "on_demand: {enabled: false}\n", base_dir=tmp_path)
    assert off.on_demand is None


def test_a_bus_without_readable_files_or_beside_an_analyzer_is_refused(tmp_path):
    with pytest.raises(ConfigError) as missing:
        plan_of("site: {name: cnty1a}\n" + BUS, base_dir=tmp_path)
    assert "bus.ca_file: cannot read" in str(missing.value) and "bus.key_file: cannot read" in str(missing.value)
    with pytest.raises(ConfigError, match="not both"):
        plan_of("site: {name: cnty1a}\nanalyzer: {url: 'http://centre:8080'}\n" + BUS, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="tls://HOST:PORT"):
        plan_of("site: {name: cnty1a}\n" + BUS.replace("tls://", "http://"), base_dir=tmp_path)
