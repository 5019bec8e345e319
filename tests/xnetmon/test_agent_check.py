"""`xnetmon agent --config FILE [--check]`, run as a user runs it: the plan report, problems, exit codes."""

from __future__ import annotations

import re
import signal
import sys
import types

import pytest

from collector.agent.plan import AgentPlan
from tests.support import REPO, xnetmon
from xnetmon.cli import main

LAB_EXAMPLE = REPO / "collector" / "examples" / "agent-lab-cnty1a.yaml"


def test_check_prints_the_resolved_plan_and_sends_nothing():
    done = xnetmon("agent", "--config", str(LAB_EXAMPLE), "--check")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == f"{LAB_EXAMPLE}: valid; nothing was sent"
    out = done.stdout
    assert "site       cnty1a (probes from fd78:6e6d:5300::8)" in lines
    assert "slices     video        DSCP 34, slice ID 1, flow labels 0x10000-0x1ffff" in lines
    assert "           best-effort  DSCP 0, slice ID 4, flow labels 0x40000-0x4ffff" in lines
    assert (
        "probing    every 1 s, 1 packet each time, timeout 2 s, size smallest (targets may override); windows of 10 s"
    ) in lines
    assert "trace      Paris trace every 300 s over udp" in lines
    assert (
        "reflector  stateful, unauthenticated, on [::]:862; answers fd78:6e6d:5300::/48; 1000 pps per source"
    ) in lines
    assert "metrics    http://[::1]:9862/metrics" in lines
    assert "analyzer   none (windows stay on this agent)" in lines
    # counts per slice and kind
    assert "80 probe schedules to 10 targets, 80 packets/s in all" in lines
    assert re.search(r"^  slice\s+stamp\s+icmp$", out, re.M)
    for name in ("video", "egov", "data", "best-effort"):
        assert re.search(rf"^  {name}\s+10\s+10$", out, re.M), name
    # the first probes as a table
    table = lines[lines.index("first 20 of 80 probe schedules") + 1 :]
    assert table[0].split() == [
        "target",
        "address",
        "port",
        "slice",
        "kind",
        "flow",
        "label",
        "interval",
        "pkts",
        "timeout",
        "size",
    ]
    assert len(table) == 21
    assert re.match(r"^  core\s+fd78:6e6d:5300::1\s+862\s+video\s+stamp\s+0x1[0-9a-f]{4}\s+1s\s+1\s+2s\s+-$", table[1])
    assert re.match(r"^  core\s+fd78:6e6d:5300::1\s+-\s+video\s+icmp\s+0x1[0-9a-f]{4}\s+1s\s+1\s+2s\s+-$", table[2])


def test_check_lists_a_small_plan_whole(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text(
        "site: {name: a}\ntargets: [{name: self, address: '::1', slices: [egov]}]\n"
        "reflector: {enabled: false}\nanalyzer: {url: 'http://centre:8080/windows'}\n"
    )
    done = xnetmon("agent", "--config", str(config), "--check")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "site       a (source address chosen by the kernel)" in lines
    assert "reflector  off" in lines
    assert (
        "analyzer   http://centre:8080/windows without a token; spool in /var/lib/xnetmon/spool/a,"
        " at most 100000 windows"
    ) in lines
    assert "1 probe schedule to 1 target, 1 packets/s in all" in lines
    assert lines[lines.index("probe schedules") + 2].split() == [
        "self",
        "::1",
        "862",
        "egov",
        "stamp",
        "-",
        "1s",
        "1",
        "2s",
        "-",
    ]


def test_check_shows_the_capture_section(tmp_path):
    (tmp_path / "rules.yaml").write_text("rules: [{slice: video, dscp: 34}]\n")
    config = tmp_path / "agent.yaml"
    config.write_text(
        "site: {name: a}\ncapture:\n  slices: rules.yaml\n  interfaces:\n"
        "    - {interface: eth0, tcp_rtt: true, altmark_point: edge}\n"
        "    - {interface: eth1, sample: 100, idle_timeout_s: 5}\n"
    )
    done = xnetmon("agent", "--config", str(config), "--check")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    start = lines.index(
        "capture    eth0         sampling 1:1, passive TCP RTT, alternate-marking point edge; "
        "records end after 60 s, or 15 s idle"
    )
    assert lines[start + 1] == "           eth1         sampling 1:100; records end after 60 s, or 5 s idle"
    assert lines[start + 2] == f"           packets classified into slices by the rules in {tmp_path / 'rules.yaml'}"
    without = tmp_path / "plain.yaml"
    without.write_text("site: {name: a}\n")
    assert not any(
        line.startswith("capture") for line in xnetmon("agent", "--config", str(without), "--check").stdout.splitlines()
    )


def test_config_problems_are_listed_one_per_line_with_exit_2_and_no_traceback(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text(
        "site: {name: a}\nprobing: {interval_s: 0}\ntargets: [{name: x, address: core.example, slices: [vidoe]}]\n"
    )
    done = xnetmon("agent", "--config", str(config), "--check")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"xnetmon agent: 3 problems in {config}:",
        f"{config}: targets[0].address: 'core.example' is not an IP address (names are not resolved: give the address)",
        f"{config}: targets[0].slices[0]: unknown slice 'vidoe' (slices are: video, egov, data, best-effort)",
        f"{config}: probing.interval_s: expected greater than 0, got 0",
    ]


@pytest.mark.parametrize("check", [True, False], ids=["with --check", "without --check"])
def test_a_single_problem_is_one_line(tmp_path, check):
    missing = tmp_path / "nope.yaml"
    done = xnetmon("agent", "--config", str(missing), *(["--check"] if check else []))
    assert done.returncode == 2
    assert done.stderr == f"xnetmon agent: {missing}: cannot read: No such file or directory\n"


def test_yaml_syntax_errors_name_the_line(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text("site: {name: a}\ntargets:\n  - name: x\n     address: '::1'\n")
    done = xnetmon("agent", "--config", str(config), "--check")
    assert done.returncode == 2
    assert done.stderr == f"xnetmon agent: {config}:4:13: invalid YAML: mapping values are not allowed here\n"


def test_config_is_required_and_the_command_is_listed():
    done = xnetmon("agent", "--check")
    assert done.returncode == 2 and "--config" in done.stderr
    assert "agent" in xnetmon("--help").stdout


# -- without --check: the plan goes to collector.agent.runner.run_agent ---------------------------------


@pytest.fixture
def fake_run_loop(monkeypatch):
    """Stands in for collector.agent.runner (the run loop), recording the plan it was given."""
    received: list[AgentPlan] = []
    module = types.ModuleType("collector.agent.runner")
    module.run_agent = lambda plan: received.append(plan) or 0
    monkeypatch.setitem(sys.modules, "collector.agent.runner", module)
    sigterm = signal.getsignal(signal.SIGTERM)  # main() installs its own handler
    yield module, received
    signal.signal(signal.SIGTERM, sigterm)


def test_without_check_the_resolved_plan_is_handed_to_run_agent(fake_run_loop):
    _module, received = fake_run_loop
    assert main(["agent", "--config", str(LAB_EXAMPLE)]) == 0
    (plan,) = received
    assert plan.site == "cnty1a" and len(plan.probes) == 80
    assert plan.config_path == str(LAB_EXAMPLE)


def test_a_bad_config_never_reaches_run_agent(fake_run_loop, tmp_path, capsys):
    _, received = fake_run_loop
    config = tmp_path / "agent.yaml"
    config.write_text("site: {name: a}\nmetrics: {listen: 'localhost:9862'}\n")
    assert main(["agent", "--config", str(config)]) == 2
    assert received == []
    assert capsys.readouterr().err == (
        f'xnetmon agent: {config}: metrics.listen: expected "[ADDRESS]:PORT" such as "[::1]:9862",'
        " got 'localhost:9862'\n"
    )


def test_check_of_yaml_thousands_deep_is_one_clear_line_naming_the_file(tmp_path):
    deep = tmp_path / "agent.yaml"
    deep.write_text("site:\n  name: " + "[" * 5000 + "]" * 5000 + "\n")
    done = xnetmon("agent", "--config", str(deep), "--check")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"{deep}:2:" in done.stderr and "invalid YAML: nested too deeply" in done.stderr, done.stderr
