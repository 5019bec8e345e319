"""`xnetmon agent`: the --check report's lines for an authenticated reflector and a token, a
list of problems, and an agent run from its file on loopback until SIGTERM.
(tests/xnetmon/test_agent_check.py checks the report of the lab example line by line.)"""

from __future__ import annotations

import subprocess
import textwrap
import time
import urllib.request

import pytest

from collector.agent.config import ConfigError, parse_config
from collector.agent.plan import resolve_plan
from tests.prometheus_support import free_tcp_port
from tests.support import REPO, XNETMON, free_udp_port, stop_process, wait_until, xnetmon
from xnetmon.commands.agent import _problem_list, describe_plan


def report(text: str, tmp_path) -> list[str]:
    config = parse_config(textwrap.dedent(text), source="agent.yaml", base_dir=tmp_path)
    return describe_plan(config, resolve_plan(config)).splitlines()


def test_an_authenticated_open_reflector_and_a_token_read_as_such(tmp_path):
    (tmp_path / "key").write_text("agent-reflector-key-0123\n")
    (tmp_path / "token").write_text("t0ken\n")
    lines = report(
        """\
        site: {name: a, addresses: ["2001:db8::a"]}
        reflector: {bind: ["2001:db8::a", "192.0.2.1"], port: 8620, stateful: false, rate_limit_pps: 0,
                    auth_key_file: key}
        analyzer: {url: "https://centre.example/v1", token_file: token, spool_dir: spool, spool_max_windows: 50}
        probing: {trace: {enabled: false}}
    """,
        tmp_path,
    )
    assert (
        "reflector  stateless, authenticated, on [2001:db8::a]:8620, 192.0.2.1:8620; answers any source; "
        "no rate limit" in lines
    )
    assert (
        f"analyzer   https://centre.example/v1 with a token; spool in {tmp_path / 'spool'}, at most 50 windows" in lines
    )
    assert "trace      off" in lines
    assert "0 probe schedules to 0 targets, 0 packets/s in all" in lines


def test_many_problems_are_counted_and_listed_one_per_line():
    assert _problem_list("a.yaml", ("a.yaml: one",)) == "a.yaml: one"
    assert _problem_list("a.yaml", ("x", "y")) == "2 problems in a.yaml:\nx\ny"
    with pytest.raises(ConfigError) as caught:
        parse_config("site: {}\nprobing: {interval_s: 0}\n", source="a.yaml")
    assert _problem_list("a.yaml", caught.value.problems).startswith("2 problems in a.yaml:\n")


def test_an_agent_runs_from_its_file_and_shows_its_probes_on_metrics(tmp_path):
    reflector_port, metrics_port = free_udp_port(), free_tcp_port("::1")
    config = tmp_path / "agent.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        site: {{name: here}}
        reflector: {{bind: ["::1"], port: {reflector_port}}}
        metrics: {{listen: "[::1]:{metrics_port}"}}
        probing: {{interval_s: 0.2, window_s: 1, timeout_s: 0.5, trace: {{enabled: false}}}}
        targets: [{{name: self, address: "::1", port: {reflector_port}, slices: [video]}}]
    """)
    )
    proc = subprocess.Popen(
        [*XNETMON, "agent", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    sent = 'xnet_probe_sent_total{dst="self",probe="stamp",slice="video",src="here"}'
    try:
        deadline = time.monotonic() + 60
        body = ""
        while sent not in body and time.monotonic() < deadline and proc.poll() is None:
            try:
                body = urllib.request.urlopen(f"http://[::1]:{metrics_port}/metrics", timeout=5).read().decode()
            except OSError:
                time.sleep(0.1)  # not listening yet
                continue
            if sent not in body:
                time.sleep(0.1)  # the first window has not closed yet
    finally:
        stop_process(proc, timeout=15)
    assert sent in body, proc.stderr.read()[-2000:]
    assert 'xnet_probe_lost_total{direction="forward",dst="self",probe="stamp",slice="video",src="here"} 0.0' in body
    assert proc.returncode == 0


def test_a_second_agent_on_the_same_spool_is_refused_naming_the_holder(tmp_path):
    def agent_file(name: str) -> str:
        config = tmp_path / f"{name}.yaml"
        config.write_text(
            textwrap.dedent(f"""\
            site: {{name: here}}
            metrics: {{listen: "[::1]:{free_tcp_port("::1")}"}}
            probing: {{trace: {{enabled: false}}}}
            analyzer: {{url: "http://[::1]:{free_tcp_port("::1")}/v1", spool_dir: spool}}
        """)
        )
        return str(config)

    first_file = agent_file("first")
    first = subprocess.Popen(
        [*XNETMON, "agent", "--config", first_file], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        wait_until(lambda: (tmp_path / "spool" / "lock").exists() or first.poll() is not None, what="the first agent")
        wait_until(lambda: (tmp_path / "spool" / "lock").read_text().strip(), what="the first agent's pid in the lock")
        second = xnetmon("agent", "--config", agent_file("second"), timeout=60)
        assert first.poll() is None
    finally:
        stop_process(first, timeout=15)
    assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
    assert f"spool directory {tmp_path / 'spool'} is in use by another sink, pid {first.pid}" in second.stderr
