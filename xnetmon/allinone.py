"""The all-in-one monitor: agents, the analyzer, its API and /metrics, brought up together.

Two shapes. On the lab (root, and the `small` topology can be built or is already up): one
agent per chosen site, each a process inside its site's namespace (`ip netns exec`) probing
the other sites in every slice and shipping to the analyzer; the analyzer runs here and
listens both on the host's loopback (for the operator) and inside the core site (for the
agents). On loopback (no root, or no lab): one agent in this process probing its own
reflector, feeding the analyzer directly. Either way the operator reads the same API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from analyzer.api import create_app
from analyzer.policies import LAB_POLICY_FILE
from analyzer.service import ApiServer, SnapshotKeeper, StoreFeeder, open_store
from analyzer.sla import default_policies, load_policies
from xnetmon.nsocket import listening_socket_in

API_PORT = 9863
AGENT_METRICS_PORT = 9862
LAB_STAMP_PORT = 8620
LAB_SITES = ("core", "cnty1a", "cnty1b", "cnty2a", "cnty2b")  # every county pair crosses the core
LAB_INTERVAL_S = 1.0  # the lab policies judge seconds-long lookbacks
AGENT_START_DELAY_S = 4.0  # every site's reflector is up before any site probes
# A fresh analyzer has no spools to wait for: close intervals by time after two of them.
FRESH_CATCH_UP_INTERVALS = 2


@dataclass(frozen=True)
class Deployment:
    """What is running, for the operator: where to look."""

    shape: str  # "lab small" | "loopback"
    sites: tuple[str, ...]
    api_url: str
    interval_s: float
    token_file: Path  # writes (POST /probe) need this bearer token

    @property
    def metrics_url(self) -> str:
        return f"{self.api_url}/metrics"


def agent_config(lab, site: str, sites: Sequence[str], analyzer_url: str, token_file: Path) -> str:
    """An agent on `site` that probes every other site's loopback in every slice."""
    targets = "\n".join(
        f"  - {{name: {other}, address: '{lab.address(other)}', port: {LAB_STAMP_PORT}}}"
        for other in sites if other != site
    )
    return f"""# written by xnetmon run for the lab site {site}
site: {{name: {site}, addresses: ['{lab.address(site)}']}}
targets:
{targets}
probing: {{interval_s: 0.1, window_s: {LAB_INTERVAL_S}, timeout_s: 0.3, start_delay_s: {AGENT_START_DELAY_S},
          trace: {{enabled: true, period_s: 120}}}}
reflector: {{enabled: true, bind: ['{lab.address(site)}'], port: {LAB_STAMP_PORT}, rate_limit_pps: 0}}
metrics: {{listen: '[{lab.address(site)}]:{AGENT_METRICS_PORT}'}}
analyzer: {{url: '{analyzer_url}', token_file: '{token_file}', spool_dir: '{token_file.parent / ("spool-" + site)}'}}
"""


class CommandProber:
    """`POST /probe` for the all-in-one: runs `xnetmon probe stamp|ping --json` from the named
    agent's site (inside its namespace on the lab) and returns the probe's summary."""

    def __init__(self, sites: Sequence[str], argv_in_site, stamp_port: int) -> None:
        self.sites = tuple(sites)
        self.argv_in_site = argv_in_site  # (site, argv) -> argv run there
        self.stamp_port = stamp_port

    def __call__(self, request) -> dict:
        if request.agent not in self.sites:
            raise ValueError(f"no agent on {request.agent!r} here (agents: {', '.join(self.sites)})")
        kind_args = ["stamp", "-p", str(self.stamp_port)] if request.kind == "stamp" else ["ping"]
        argv = [sys.executable, "-m", "xnetmon", "probe", *kind_args, request.target, "--slice", request.slice,
                "-c", str(request.count), "-i", "0.1", "--json"]
        done = subprocess.run(self.argv_in_site(request.agent, argv), capture_output=True, text=True,
                              timeout=60 + request.count)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if not lines or '"summary"' not in lines[-1]:
            raise ValueError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "the probe printed nothing")
        return json.loads(lines[-1])  # {"summary": {...}}; the API echoes the request beside it


@contextlib.contextmanager
def lab_deployment(lab, workdir: Path, sites: Sequence[str] = LAB_SITES) -> Iterator[Deployment]:
    """Agents on `sites` of an up lab and the analyzer, until the block ends."""
    token_file = workdir / "token"
    token_file.write_text(secrets.token_urlsafe(24))
    store = open_store(None, load_policies(LAB_POLICY_FILE), interval_s=LAB_INTERVAL_S,
                       catch_up_s=FRESH_CATCH_UP_INTERVALS * LAB_INTERVAL_S)
    keeper = SnapshotKeeper(store, workdir)
    in_lab = listening_socket_in(lab.namespace("core"), lab.address("core"), API_PORT)
    prober = CommandProber(sites, lab.exec_argv, LAB_STAMP_PORT)
    app = create_app(store, token=token_file.read_text(), prober=prober)
    server = ApiServer(app, ("::1", API_PORT), extra_sockets=[in_lab])
    analyzer_in_lab = f"http://[{lab.address('core')}]:{API_PORT}"
    agents: list[subprocess.Popen] = []
    try:
        for site in sites:
            config = workdir / f"agent-{site}.yaml"
            config.write_text(agent_config(lab, site, sites, analyzer_in_lab, token_file))
            log = (workdir / f"agent-{site}.log").open("w")
            argv = lab.exec_argv(site, [sys.executable, "-m", "xnetmon", "agent", "--config", str(config)])
            agents.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
            log.close()
        yield Deployment("lab small", tuple(sites), server.url, LAB_INTERVAL_S, token_file)
    finally:
        for proc in agents:
            proc.terminate()
        for proc in agents:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        server.stop()
        keeper.stop()


@contextlib.contextmanager
def loopback_deployment(config: Path, workdir: Path, *, clock=None) -> Iterator[Deployment]:
    """One agent in this process on `config` (loopback), feeding the analyzer directly."""
    from collector.agent import Agent
    from collector.plan import load_plan
    from collector.sinks import InProcessSink

    plan = load_plan(config)
    token_file = workdir / "token"
    token_file.write_text(secrets.token_urlsafe(24))
    store = open_store(None, default_policies(), interval_s=plan.window_s,
                       catch_up_s=FRESH_CATCH_UP_INTERVALS * plan.window_s)
    keeper = SnapshotKeeper(store, workdir)
    feeder = StoreFeeder(store)
    stamp_port = plan.reflector.port if plan.reflector is not None else 862
    prober = CommandProber((plan.site,), lambda _site, argv: argv, stamp_port)
    server = ApiServer(create_app(store, token=token_file.read_text(), prober=prober), ("::1", API_PORT))
    agent = Agent(plan, sink=InProcessSink(feeder.queue), clock=clock)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(agent.run(),), name="xnetmon-agent", daemon=True)
    thread.start()
    try:
        yield Deployment("loopback", (plan.site,), server.url, plan.window_s, token_file)
    finally:
        loop.call_soon_threadsafe(agent.stop)
        thread.join(timeout=15)
        loop.close()
        server.stop()
        feeder.stop()
        keeper.stop()
