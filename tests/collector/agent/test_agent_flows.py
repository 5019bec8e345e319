"""The agent with a `flows:` section: the receiver runs inside `xnetmon agent`, its metrics
join the agent's /metrics (one malformed-packets family with STAMP's), /flows/top answers;
configuration mistakes name the file and the key."""

from __future__ import annotations

import asyncio
import json
import queue
import socket
import urllib.request

import pytest

from collector.agent.config import ConfigError
from collector.agent.plan import load_plan
from collector.agent.runner import Agent
from collector.outputs.sinks import InProcessSink
from collector.system.clock import shared_host_clock
from tests.flow_export_support import V6_FIELDS, data_set, ipfix_message, ipfix_template_set, record, v6_values
from tests.support import DEADLINE_S, free_udp_port, wait_until, wait_until_async

CONFIG = """
site: {{name: here}}
reflector: {{enabled: true, bind: ["::1"], port: {stamp}, rate_limit_pps: 0}}
metrics: {{listen: "[::1]:{metrics}"}}
flows:
  listen: ["[::1]:{flows}"]
  state_dir: state
  default_sampling: {{"::1": 10}}
"""


def test_agent_runs_the_receiver_and_exports_its_metrics(tmp_path):
    stamp, metrics, flows = free_udp_port(), free_udp_port(), free_udp_port()
    config = tmp_path / "agent.yaml"
    config.write_text(CONFIG.format(stamp=stamp, metrics=metrics, flows=flows))
    plan = load_plan(config)
    assert plan.flows is not None and plan.flows.state_dir == tmp_path / "state"
    agent = Agent(plan, sink=InProcessSink(queue.Queue()), clock=shared_host_clock())
    scraped: list[str] = []

    def handled() -> int:
        with agent.flows.reading():  # held while a datagram is decoded and counted
            return sum(agent.flows.datagrams.values())

    def send_and_scrape() -> None:
        rows = [record(V6_FIELDS, v6_values("2001:db8::1", "2001:db8::2", dscp=26, octets=100, packets=1))]
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.sendto(ipfix_message([ipfix_template_set(256, V6_FIELDS), data_set(256, rows)]), ("::1", flows))
            sock.sendto(b"\x00\x09\x00", ("::1", flows))
        wait_until(lambda: handled() == 2, what="both datagrams handled by the agent's receiver")
        with urllib.request.urlopen(f"http://[::1]:{metrics}/metrics", timeout=DEADLINE_S) as answer:
            scraped.append(answer.read().decode())
        with urllib.request.urlopen(f"http://[::1]:{metrics}/flows/top?slice=egov", timeout=DEADLINE_S) as answer:
            scraped.append(answer.read().decode())

    async def main() -> None:
        task = asyncio.create_task(agent.run())
        await wait_until_async(lambda: agent.server is not None, what="the agent's receiver and /metrics up")
        await asyncio.get_running_loop().run_in_executor(None, send_and_scrape)
        agent.stop()
        await task

    asyncio.run(main())
    text, top = scraped
    assert 'xnet_flow_bytes_total{direction="in",exporter="::1",slice="egov"} 1000.0' in text
    assert 'xnet_malformed_packets_total{kind="truncated",protocol="netflow9"} 1.0' in text
    assert text.count("# TYPE xnet_malformed_packets_total counter") == 1
    assert json.loads(top)["talkers"][0] == {"address": "2001:db8::1", "bytes": 1000, "error": 0}
    assert (tmp_path / "state" / "templates.json").exists()  # saved when the agent stopped


def test_flows_section_errors_name_file_and_key(tmp_path):
    config = tmp_path / "agent.yaml"
    config.write_text('site: {name: here}\nflows:\n  listen: ["nowhere"]\n  default_sampling: {"::1": 0}\n')
    with pytest.raises(ConfigError) as error:
        load_plan(config)
    text = str(error.value)
    assert f"{config}: flows.listen" in text and "[ADDRESS]:PORT" in text
    assert "flows.default_sampling" in text
