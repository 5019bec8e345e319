"""The all-in-one monitor: agents, the analyzer, its API and /metrics, brought up together.

Two shapes. On the lab (root, and the `small` topology can be built or is already up): one
agent per chosen site, each a process inside its site's namespace (`ip netns exec`) probing
the other sites in every slice and shipping to the analyzer; beside it the site's STAMP
reflector runs as a process of its own (`xnetmon reflect`), so that a dead reflector and a
dead agent are two different faults, as on real sites (a dead reflector: STAMP towards its
site fails while the site's own agent still probes out and back through the same links).
The agents publish their windows to the bus, nats-server with JetStream inside the core
site, each with its own certificate (a throwaway CA made for the run). The analyzer runs
here, consumes the bus from a thread that joined the core site's namespace, names traced
hops after the lab's sites (its topology file) for root-cause hints, and listens both on
the host's loopback (for the operator) and inside the core site. On loopback (no root, or
no lab): one agent in this process probing its own reflector, feeding the analyzer
directly. Either way the operator reads the same API, root-cause hints included.

Flows: where softflowd is installed, each lab site runs one per link of the site, exporting
IPFIX to the site's agent (its flow receiver on the site's address, FLOW_PORT), and on
loopback as root one captures `lo` for the in-process agent (xnetmon/softflowd.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from analyzer.api.probe_exchange import probe_answer, probe_start
from analyzer.bus_intake import BusIntake
from analyzer.bus_probes import BusProber
from analyzer.service import AnalyzerService, RootCauseRunner
from analyzer.sla.policies import LAB_POLICY_FILE
from analyzer.sla.verdicts import default_policies, load_policies
from analyzer.store.memory import PATH_WARM_UP_WINDOWS, SHARED_STALL_INTERVALS
from collector.bus.probe_client import new_request_id
from collector.bus.probe_requests import command_args
from xnetmon import bus_setup
from xnetmon.lab_business import running_business
from xnetmon.lab_sites import declared_topology, sites_by_address
from xnetmon.nats_server import NatsServer
from xnetmon.netns_sockets import enter_namespace, listening_socket_in
from xnetmon.softflowd import FLOW_PORT, SoftflowdFleet, softflowd_available, wait_until_bound

API_PORT = 9863
AGENT_METRICS_PORT = 9862
LAB_STAMP_PORT = 8620
BUS_PORT = 4222  # nats-server inside the lab's core site
LAB_OPERATOR = "lab"  # the bus identity the host side asks agents to probe with
BUS_MONITOR_PORT = 8222
LAB_SITES = ("core", "cnty1a", "cnty1b", "cnty2a", "cnty2b")  # every county pair crosses the core
LAB_INTERVAL_S = 1.0  # the lab policies judge seconds-long lookbacks
# Agents trace again at once when hop limits change; a reroute over as many hops shows only
# in a trace, and root-cause hints should name it within a few intervals.
LAB_TRACE_PERIOD_S = 2.0
AGENT_START_DELAY_S = 4.0  # every site's reflector is up before any site probes
# A fresh analyzer has no spools to wait for: close intervals by time after two of them.
FRESH_CATCH_UP_INTERVALS = 2
AGENTS_UP_S = 60.0  # agents start in their namespaces; on a loaded machine that takes a while


@dataclass(frozen=True)
class Deployment:
    """What is running, for the operator: where to look."""

    shape: str  # "lab small" | "loopback"
    sites: tuple[str, ...]
    api_url: str
    interval_s: float
    token_file: Path  # writes (POST /probe) need this bearer token
    # The running analyzer's root-cause runner (hints, times per interval, for tests and
    # benchmarks): asked each time, so that after a restart it is the new analyzer's.
    current_inference: Callable[[], RootCauseRunner | None] = lambda: None
    flows: str = "no flow exports"  # where flow exports go, or why there are none, for the operator
    exporters: SoftflowdFleet | None = None  # the softflowd processes (CPU per site, for tests)
    bus: str = "none: windows go to the analyzer in this process"  # where the bus is, for the operator
    replica_urls: tuple[str, ...] = ()  # the APIs of further analyzer replicas (`xnetmon run --replicas`)
    restarts: Restarts | None = None  # lab shape: stop and start an agent or the analyzer (soak tests)
    bus_server: NatsServer | None = None  # lab shape: the bus, to stop and start (outage tests)

    @property
    def metrics_url(self) -> str:
        return f"{self.api_url}/metrics"

    @property
    def inference(self) -> RootCauseRunner | None:
        return self.current_inference()


class Restarts:
    """The lab deployment's agents and analyzer, each of which can be stopped and started
    again alone, as an operator or a crash would (the soak, bench/soak, restarts them at
    random). Agents are processes: a signal, then the same command again. The analyzer runs
    in this process: "SIGTERM" is its orderly stop (its intake saves a last checkpoint),
    "SIGKILL" leaves its state as a crash would (the last periodic checkpoint); either way
    its bus intake stops first and a new analyzer starts empty on the same sockets, and its
    new intake restores the checkpoint from the bus and replays the stream after it."""

    def __init__(self, workdir: Path, processes: list[subprocess.Popen], first_agent: int, sites, analyzer, start):
        self._workdir = workdir
        self._processes = processes  # shared with lab_deployment, which stops whatever is in it
        self._index = {site: first_agent + i for i, site in enumerate(sites)}
        self._argv = {site: [str(arg) for arg in processes[i].args] for site, i in self._index.items()}  # type: ignore[union-attr]
        self.analyzer, self.intake = analyzer  # the AnalyzerService and its BusIntake running now
        self._start_analyzer = start  # port -> a new (AnalyzerService, BusIntake), serving
        self._port = self.analyzer.socket.getsockname()[1]

    def agent_pid(self, site: str) -> int:
        return self._processes[self._index[site]].pid

    def restart_agent(self, site: str, signum: int, timeout: float = 15.0) -> int | None:
        """Signal the site's agent, wait for it to end (SIGKILL after `timeout`), start it
        again; returns the old process's exit status."""
        proc = self._processes[self._index[site]]
        _resume(proc)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            status = proc.wait()
        with (self._workdir / f"agent-{site}.log").open("a") as log:
            self._processes[self._index[site]] = subprocess.Popen(
                self._argv[site], stdout=log, stderr=subprocess.STDOUT
            )
        return status

    def restart_analyzer(self, signum: int) -> dict[str, int]:
        """Stop the analyzer and start a new one; the replaced store's final `stats()`."""
        self.intake.stop(final_checkpoint=signum != signal.SIGKILL)
        self.analyzer.stop()
        stats = self.analyzer.store.stats()
        self.analyzer, self.intake = self._start_analyzer(self._port)
        # The replaced analyzer lies in reference cycles (its bus client's callbacks, the
        # tracebacks of its last waits), which a process's end would simply drop; the
        # analyzer's garbage-collector thresholds (analyzer/gc_tuning.py) put the full
        # collection that frees them hours away, so one store per restart stayed in memory.
        gc.collect()
        return stats


def agent_config(
    lab,
    site: str,
    sites: Sequence[str],
    bus_url: str,
    pki: Path,
    workdir: Path,
    spools: Path | None = None,
    counting: bool = False,
) -> str:
    """An agent on `site` that probes every other site's loopback in every slice; the site's
    reflector is a process of its own (`reflector_argv`). Its spool lies in `spools` (default:
    `workdir`). Its flow receiver keeps softflowd's templates on disk, so an agent a fault
    restarts decodes the next export at once, and it samples its own links' packets too
    (exporter "capture:IFACE"). It publishes to the bus at `bus_url` with the site's own
    certificate from `pki`. With `counting`, each capture is also the link's in-situ counting point."""
    # Every packet of the site's links, classified by its DSCP (softflowd's IPFIX carries no
    # traffic class, so its records all land in best-effort), with passive TCP RTT on.
    captures = ", ".join(
        f"{{interface: {link.interface(site)}, sample: 1, tcp_rtt: true, idle_timeout_s: 5, active_timeout_s: 10"
        + (f", altmark_point: {link.name}}}" if counting else "}")
        for link in lab.topology.links_of(site)
    )
    spool_dir = (spools or workdir) / f"spool-{site}"
    targets = "\n".join(
        f"  - {{name: {other}, address: '{lab.address(other)}', port: {LAB_STAMP_PORT}}}"
        for other in sites
        if other != site
    )
    return f"""# written by xnetmon run for the lab site {site}
site: {{name: {site}, addresses: ['{lab.address(site)}']}}
targets:
{targets}
probing: {{interval_s: 0.1, window_s: {LAB_INTERVAL_S}, timeout_s: 0.3, start_delay_s: {AGENT_START_DELAY_S},
          trace: {{enabled: true, period_s: {LAB_TRACE_PERIOD_S}}}}}
reflector: {{enabled: false}}
metrics: {{listen: '[{lab.address(site)}]:{AGENT_METRICS_PORT}'}}
flows: {{listen: ['[{lab.address(site)}]:{FLOW_PORT}'], state_dir: '{workdir / ("flows-" + site)}'}}
capture: {{interfaces: [{captures}]}}
bus: {{servers: ['{bus_url}'], ca_file: '{pki / "ca.pem"}', cert_file: '{pki / "sites" / (site + ".pem")}',
      key_file: '{pki / "sites" / (site + "-key.pem")}', spool_dir: '{spool_dir}'}}
on_demand: {{allowed_prefixes: ['{lab.topology.plan.prefix}']}}
"""


def reflector_argv(lab, site: str) -> list[str]:
    """The site's STAMP reflector (stateful: senders tell forward from reverse loss)."""
    return [
        sys.executable,
        "-m",
        "xnetmon",
        "reflect",
        "--stateful",
        "--bind",
        lab.address(site),
        "-p",
        str(LAB_STAMP_PORT),
        "--rate-limit",
        "0",
    ]


class CommandProber:
    """`POST /probe` for the all-in-one: runs `xnetmon probe stamp|icmp|trace --json` from the
    named agent's site (inside its namespace on the lab) and returns the probe's result
    (analyzer.api.probe_exchange: the same options and answer as over the bus)."""

    def __init__(self, sites: Sequence[str], argv_in_site, stamp_port: int) -> None:
        self.sites = tuple(sites)
        self.argv_in_site = argv_in_site  # (site, argv) -> argv run there
        self.stamp_port = stamp_port

    def __call__(self, request) -> dict:
        if request.agent not in self.sites:
            raise ValueError(f"no agent on {request.agent!r} here (agents: {', '.join(self.sites)})")
        start = probe_start(request, new_request_id(), self.stamp_port)
        argv = [sys.executable, "-m", "xnetmon", "probe", *command_args(start)]
        done = subprocess.run(
            self.argv_in_site(request.agent, argv), capture_output=True, text=True, timeout=60 + request.count
        )
        answer = probe_answer(request.kind, done.stdout.splitlines())
        if answer is None:
            raise ValueError(
                done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "the probe printed nothing"
            )
        return answer  # the API echoes the request beside it


@contextlib.contextmanager
def lab_deployment(
    lab,
    workdir: Path,
    sites: Sequence[str] = LAB_SITES,
    api_port: int = API_PORT,
    replicas: int = 1,
    business_traffic: bool = False,
) -> Iterator[Deployment]:
    """Reflectors and agents on `sites` of an up lab, the bus and the analyzer, until the block
    ends. The operator's API listens on [::1]:`api_port` (0: any free port, for tests running
    side by side); the API also on the core site's address, port API_PORT, inside the lab.
    The bus is nats-server with JetStream inside the core site (BUS_PORT, monitoring on
    BUS_MONITOR_PORT), with a throwaway CA and one certificate per site in `workdir`/bus:
    each agent publishes with its own identity, the analyzer consumes from a thread inside
    the core namespace. The bus's store goes to `workdir` (a new directory: the analyzer
    starts empty); the analyzer's state is checkpointed on the bus, as `analyzer --bus`
    does. `replicas` > 1 runs further analyzers judging the same windows, each its own
    durable consumer (`replica_name`) and its API on the next port (any free one when
    `api_port` is 0). `business_traffic` (what `xnetmon run` does) runs
    marked business flows between county sites across the core (`xnetmon.lab_business`) and
    makes every agent's captures counting points, so /segments has segments from the start."""
    token_file = workdir / "token"
    token_file.write_text(secrets.token_urlsafe(24))

    def start_analyzer(port: int, first: bool = True) -> AnalyzerService:
        """The first analyzer serves its /docs and answers inside the lab too; its replicas
        only judge and answer on [::1]."""
        started = AnalyzerService(
            load_policies(LAB_POLICY_FILE),
            ("::1", port),
            state_dir=None,  # its state is the bus intake's checkpoint, as with `analyzer --bus`
            declared_names=sites_by_address(lab.topology),
            token=token_file.read_text(),
            prober=BusProber(  # asks the agents over the bus as the lab's operator
                bus_setup.operator_endpoint(workdir / "bus", LAB_OPERATOR, (lab_bus_url(lab),)),
                stamp_port=LAB_STAMP_PORT,
                in_thread=lambda: enter_namespace(lab.namespace("core")),
            ),
            # the operator's API on [::1]: run prints its /docs and the console's /ui/
            api_options={"openapi": True, "declared_topology": declared_topology(lab.topology)} if first else None,
            interval_s=LAB_INTERVAL_S,
            catch_up_s=FRESH_CATCH_UP_INTERVALS * LAB_INTERVAL_S,
            warm_up_windows=PATH_WARM_UP_WINDOWS,
            stall_intervals=SHARED_STALL_INTERVALS,
        )
        in_lab = [listening_socket_in(lab.namespace("core"), lab.address("core"), API_PORT)] if first else []
        started.serve_in_thread(extra_sockets=in_lab)
        return started

    service = start_analyzer(api_port)
    url = f"http://[::1]:{service.socket.getsockname()[1]}"
    peers = [start_analyzer(api_port + i if api_port else 0, first=False) for i in range(1, replicas)]
    peer_urls = tuple(f"http://[::1]:{peer.socket.getsockname()[1]}" for peer in peers)
    processes: list[subprocess.Popen] = []  # reflectors first: they answer before any agent probes
    exporters = SoftflowdFleet(workdir)
    bus_server: NatsServer | None = None
    intake: BusIntake | None = None
    peer_intakes: list[BusIntake] = []
    spools = _spool_root()
    control: Restarts | None = None
    business = contextlib.ExitStack()
    try:
        bus_server, pki = _start_lab_bus(lab, sites, workdir)
        endpoint = bus_setup.analyzer_endpoint(pki, (bus_server.url,))

        def start_intake(analyzer: AnalyzerService, index: int = 0) -> BusIntake:
            started = BusIntake(
                analyzer.store, endpoint, replica_name(index), in_thread=lambda: enter_namespace(lab.namespace("core"))
            )
            analyzer.bus_link = started.link  # its connection on the analyzer's /metrics
            return started

        intake = start_intake(service)
        peer_intakes = [start_intake(peer, i) for i, peer in enumerate(peers, start=1)]
        for site in sites:
            with (workdir / f"reflector-{site}.log").open("w") as log:
                processes.append(
                    subprocess.Popen(
                        lab.exec_argv(site, reflector_argv(lab, site)), stdout=log, stderr=subprocess.STDOUT
                    )
                )
        for site in sites:
            config = workdir / f"agent-{site}.yaml"
            config.write_text(agent_config(lab, site, sites, bus_server.url, pki, workdir, spools, business_traffic))
            log = (workdir / f"agent-{site}.log").open("w")
            argv = lab.exec_argv(site, [sys.executable, "-m", "xnetmon", "agent", "--config", str(config)])
            processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
            log.close()
        agents = dict(zip(sites, processes[len(sites) :]))
        flows = _start_site_exporters(lab, agents, exporters)
        if business_traffic:
            business.enter_context(running_business(lab, workdir, lambda: _agents_serving(lab, sites)))

        def restart_analyzer(port: int) -> tuple[AnalyzerService, BusIntake]:
            started = start_analyzer(port)
            return started, start_intake(started)

        control = restarts = Restarts(workdir, processes, len(sites), sites, (service, intake), restart_analyzer)
        del service, intake  # `restarts` holds the running analyzer now: a restart must free the first
        bus_note = (
            f"{bus_server.url} in namespace {lab.namespace('core')}, monitoring {bus_server.monitor_url}/jsz "
            f"(ip netns exec {lab.namespace('core')} curl ...); certificates in {pki}; probes from a site: "
            f"ip netns exec {lab.namespace('core')} xnetmon probe ping TARGET --from SITE --bus {bus_server.url} "
            f"--bus-dir {pki}"
        )
        yield Deployment(
            "lab small",
            tuple(sites),
            url,
            LAB_INTERVAL_S,
            token_file,
            lambda: restarts.analyzer.inference,  # the analyzer a restart started, not the first
            flows,
            exporters,
            bus_note,
            peer_urls,
            control,
            bus_server,
        )
    finally:
        business.close()  # its markers remove their ip6tables rules
        exporters.stop()  # first: it exports what it holds while the agents still listen
        for proc in processes:
            _resume(proc)  # a fault may have stopped it (SIGSTOP): it must see the SIGTERM
            proc.terminate()
        for proc in processes:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if control is not None:  # the analyzer running now, which a restart may have replaced
            service, intake = control.analyzer, control.intake
        for running in (intake, *peer_intakes):
            if running is not None:
                running.stop()
        if bus_server is not None:
            bus_server.stop()
        for analyzer in [*peers, service]:
            analyzer.stop()
        shutil.rmtree(spools, ignore_errors=True)


def _agents_serving(lab, sites: Sequence[str], timeout: float = AGENTS_UP_S) -> None:
    """Until every agent serves its /metrics (its captures, counting points among them, start
    before it), or `timeout` passed: marked traffic that began earlier would count as lost
    at the points that were not counting yet."""
    deadline = time.monotonic() + timeout
    waiting = list(sites)
    while waiting and time.monotonic() < deadline:
        url = f"http://[{lab.address(waiting[0])}]:{AGENT_METRICS_PORT}/metrics"
        if lab.exec(waiting[0], ["curl", "-sf", "-o", "/dev/null", "-m", "2", url]).returncode == 0:
            waiting.pop(0)
        else:
            time.sleep(0.2)


def replica_name(index: int) -> str:
    """The durable consumer of the all-in-one's analyzer `index` (0: the first, as ever)."""
    return "analyzer" if index == 0 else f"analyzer-{index + 1}"


def _spool_root() -> Path:
    """Where the lab agents keep their spools: in memory (tmpfs) where there is one. Their
    analyzer runs on the same machine and starts empty, so a spool that survives a power
    loss buys nothing, while every append's fsync on a busy disk held up all five agents'
    shipments at once (every agent silent, every slice no-data: issue 20)."""
    shared_memory = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="xnetmon-spools-", dir=shared_memory if shared_memory.is_dir() else None))


def lab_bus_url(lab) -> str:
    """Where the lab's bus listens: nats-server on the core site's loopback (`_start_lab_bus`)."""
    return f"tls://[{lab.address('core')}]:{BUS_PORT}"


def _start_lab_bus(lab, sites: Sequence[str], workdir: Path) -> tuple[NatsServer, Path]:
    """nats-server inside the core site with a throwaway CA and a certificate per site."""
    core = lab.address("core")
    pki = bus_setup.init(workdir / "bus", names=(core,))
    for site in sites:
        bus_setup.add_site(pki, site)
    bus_setup.add_operator(pki, LAB_OPERATOR)  # the host side's: POST /probe, xnetmon probe --from
    ports = bus_setup.ServerPorts(core, BUS_PORT, core, BUS_MONITOR_PORT)
    server = NatsServer(pki, workdir / "bus-server", core, ports=ports, wrap=lambda argv: lab.exec_argv("core", argv))
    return server, pki


def _start_site_exporters(lab, agents: dict[str, subprocess.Popen], exporters: SoftflowdFleet) -> str:
    """softflowd on every link of each site, once the site's agent receives flows (an export
    sent earlier would lose its template until softflowd sends it again, 16 datagrams on)."""
    if not softflowd_available():
        return "no flow exports: softflowd is not installed (apt-get install softflowd)"
    receiving = wait_until_bound({site: proc.pid for site, proc in agents.items()}, FLOW_PORT)
    for site in agents:
        if site in receiving:
            for link in lab.topology.links_of(site):
                exporters.start(site, link.interface(site), (lab.address(site), FLOW_PORT), lab.exec_argv)
    missing = sorted(set(agents) - receiving)
    where = (
        f"IPFIX from softflowd on each site's links -> the site's agent, port {FLOW_PORT}; "
        f"top talkers at http://[SITE]:{AGENT_METRICS_PORT}/flows/top?slice=NAME"
    )
    return where + (f" (no flows on {', '.join(missing)}: the agent never listened)" if missing else "")


def _with_loopback_flows(plan):
    """The plan with a flow receiver on [::1]:FLOW_PORT for softflowd on `lo`, and None; or the
    plan as it is and why there are no flows from softflowd here."""
    if plan.flows is not None:
        return plan, "the flow receiver of the agent's configuration (no softflowd started here)"
    if not softflowd_available():
        return plan, "no flow exports: softflowd is not installed (apt-get install softflowd)"
    if os.geteuid() != 0:
        return plan, "no flow exports: softflowd needs root to capture lo"
    if not _udp_port_free("::1", FLOW_PORT):
        return plan, f"no flow exports: [::1]:{FLOW_PORT} is taken by another flow receiver"
    from collector.flow_export.receiver import ReceiverSettings

    return dataclasses.replace(plan, flows=ReceiverSettings(listen=[("::1", FLOW_PORT)])), None


def _start_loopback_exporter(exporters: SoftflowdFleet, metrics_listen: tuple[str, int]) -> str:
    if not wait_until_bound({"local": os.getpid()}, FLOW_PORT):
        return "no flow exports: the agent's flow receiver did not start"
    # Its own exports cross lo too: leave them out, or each export would be a flow to export.
    exporters.start(
        "local", "lo", ("::1", FLOW_PORT), lambda _site, argv: list(argv), bpf=f"ip6 and not udp port {FLOW_PORT}"
    )
    return (
        f"IPFIX from softflowd on lo -> the agent, [::1]:{FLOW_PORT}; "
        f"top talkers at http://{_host_port(*metrics_listen)}/flows/top?slice=NAME"
    )


def _host_port(host: str, port: int) -> str:
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _udp_port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _resume(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGCONT)


@contextlib.contextmanager
def loopback_deployment(config: Path, workdir: Path, *, clock=None) -> Iterator[Deployment]:
    """One agent in this process on `config` (loopback), feeding the analyzer directly; the
    analyzer's snapshots go to `workdir` (a new directory: the analyzer starts empty)."""
    from collector.agent.plan import load_plan
    from collector.agent.runner import Agent
    from collector.outputs.sinks import InProcessSink

    plan, flows_note = _with_loopback_flows(load_plan(config))
    token_file = workdir / "token"
    token_file.write_text(secrets.token_urlsafe(24))
    stamp_port = plan.reflector.port if plan.reflector is not None else 862
    service = AnalyzerService(
        default_policies(),
        ("::1", API_PORT),
        state_dir=workdir,
        feed=True,
        token=token_file.read_text(),
        prober=CommandProber((plan.site,), lambda _site, argv: argv, stamp_port),
        api_options={"openapi": True},
        interval_s=plan.window_s,
        catch_up_s=FRESH_CATCH_UP_INTERVALS * plan.window_s,
        warm_up_windows=PATH_WARM_UP_WINDOWS,
        stall_intervals=SHARED_STALL_INTERVALS,
    )
    server = service.serve_in_thread()
    assert service.feeder is not None  # feed=True
    agent = Agent(plan, sink=InProcessSink(service.feeder.queue), clock=clock)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(agent.run(),), name="xnetmon-agent", daemon=True)
    thread.start()
    exporters = SoftflowdFleet(workdir)
    try:
        if flows_note is None:
            flows_note = _start_loopback_exporter(exporters, plan.metrics_listen)
        yield Deployment(
            "loopback",
            (plan.site,),
            server.url,
            plan.window_s,
            token_file,
            lambda: service.inference,
            flows_note,
            exporters,
        )
    finally:
        exporters.stop()
        loop.call_soon_threadsafe(agent.stop)
        thread.join(timeout=15)
        loop.close()
        service.stop()
