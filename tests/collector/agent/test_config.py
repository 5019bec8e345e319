"""Agent configuration: defaults, target expansion, flow labels, and every error's wording. (How
the file is read and what its YAML errors say: tests/collector/system/test_config_files.py.)"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from collector.agent.config import AgentConfig, ConfigError, parse_config, validate_config
from collector.agent.plan import AgentPlan, PlannedProbe, load_plan, resolve_plan, stable_flow_label
from collector.contract.records import Slice, Target
from collector.contract.slice_catalog import DEFAULT_SLICES
from collector.reflector.session_reflector import ReflectorConfig

EXAMPLES = Path(__file__).resolve().parents[3] / "collector" / "examples"
SLICES_ARE = "(slices are: video, egov, data, best-effort)"


def plan_of(text: str, base_dir: Path | None = None) -> AgentPlan:
    return resolve_plan(parse_config(textwrap.dedent(text), source="agent.yaml", base_dir=base_dir))


def problems_of(text: str, base_dir: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        plan_of(text, base_dir)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return list(caught.value.problems)


# -- defaults ------------------------------------------------------------------------------


def test_a_file_with_only_a_site_gets_every_default():
    plan = plan_of("site: {name: cnty1a}\n")
    assert plan.site == "cnty1a" and plan.source_address is None
    assert plan.probes == ()
    assert (plan.window_s, plan.trace_enabled, plan.trace_period_s, plan.trace_proto) == (10.0, True, 300.0, "udp")
    assert plan.reflector == ReflectorConfig(bind=("::",), port=862, stateful=True, allow=(), rate_limit_pps=1000.0)
    assert plan.metrics_listen == ("::1", 9862)
    assert (plan.analyzer_url, plan.analyzer_token, plan.spool_dir) == (None, None, None)
    assert plan.spool_max_windows == 100_000
    assert plan.config_path == "agent.yaml"


def test_a_target_without_options_gets_stamp_in_every_default_slice_once_a_second():
    plan = plan_of("""\
        site: {name: cnty1a, addresses: ["fd78:6e6d:5300:0::8", "fd78:6e6d:5300::99"]}
        targets:
          - {name: core, address: "FD78:6e6d:5300::1"}
    """)
    assert plan.source_address == "fd78:6e6d:5300::8"  # the first, in canonical form
    assert plan.probes == tuple(
        PlannedProbe(Target("core", "fd78:6e6d:5300::1", 862), s, "stamp", 1.0, 1, 2.0, None, None)
        for s in DEFAULT_SLICES
    )


def test_probing_defaults_apply_and_a_target_may_override_them():
    plan = plan_of("""\
        site: {name: a}
        probing: {interval_s: 0.5, packets_per_interval: 2, timeout_s: 1, size: 100, window_s: 5}
        targets:
          - {name: plain, address: "::1", slices: [video]}
          - {name: tuned, address: "::2", slices: [video], interval_s: 2, packets_per_interval: 3,
             timeout_s: 0.25, size: 200, port: 8620, probes: [icmp, stamp]}
    """)
    settings = [(p.target, p.kind, p.interval_s, p.packets_per_interval, p.timeout_s, p.size) for p in plan.probes]
    assert settings == [
        (Target("plain", "::1", 862), "stamp", 0.5, 2, 1.0, 100),
        (Target("tuned", "::2", 8620), "icmp", 2.0, 3, 0.25, 200),
        (Target("tuned", "::2", 8620), "stamp", 2.0, 3, 0.25, 200),
    ]
    assert plan.window_s == 5.0


def test_probes_go_target_by_target_in_catalogue_order_whatever_order_a_target_lists_slices():
    plan = plan_of("""\
        site: {name: a}
        targets:
          - {name: x, address: "::1", slices: [best-effort, video], probes: [stamp, icmp]}
    """)
    assert [(p.slice.name, p.kind) for p in plan.probes] == [
        ("video", "stamp"),
        ("video", "icmp"),
        ("best-effort", "stamp"),
        ("best-effort", "icmp"),
    ]


def test_own_slices_replace_the_catalogue():
    plan = plan_of("""\
        site: {name: a}
        slices:
          - {name: voice, dscp: 46, slice_id: 4294967295}
          - {name: rest, dscp: 0}
        targets: [{name: x, address: "::1"}]
    """)
    assert [p.slice for p in plan.probes] == [Slice("voice", 46, 4294967295), Slice("rest", 0, None)]


def test_reflector_analyzer_and_metrics_settings(tmp_path):
    (tmp_path / "reflector.key").write_bytes(b"reflector-key-0123456789\n")
    (tmp_path / "token").write_text("  abc123  \n")
    plan = plan_of(
        """\
        site: {name: a}
        reflector: {bind: ["::1", "127.0.0.1"], port: 8620, stateful: false, allow: ["fd00::/8"],
                    rate_limit_pps: 0, global_rate_limit_pps: 5000, auth_key_file: reflector.key}
        metrics: {listen: "127.0.0.1:0"}
        analyzer: {url: "https://analyzer.example:8443/v1", token_file: token, spool_dir: spool,
                   spool_max_windows: 500}
        probing: {trace: {enabled: false, period_s: 60, proto: icmp}}
    """,
        base_dir=tmp_path,
    )
    assert plan.reflector == ReflectorConfig(
        bind=("::1", "127.0.0.1"),
        port=8620,
        stateful=False,
        allow=("fd00::/8",),
        rate_limit_pps=0.0,
        global_rate_limit_pps=5000.0,
        auth_key=b"reflector-key-0123456789",
    )
    assert plan.metrics_listen == ("127.0.0.1", 0)
    assert plan.analyzer_url == "https://analyzer.example:8443/v1"
    assert plan.analyzer_token == "abc123"
    assert plan.spool_dir == str(tmp_path / "spool")  # relative to the configuration file
    assert plan.spool_max_windows == 500
    assert (plan.trace_enabled, plan.trace_period_s, plan.trace_proto) == (False, 60.0, "icmp")


def test_a_disabled_reflector_is_none():
    assert plan_of("site: {name: a}\nreflector: {enabled: false}\n").reflector is None


def test_load_plan_records_the_absolute_path_and_reads_files_beside_the_config(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "hosts.txt").write_text("core fd78:6e6d:5300::1\n")
    (tmp_path / "conf" / "agent.yaml").write_text("site: {name: a}\ntargets: [{file: hosts.txt}]\n")
    monkeypatch.chdir(tmp_path)
    plan = load_plan("conf/agent.yaml")
    assert plan.config_path == str(tmp_path / "conf" / "agent.yaml")
    assert {p.target for p in plan.probes} == {Target("core", "fd78:6e6d:5300::1")}


# -- target expansion ------------------------------------------------------------------------


def test_a_text_file_gives_one_target_per_line_ignoring_comments_and_blanks(tmp_path):
    (tmp_path / "sites.txt").write_text("# lab sites\ncore fd78:6e6d:5300::1\n\n  prov1   fd78:6e6d:5300::2  # p\n")
    plan = plan_of(
        """\
        site: {name: a}
        targets: [{file: sites.txt, slices: [egov], port: 8620}]
    """,
        base_dir=tmp_path,
    )
    assert [p.target for p in plan.probes] == [
        Target("core", "fd78:6e6d:5300::1", 8620),
        Target("prov1", "fd78:6e6d:5300::2", 8620),
    ]


def test_a_yaml_file_is_a_list_of_name_address_mappings(tmp_path):
    (tmp_path / "sites.yaml").write_text(
        "- {name: core, address: 'fd78:6e6d:5300::1'}\n- {name: v4, address: 10.0.0.1}\n"
    )
    plan = plan_of("site: {name: a}\ntargets: [{file: sites.yaml, slices: [data]}]\n", base_dir=tmp_path)
    assert [p.target.name for p in plan.probes] == ["core", "v4"]


def test_a_cidr_expands_to_every_address_named_by_offset():
    plan = plan_of("""\
        site: {name: a}
        targets: [{cidr: "fd00::/126", name_prefix: "h-", slices: [video]}]
    """)
    assert [(p.target.name, p.target.address) for p in plan.probes] == [
        ("h-0", "fd00::"),
        ("h-1", "fd00::1"),
        ("h-2", "fd00::2"),
        ("h-3", "fd00::3"),
    ]


def test_a_cidr_with_count_takes_the_first_addresses_and_without_prefix_names_them_by_address():
    plan = plan_of("site: {name: a}\ntargets: [{cidr: 'fd00::100/120', count: 2, slices: [video]}]\n")
    assert [(p.target.name, p.target.address) for p in plan.probes] == [
        ("fd00::100", "fd00::100"),
        ("fd00::101", "fd00::101"),
    ]


def test_a_cidr_of_exactly_the_limit_is_accepted():
    plan = plan_of("""\
        site: {name: a}
        probing: {max_targets: 256}
        targets: [{cidr: "fd00::/120", name_prefix: t, slices: [video]}]
    """)
    assert len(plan.probes) == 256


# -- flow labels -------------------------------------------------------------------------------


def test_flow_labels_are_stable_per_target_and_slice_and_inside_the_range():
    text = """\
        site: {name: a}
        slices:
          - {name: video, dscp: 34, flow_label_range: [0x10000, 0x1ffff]}
          - {name: pinned, dscp: 26, flow_label_range: [0x00042, 0x00042]}
          - {name: best-effort, dscp: 0}
        targets: [{cidr: "fd00::/124", probes: [stamp, icmp]}]
    """
    first, again = plan_of(text), plan_of(text)
    labels = {(p.target.address, p.slice.name, p.kind): p.flow_label for p in first.probes}
    assert labels == {(p.target.address, p.slice.name, p.kind): p.flow_label for p in again.probes}
    for (address, slice_name, _), label in labels.items():
        assert label == labels[(address, slice_name, "stamp")]  # ICMP and STAMP share the path
        if slice_name == "video":
            assert 0x10000 <= label <= 0x1FFFF
        elif slice_name == "pinned":
            assert label == 0x42
        else:
            assert label is None
    assert len({label for (_, s, k), label in labels.items() if s == "video" and k == "stamp"}) > 8


def test_the_flow_label_choice_does_not_change_between_releases():
    # Pinned values: a changed hash would silently move every probe to another ECMP path.
    assert stable_flow_label("fd78:6e6d:5300::1", "video", (0x10000, 0x1FFFF)) == 0x1B945
    assert stable_flow_label("fd78:6e6d:5300::1", "egov", (1, 0xFFFFF)) == stable_flow_label(
        "fd78:6e6d:5300::1", "egov", (1, 0xFFFFF)
    )


# -- errors: exact wording, one line per problem ------------------------------------------------

ERROR_CASES = {
    "unknown slice": (
        "site: {name: a}\ntargets: [{name: x, address: '::1'}, {name: y, address: '::2'}, {name: z, address: '::3'},"
        " {name: w, address: '::4', slices: [vidoe]}]\n",
        [f"agent.yaml: targets[3].slices[0]: unknown slice 'vidoe' {SLICES_ARE}"],
    ),
    "unknown slice among own slices": (
        "site: {name: a}\nslices: [{name: v, dscp: 1}]\ntargets: [{name: x, address: '::1', slices: [v, w]}]\n",
        ["agent.yaml: targets[0].slices[1]: unknown slice 'w' (slices are: v)"],
    ),
    "unknown key with a suggestion": (
        "site: {name: a}\ntargets: [{name: x, adress: '::1'}]\n",
        [
            "agent.yaml: targets[0].adress: unknown key 'adress'; did you mean 'address'?"
            " (keys here are: name, address, file, cidr, name_prefix, count, probes, slices, port, interval_s,"
            " packets_per_interval, timeout_s, size)"
        ],
    ),
    "unknown top-level key": (
        "site: {name: a}\nsinks: {}\n",
        [
            "agent.yaml: sinks: unknown key 'sinks' (keys here are: site, slices, targets, probing, reflector, metrics,"
            " analyzer, bus, on_demand, flows, capture)"
        ],
    ),
    "missing site": ("targets: []\n", ["agent.yaml: site: required key is missing"]),
    "empty file": ("", ["agent.yaml: site: required key is missing"]),
    "not a mapping": (
        "- a\n",
        ["agent.yaml: expected a mapping with site, targets and the other sections, got list"],
    ),
    "not an IP address": (
        "site: {name: a, addresses: [me]}\ntargets: [{name: x, address: core.example}]\n",
        [
            "agent.yaml: site.addresses[0]: 'me' is not an IP address (names are not resolved: give the address)",
            "agent.yaml: targets[0].address: 'core.example' is not an IP address (names are not resolved: give the"
            " address)",
        ],
    ),
    "ranges": (
        "site: {name: a}\nslices: [{name: v, dscp: 64, slice_id: -1, flow_label_range: [0, 5]}, {name: w, dscp: 0,"
        " flow_label_range: [1, 2, 3]}]\nprobing: {interval_s: 0, packets_per_interval: 0}\n",
        [
            "agent.yaml: slices[0].dscp: expected less than or equal to 63, got 64",
            "agent.yaml: slices[0].flow_label_range: expected [low, high] with 1 <= low <= high <= 0xFFFFF,"
            " got [0x0, 0x5]",
            "agent.yaml: slices[0].slice_id: expected greater than or equal to 0, got -1",
            "agent.yaml: slices[1].flow_label_range: expected at most 2 items, got 3",
            "agent.yaml: probing.interval_s: expected greater than 0, got 0",
            "agent.yaml: probing.packets_per_interval: expected greater than or equal to 1, got 0",
        ],
    ),
    "flow label range above 20 bits": (
        "site: {name: a}\nslices: [{name: v, dscp: 0, flow_label_range: [1, 0x100000]}]\n",
        [
            "agent.yaml: slices[0].flow_label_range: expected [low, high] with 1 <= low <= high <= 0xFFFFF,"
            " got [0x1, 0x100000]"
        ],
    ),
    "types": (
        "site: {name: a}\nprobing: {window_s: abc, timeout_s: true}\nreflector: {port: '862', enabled: maybe}\n"
        "targets: {name: x}\n",
        [
            "agent.yaml: targets: expected a list, got a mapping",
            "agent.yaml: probing.window_s: expected a valid number, got 'abc'",
            "agent.yaml: probing.timeout_s: expected a valid number, got True",
            "agent.yaml: reflector.enabled: expected a valid boolean, got 'maybe'",
            "agent.yaml: reflector.port: expected a valid integer, got '862'",
        ],
    ),
    "duplicate slices": (
        "site: {name: a}\nslices: [{name: v, dscp: 1}, {name: v, dscp: 2}]\n",
        ["agent.yaml: slices: name 'v' of slices[1] is already used by slices[0]"],
    ),
    "no slices": (
        "site: {name: a}\nslices: []\n",
        ["agent.yaml: slices: expected at least one slice (leave slices out for the default catalogue)"],
    ),
    "target forms": (
        "site: {name: a}\ntargets: [{probes: [stamp]}, {name: x, address: '::1', file: f}, {file: f, name_prefix: h},"
        " {name: y, address: '::2', probes: [icmp], port: 9}, {address: '::3'}, {cidr: '::/120', name: z},"
        " {cidr: 'fd00::5/64'}, {cidr: 'fd00::1'}]\n",
        [
            "agent.yaml: targets[0]: expected one of address (with name), file or cidr",
            "agent.yaml: targets[1].file: an entry takes one of address, file or cidr; this one also has address",
            "agent.yaml: targets[2].name_prefix: name_prefix goes with cidr, and this entry has no cidr",
            "agent.yaml: targets[3].port: only STAMP probes use a port, and this entry has probes ['icmp']",
            "agent.yaml: targets[4]: an address entry needs a name",
            "agent.yaml: targets[5]: name goes with address; a file names its targets, a cidr uses name_prefix",
            "agent.yaml: targets[6].cidr: fd00::5/64 has host bits set; the prefix is fd00::/64",
            "agent.yaml: targets[7].cidr: 'fd00::1' is not a CIDR prefix such as fd00::/120",
        ],
    ),
    "probe kinds and slices lists": (
        "site: {name: a}\ntargets: [{name: x, address: '::1', probes: [stamp, stamp], slices: [video, video]},"
        " {name: y, address: '::2', probes: [], slices: []}, {name: z, address: '::3', probes: [tcp]}]\n",
        [
            "agent.yaml: targets[0].probes: 'stamp' appears twice",
            "agent.yaml: targets[0].slices: 'video' appears twice",
            "agent.yaml: targets[1].probes: expected at least 1 item, got 0",
            "agent.yaml: targets[1].slices: expected at least 1 item, got 0",
            "agent.yaml: targets[2].probes[0]: expected 'stamp' or 'icmp', got 'tcp'",
        ],
    ),
    "window shorter than interval": (
        "site: {name: a}\nprobing: {interval_s: 20}\n",
        ["agent.yaml: probing.window_s: expected at least interval_s (20), got 10: windows would hold no probes"],
    ),
    "trace, metrics, analyzer, reflector": (
        "site: {name: a}\nprobing: {trace: {period: 5, proto: sctp}}\nmetrics: {listen: '::1:9862'}\n"
        "analyzer: {url: 'ftp://x', spool_max_windows: 0}\nreflector: {allow: ['10.0.0.0/33'], rate_limit_pps: -1}\n",
        [
            "agent.yaml: probing.trace.proto: expected 'udp', 'icmp' or 'tcp', got 'sctp'",
            "agent.yaml: probing.trace.period: unknown key 'period'; did you mean 'period_s'? (keys here are: enabled,"
            " period_s, proto)",
            "agent.yaml: reflector.allow[0]: '10.0.0.0/33' is not an IP prefix such as fd00::/64",
            "agent.yaml: reflector.rate_limit_pps: expected greater than or equal to 0, got -1",
            'agent.yaml: metrics.listen: expected "[ADDRESS]:PORT" such as "[::1]:9862", got \'::1:9862\'',
            "agent.yaml: analyzer.url: expected an http:// or https:// URL, got 'ftp://x'",
            "agent.yaml: analyzer.spool_max_windows: expected greater than or equal to 1, got 0",
        ],
    ),
    "analyzer without url": ("site: {name: a}\nanalyzer: {}\n", ["agent.yaml: analyzer.url: required key is missing"]),
    "names": (
        "site: {name: 'a b'}\nslices: [{name: Video, dscp: 1}]\n",
        [
            "agent.yaml: site.name: 'a b' is not a name: give 1 to 253 characters without spaces",
            "agent.yaml: slices[0].name: slice name 'Video' must be a lowercase letter then lowercase letters, digits,"
            " hyphens",
        ],
    ),
    "duplicate target names": (
        "site: {name: a}\ntargets: [{name: core, address: '::1'}, {name: edge, address: '::2'},"
        " {name: core, address: '::3'}, {cidr: 'fd00::/127', name_prefix: c}, {cidr: 'fd00::/127', name_prefix: c}]\n",
        [
            "agent.yaml: targets[2].name: duplicate target name 'core' (first at targets[0].name)",
            "agent.yaml: targets[4].cidr: duplicate target name 'c0' (first at targets[3].cidr)",
            "agent.yaml: targets[4].cidr: duplicate target name 'c1' (first at targets[3].cidr)",
        ],
    ),
    "sizes below what a probe kind needs": (
        "site: {name: a}\nprobing: {size: 20}\ntargets: [{name: x, address: '::1', probes: [stamp, icmp]},"
        " {name: y, address: '::2', probes: [icmp], size: 4}, {name: z, address: '::3', size: 68}]\n",
        [
            "agent.yaml: probing.size (used by targets[0]): 20 octets is less than the 68 octets stamp probes need",
            "agent.yaml: targets[1].size: 4 octets is less than the 8 octets icmp probes need",
        ],
    ),
    "cidr over the limit": (
        "site: {name: a}\ntargets: [{cidr: 'fd00::/64'}]\n",
        [
            "agent.yaml: targets[0].cidr: fd00::/64 expands to 18446744073709551616 targets, more than"
            " probing.max_targets (100000) allows; use a longer prefix, a count, or raise probing.max_targets"
        ],
    ),
    "cidr over what the limit leaves": (
        "site: {name: a}\nprobing: {max_targets: 300}\ntargets: [{cidr: 'fd00::/120'}, {cidr: 'fd01::/120'}]\n",
        [
            "agent.yaml: targets[1].cidr: fd01::/120 expands to 256 targets, more than probing.max_targets (300) allows"
            " after the 256 before it; use a longer prefix, a count, or raise probing.max_targets"
        ],
    ),
    "name prefix with a space": (
        "site: {name: a}\ntargets: [{cidr: 'fd00::/126', name_prefix: 'h '}]\n",
        ["agent.yaml: targets[0].name_prefix: 'h ' would make names with spaces; give a prefix without spaces"],
    ),
    "flow exporters that are not prefixes, and bounds of nothing": (
        "site: {name: a}\nflows: {exporters: ['2001:db8::1/48', exporter.example], max_templates: 0}\n",
        [
            "agent.yaml: flows.exporters[0]: 2001:db8::1/48 has host bits set; the prefix is 2001:db8::/48",
            "agent.yaml: flows.exporters[1]: 'exporter.example' is not an IP prefix such as fd00::/64",
            "agent.yaml: flows.max_templates: expected greater than or equal to 1, got 0",
        ],
    ),
    "count beyond the prefix": (
        "site: {name: a}\ntargets: [{cidr: 'fd00::/126', count: 5}]\n",
        ["agent.yaml: targets[0].cidr: count 5 is more than the 4 addresses of fd00::/126"],
    ),
}


@pytest.mark.parametrize("text, expected", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_every_problem_is_one_line_naming_file_key_and_expectation(text, expected):
    assert problems_of(text) == expected


def test_problems_in_target_files_name_the_entry_the_file_and_the_line(tmp_path):
    (tmp_path / "bad.txt").write_text("core fd78:6e6d:5300::1\none two three\nx notanaddr\ncore ::9\n")
    (tmp_path / "bad.yaml").write_text("- {name: a, adress: '::1'}\n- {name: b, address: nope}\n")
    (tmp_path / "broken.yaml").write_text("- {name: a\n")
    (tmp_path / "scalar.yml").write_text("just text\n")
    problems = problems_of(
        """\
        site: {name: a}
        targets:
          - {file: bad.txt}
          - {file: missing.txt}
          - {file: bad.yaml}
          - {file: broken.yaml}
          - {file: scalar.yml}
    """,
        base_dir=tmp_path,
    )
    assert problems == [
        f"agent.yaml: targets[0].file: {tmp_path}/bad.txt:2: expected \"NAME ADDRESS\", got 'one two three'",
        f"agent.yaml: targets[0].file: {tmp_path}/bad.txt:3: 'notanaddr' is not an IP address",
        "agent.yaml: targets[0].file: duplicate target name 'core' (first at targets[0].file)",
        f"agent.yaml: targets[1].file: cannot read {tmp_path}/missing.txt: No such file or directory",
        f"agent.yaml: targets[2].file: {tmp_path}/bad.yaml: [0].address: required key is missing",
        f"agent.yaml: targets[2].file: {tmp_path}/bad.yaml: [0].adress: unknown key 'adress'; did you mean 'address'?"
        " (keys here are: name, address)",
        f"agent.yaml: targets[2].file: {tmp_path}/bad.yaml: [1].address: 'nope' is not an IP address (names are not"
        " resolved: give the address)",
        f"agent.yaml: targets[3].file: {tmp_path}/broken.yaml:2:1: invalid YAML: expected ',' or '}}', but got"
        " '<stream end>'",
        f"agent.yaml: targets[4].file: {tmp_path}/scalar.yml: expected a list of {{name, address}} mappings",
    ]


def test_unreadable_files_are_problems_not_crashes(tmp_path):
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9 ::1\n")
    (tmp_path / "adir").mkdir()
    problems = problems_of("site: {name: a}\ntargets: [{file: latin1.txt}, {file: adir}]\n", base_dir=tmp_path)
    assert problems == [
        f"agent.yaml: targets[0].file: cannot read {tmp_path}/latin1.txt: not UTF-8 text",
        f"agent.yaml: targets[1].file: cannot read {tmp_path}/adir: Is a directory",
    ]


def test_a_wholly_wrong_targets_file_is_cut_short(tmp_path):
    (tmp_path / "garbage.txt").write_text("".join(f"line{i}\n" for i in range(100)))
    problems = problems_of("site: {name: a}\ntargets: [{file: garbage.txt}]\n", base_dir=tmp_path)
    assert len(problems) == 21
    assert problems[-1] == f"agent.yaml: targets[0].file: ... and 80 more problems in {tmp_path}/garbage.txt"


def test_files_count_against_the_target_limit(tmp_path):
    (tmp_path / "many.txt").write_text("".join(f"h{i} fd00::{i:x}\n" for i in range(5)))
    problems = problems_of(
        "site: {name: a}\nprobing: {max_targets: 4}\ntargets: [{file: many.txt}]\n", base_dir=tmp_path
    )
    assert problems == ["agent.yaml: targets: 5 targets in all, more than probing.max_targets (4)"]


def test_many_duplicate_names_are_cut_short():
    problems = problems_of("site: {name: a}\ntargets: [{cidr: 'fd00::/120'}, {cidr: 'fd00::/120'}]\n")
    assert len(problems) == 21
    assert problems[-1] == "agent.yaml: targets: ... and 236 more duplicate target names"


def test_unreadable_and_empty_secret_files_are_named(tmp_path):
    (tmp_path / "empty.key").write_bytes(b"\n")
    problems = problems_of(
        """\
        site: {name: a}
        reflector: {auth_key_file: empty.key}
        analyzer: {url: "http://centre:8080", token_file: /nonexistent/token}
    """,
        base_dir=tmp_path,
    )
    assert problems == [
        f"agent.yaml: reflector.auth_key_file: {tmp_path}/empty.key is empty",
        "agent.yaml: analyzer.token_file: cannot read /nonexistent/token: No such file or directory",
    ]


def test_structure_problems_come_first_and_resolution_waits_for_them(tmp_path):
    # A file whose structure is wrong is not read further: its targets files are not opened.
    problems = problems_of(
        "site: {name: a}\nprobing: {interval_s: -1}\ntargets: [{file: missing.txt}]\n", base_dir=tmp_path
    )
    assert problems == ["agent.yaml: probing.interval_s: expected greater than 0, got -1"]


def test_a_config_built_in_code_is_checked_as_thoroughly():
    # Without the slice names validate_config passes to pydantic, resolution still catches them.
    config = AgentConfig.model_validate(
        {"site": {"name": "a"}, "targets": [{"name": "x", "address": "::1", "slices": ["vidoe"]}]}
    )
    with pytest.raises(ConfigError) as caught:
        resolve_plan(config)
    assert caught.value.problems == (f"<config>: targets[0].slices: unknown slice 'vidoe' {SLICES_ARE}",)
    assert len(resolve_plan(validate_config({"site": {"name": "a"}, "targets": [{"cidr": "::/127"}]})).probes) == 8


# -- the examples ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("agent-*.yaml")), ids=lambda p: p.name)
def test_every_example_is_valid(path):
    assert load_plan(path).site


def test_the_lab_example_probes_every_other_small_site_by_its_loopback():
    from lab import Lab  # the test ties the example to the lab's address plan; collector never imports lab

    lab = Lab.from_name("small")
    plan = load_plan(EXAMPLES / "agent-lab-cnty1a.yaml")
    assert plan.site == "cnty1a" and plan.source_address == lab.address("cnty1a")
    targets = {p.target for p in plan.probes}
    assert {t.name for t in targets} == {s.name for s in lab.topology.sites} - {"cnty1a"}
    assert all(t.address == lab.address(t.name) for t in targets)
    assert [s.name for s in lab.topology.slices] == [s.name for s in DEFAULT_SLICES]
    assert {(p.slice.name, p.slice.dscp) for p in plan.probes} == {(s.name, s.dscp) for s in lab.topology.slices}


def test_a_reflector_key_too_short_to_resist_forgery_is_refused(tmp_path):
    (tmp_path / "reflector.key").write_bytes(b"k\n")
    (tmp_path / "agent.yaml").write_text(
        "site: {name: here}\ntargets: []\nreflector: {enabled: true, auth_key_file: reflector.key}\n"
    )
    with pytest.raises(ConfigError, match=r"reflector\.auth_key_file: a STAMP key needs at least 16 bytes, got 1"):
        load_plan(tmp_path / "agent.yaml")


def test_probes_carry_the_slice_id_option_only_when_probing_asks():
    assert plan_of("site: {name: a}\n").slice_option_type is None
    asked = plan_of("site: {name: a}\nprobing: {slice_id_option: true}\n")
    assert asked.slice_option_type == 0x1E
    other = plan_of("site: {name: a}\nprobing: {slice_id_option: true, slice_option_type: 0x3E}\n")
    assert other.slice_option_type == 0x3E
